// Command fleet drives R2 and R3 of `python -m bench` (bench/README.md): a fleet of real
// faktory_worker_go processes doing no-op jobs, against the server in FAKTORY_URL.
//
//	fleet drain   -workers 4 -concurrency 25 -jobs N
//	    fill the queue (PUSHB through the Go client, untimed), start the workers, time the drain
//	fleet produce -workers 4 -concurrency 25 -jobs N -producers 10
//	    workers idle-waiting; Go-client producers push N jobs; time from the first PUSH to the last job run
//	fleet latency -workers 4 -concurrency 25 -jobs N -rate 1000
//	    workers idle-waiting; one producer pushes at a fixed rate, each job carrying its push
//	    time; every job's push → start latency
//
// Each mode prints one JSON object on stdout. The workers are child processes of this one
// (`fleet worker`), each a faktory_worker_go Manager; they count the jobs they run in a file
// all of them map (`-shared`): slot 0 the jobs run, slot 1 the time the last one ended, then one
// slot per worker for the time its Manager booted, then one slot per job for its latency.
// Counting there costs no syscall, so the count perturbs nothing; the time a job ends is read
// where it happens, not when this process polls.
//
// faktory_worker_go starts each of its goroutines after a random pause of up to 2^31 ns
// (about 2.15 s, against a thundering herd), so a fleet only reaches its full concurrency
// that long after boot. produce and latency wait that long, with the queue empty, before the
// first PUSH; drain cannot (its queue is full from the start), so it also reports the rate from
// that moment on ("steady"), which is its headline figure when enough of the queue was left.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	faktory "github.com/contribsys/faktory/client"
	worker "github.com/contribsys/faktory_worker_go"
)

const (
	slotDone    = 0
	slotEnded   = 1
	slotBoots   = 2
	startJitter = time.Duration(1<<31) + 50*time.Millisecond // FWG's largest initial pause, and a margin
)

// shared maps the counters file every process of the fleet writes.
type shared struct {
	words   []int64
	workers int
	target  int64
}

// openShared maps the file with room for `latencies` latency slots; `target` is the job count
// whose completion is stamped.
func openShared(path string, workers, latencies, target int, create bool) *shared {
	size := (slotBoots + workers + latencies) * 8
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	check(err, "open the shared file")
	defer f.Close()
	if create {
		check(f.Truncate(int64(size)), "size the shared file")
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	check(err, "map the shared file")
	words := unsafe.Slice((*int64)(unsafe.Pointer(&mem[0])), size/8)
	return &shared{words: words, workers: workers, target: int64(target)}
}

func (s *shared) load(i int) int64     { return atomic.LoadInt64(&s.words[i]) }
func (s *shared) store(i int, v int64) { atomic.StoreInt64(&s.words[i], v) }

// ran counts one job; the one that completes the target stamps the end time.
func (s *shared) ran(latency int64, withLatency bool) {
	n := atomic.AddInt64(&s.words[slotDone], 1)
	if withLatency && n <= s.target {
		s.store(slotBoots+s.workers+int(n-1), latency)
	}
	if n == s.target {
		s.store(slotEnded, time.Now().UnixNano())
	}
}

func check(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "fleet: %s: %v\n", what, err)
		os.Exit(2)
	}
}

type options struct {
	workers, concurrency, jobs, producers, slots int
	rate                                         float64
	queue, shared                                string
	index                                        int
	timeout                                      time.Duration
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fleet drain|produce|latency|worker [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	var o options
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	fs.IntVar(&o.workers, "workers", 4, "faktory_worker_go processes")
	fs.IntVar(&o.concurrency, "concurrency", 25, "each worker's Manager.Concurrency")
	fs.IntVar(&o.jobs, "jobs", 10000, "jobs to run")
	fs.IntVar(&o.producers, "producers", 10, "produce: Go-client connections pushing")
	fs.Float64Var(&o.rate, "rate", 1000, "latency: jobs pushed per second")
	fs.StringVar(&o.queue, "queue", "bench-fleet", "the queue")
	fs.StringVar(&o.shared, "shared", "", "worker: the counters file")
	fs.IntVar(&o.index, "index", 0, "worker: its slot")
	fs.IntVar(&o.slots, "slots", 0, "worker: latency slots in the counters file")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	check(fs.Parse(os.Args[2:]), "flags")
	switch mode {
	case "worker":
		runWorker(o)
	case "drain", "produce", "latency":
		result := lead(mode, o)
		check(json.NewEncoder(os.Stdout).Encode(result), "write the result")
	default:
		fmt.Fprintf(os.Stderr, "fleet: unknown mode %q\n", mode)
		os.Exit(2)
	}
}

// runWorker is one faktory_worker_go process: Noop jobs count, Stamp jobs also record push →
// start, their one argument being the push time in Unix nanoseconds. SIGTERM stops it the way
// FWG stops (no new FETCH, running jobs finish and are acknowledged).
func runWorker(o options) {
	s := openShared(o.shared, o.workers, o.slots, o.jobs, false)
	mgr := worker.NewManager()
	mgr.Concurrency = o.concurrency
	mgr.ProcessStrictPriorityQueues(o.queue)
	mgr.Register("Noop", func(ctx context.Context, args ...interface{}) error {
		s.ran(0, false)
		return nil
	})
	mgr.Register("Stamp", func(ctx context.Context, args ...interface{}) error {
		started := time.Now().UnixNano()
		pushed, err := strconv.ParseInt(fmt.Sprint(args[0]), 10, 64)
		if err != nil {
			return err
		}
		s.ran(started-pushed, true)
		return nil
	})
	mgr.On(worker.Startup, func(*worker.Manager) error {
		s.store(slotBoots+o.index, time.Now().UnixNano())
		return nil
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	check(mgr.RunWithContext(ctx), "run the manager")
}

// lead starts the workers, runs the mode's producer and measures.
func lead(mode string, o options) map[string]any {
	dir, err := os.MkdirTemp("", "fleet-")
	check(err, "temp dir")
	defer os.RemoveAll(dir)
	path := dir + "/shared"
	withLatency := 0
	if mode == "latency" {
		withLatency = o.jobs
	}
	s := openShared(path, o.workers, withLatency, o.jobs, true)
	deadline := time.Now().Add(o.timeout)
	cl, err := faktory.Open()
	check(err, "connect")
	defer cl.Close()
	result := map[string]any{"mode": mode, "jobs": o.jobs, "workers": o.workers, "concurrency": o.concurrency}

	if mode == "drain" {
		fill(cl, o)
	}
	spawned := time.Now()
	children := spawn(o, path, withLatency)
	defer func() { stopAll(children) }() // on a failure; stopped (and nil) below otherwise
	boots := waitBoots(s, o.workers, deadline)
	fullAt := time.Unix(0, boots).Add(startJitter) // every goroutine has begun fetching by then
	result["boot_s"] = time.Duration(boots - spawned.UnixNano()).Seconds()

	var t0 time.Time
	var steadyDone int64 = -1
	var steadyAt time.Time
	var pushed time.Time
	switch mode {
	case "drain":
		t0 = spawned
		time.Sleep(time.Until(fullAt))
		steadyAt, steadyDone = time.Now(), s.load(slotDone)
	case "produce":
		time.Sleep(time.Until(fullAt))
		t0 = time.Now()
		produce(o)
		pushed = time.Now()
	case "latency":
		time.Sleep(time.Until(fullAt))
		t0 = time.Now()
		paced(cl, o)
		pushed = time.Now()
	}
	for s.load(slotDone) < s.target {
		if time.Now().After(deadline) {
			result["failure"] = fmt.Sprintf("%d of %d jobs ran within %s", s.load(slotDone), s.target, o.timeout)
			return result
		}
		time.Sleep(5 * time.Millisecond)
	}
	ended := time.Unix(0, s.load(slotEnded))
	seconds := ended.Sub(t0).Seconds()
	result["seconds"] = seconds
	result["jobs_per_s"] = float64(o.jobs) / seconds
	if !pushed.IsZero() {
		result["push_seconds"] = pushed.Sub(t0).Seconds()
	}
	if mode == "drain" {
		// From the moment every goroutine runs: the fleet at its full concurrency.
		left := s.target - steadyDone
		result["steady_jobs"] = left
		if left > 0 && ended.After(steadyAt) {
			result["steady_jobs_per_s"] = float64(left) / ended.Sub(steadyAt).Seconds()
		}
	}
	if mode == "latency" {
		ms := make([]float64, o.jobs)
		for i := range ms {
			ms[i] = float64(s.load(slotBoots+o.workers+i)) / 1e6
		}
		result["latencies_ms"] = ms
		result["rate"] = o.rate
	}
	stopAll(children)
	children = nil
	// Every job acknowledged: nothing left in the queue, nothing failed.
	info, err := cl.Info()
	check(err, "INFO")
	if f, ok := info["faktory"].(map[string]any); ok {
		if queues, ok := f["queues"].(map[string]any); ok {
			left, _ := queues[o.queue].(float64)
			result["left_in_queue"] = int(left)
		}
		failures, _ := f["total_failures"].(float64)
		result["failures"] = int(failures)
	}
	return result
}

// fill pushes the drain's jobs, 1,000 per PUSHB.
func fill(cl *faktory.Client, o options) {
	const chunk = 1000
	for at := 0; at < o.jobs; at += chunk {
		n := min(chunk, o.jobs-at)
		jobs := make([]*faktory.Job, n)
		for i := range jobs {
			jobs[i] = faktory.NewJob("Noop", at+i)
			jobs[i].Queue = o.queue
		}
		refused, err := cl.PushBulk(jobs)
		check(err, "PUSHB")
		if len(refused) > 0 {
			check(fmt.Errorf("%d jobs refused", len(refused)), "PUSHB")
		}
	}
}

// produce pushes the jobs from `producers` connections, each waiting for every reply.
func produce(o options) {
	var wg sync.WaitGroup
	for p := 0; p < o.producers; p++ {
		share := o.jobs / o.producers
		if p < o.jobs%o.producers {
			share++
		}
		wg.Add(1)
		go func(share int) {
			defer wg.Done()
			cl, err := faktory.Open()
			check(err, "producer connect")
			defer cl.Close()
			for i := 0; i < share; i++ {
				job := faktory.NewJob("Noop", i)
				job.Queue = o.queue
				check(cl.Push(job), "PUSH")
			}
		}(share)
	}
	wg.Wait()
}

// paced pushes one Stamp job every 1/rate s on a fixed schedule (late ones go at once).
func paced(cl *faktory.Client, o options) {
	start := time.Now()
	for i := 0; i < o.jobs; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(float64(i) / o.rate * float64(time.Second)))))
		job := faktory.NewJob("Stamp", strconv.FormatInt(time.Now().UnixNano(), 10))
		job.Queue = o.queue
		check(cl.Push(job), "PUSH")
	}
}

func spawn(o options, path string, latencySlots int) []*exec.Cmd {
	self, err := os.Executable()
	check(err, "find myself")
	var children []*exec.Cmd
	for i := 0; i < o.workers; i++ {
		cmd := exec.Command(self, "worker", "-workers", strconv.Itoa(o.workers), "-concurrency",
			strconv.Itoa(o.concurrency), "-jobs", strconv.Itoa(o.jobs), "-slots", strconv.Itoa(latencySlots),
			"-queue", o.queue,
			"-shared", path, "-index", strconv.Itoa(i))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr // FWG logs to stdout; ours is the result
		check(cmd.Start(), "start a worker")
		children = append(children, cmd)
	}
	return children
}

func waitBoots(s *shared, workers int, deadline time.Time) int64 {
	for {
		latest, booted := int64(0), 0
		for i := 0; i < workers; i++ {
			if t := s.load(slotBoots + i); t > 0 {
				booted++
				latest = max(latest, t)
			}
		}
		if booted == workers {
			return latest
		}
		if time.Now().After(deadline) {
			check(fmt.Errorf("%d of %d booted", booted, workers), "start the workers")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stopAll sends SIGTERM to every worker, then waits; one that lingers past FWG's own
// shutdown is killed.
func stopAll(children []*exec.Cmd) {
	for _, c := range children {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range children {
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
}
