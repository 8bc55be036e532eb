package conformance

// S6: a real faktory_worker_go Manager, told to quiet and then to terminate.
//
// FWG ends the whole process with os.Exit(0) when its heartbeat learns "terminate", so the
// Manager runs in a child process: this test binary again, running only TestS6WorkerProcess
// (which skips itself unless FAKTORY_GO_S6_CHILD=1). The child prints marker lines; the parent
// reads them from the child's stdout.
//
// FWG sends its first BEAT 15 s after start-up, then every 15 s (not configurable), so the
// quiet → terminate walk takes about 30 s. A side connection sends
// `BEAT {"wid":<the Manager's wid>,"current_state":...}` for it (FWG only sends current_state
// once it is already quiet); the Manager learns the new state from the reply to its own next
// heartbeat. The server meanwhile stops handing jobs to the quiet wid at once.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
	worker "github.com/contribsys/faktory_worker_go"
)

const (
	s6ChildEnv = "FAKTORY_GO_S6_CHILD"
	s6WidEnv   = "FAKTORY_GO_S6_WID"
	s6Marker   = "S6CHILD "
)

// TestS6WorkerProcess is the child side of TestS6QuietTerminate, not a scenario on its own.
func TestS6WorkerProcess(t *testing.T) {
	if os.Getenv(s6ChildEnv) != "1" {
		t.Skip("helper process for TestS6QuietTerminate")
	}
	say := func(format string, args ...any) { fmt.Printf(s6Marker+format+"\n", args...) }

	mgr := worker.NewManager()
	mgr.ProcessWID = os.Getenv(s6WidEnv)
	mgr.Concurrency = 3
	mgr.ProcessStrictPriorityQueues("s6")
	mgr.Register("S6Job", func(ctx context.Context, args ...any) error {
		help := worker.HelperFor(ctx)
		if len(args) == 1 && args[0] == "chain" {
			// Push from inside a job through the Manager's own pool (its HELLOs carry the wid).
			if err := help.With(func(cl *client.Client) error {
				return cl.Push(newJob("S6Job", "s6", "chained"))
			}); err != nil {
				return err
			}
		}
		say("ran %v %s", args, help.Jid())
		return nil
	})
	mgr.Register("S6Boom", func(ctx context.Context, args ...any) error {
		return errors.New("boom")
	})
	mgr.On(worker.Startup, func(*worker.Manager) error { say("event startup"); return nil })
	mgr.On(worker.Quiet, func(*worker.Manager) error { say("event quiet"); return nil })
	mgr.On(worker.Shutdown, func(*worker.Manager) error { say("event shutdown"); return nil })

	// Run() only returns on a start-up error; "terminate" ends the process with os.Exit(0).
	err := mgr.Run()
	say("Run returned %v", err)
	os.Exit(3)
}

// childOutput collects the child's stdout lines and lets the test wait for one.
type childOutput struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func (c *childOutput) read(scanner *bufio.Scanner) {
	defer close(c.done)
	for scanner.Scan() {
		line := scanner.Text()
		fmt.Println("    child| " + line) // not t.Log: the child may outlive a failed test
		c.mu.Lock()
		c.lines = append(c.lines, line)
		c.mu.Unlock()
	}
}

func (c *childOutput) has(text string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, line := range c.lines {
		if strings.Contains(line, s6Marker+text) {
			return true
		}
	}
	return false
}

func (c *childOutput) wait(t *testing.T, text string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "the worker process to print "+s6Marker+text, func() bool { return c.has(text) })
}

func TestS6QuietTerminate(t *testing.T) {
	side := open(t)

	sideBeat := func(t *testing.T, wid, currentState string) string {
		t.Helper()
		reply, err := side.Generic(fmt.Sprintf(`BEAT {"wid":%q,"current_state":%q}`, wid, currentState))
		must(t, err, "BEAT current_state "+currentState)
		if !strings.HasPrefix(reply, "{") {
			t.Fatalf("BEAT with current_state %s answered %q, want a {\"state\":...} bulk", currentState, reply)
		}
		return reply
	}

	t.Run("the Go client's own Beat reports and receives states", func(t *testing.T) {
		flush(t, side)
		const wid = "go-s6-beat"
		cl := openAs(t, wid)
		var reply string
		var err error
		beat := func(state ...string) string {
			withWid(wid, func() { reply, err = cl.Beat(state...) })
			must(t, err, "Beat")
			return reply
		}
		if got := beat(); got != "" {
			t.Errorf("Beat() of a running worker = %q, want \"\" (+OK)", got)
		}
		if got := beat("quiet"); got != `{"state":"quiet"}` {
			t.Errorf(`Beat("quiet") = %q`, got)
		}
		if got := beat(); got != `{"state":"quiet"}` {
			t.Errorf("Beat() of a quiet worker = %q", got)
		}
		jid := push(t, side, "S6Job", "s6b", 1)
		fetchNothing(t, cl, "s6b") // a quiet worker gets no jobs
		if got := beat("terminate"); got != `{"state":"terminate"}` {
			t.Errorf(`Beat("terminate") = %q`, got)
		}
		if got := beat("quiet"); got != `{"state":"terminate"}` {
			t.Errorf("states only move forward: Beat(\"quiet\") after terminate = %q", got)
		}
		fetchNothing(t, cl, "s6b")
		if sizes, _ := side.QueueSizes(); sizes["s6b"] != 1 {
			t.Errorf("job %s should still be queued: %v", jid, sizes)
		}
	})

	t.Run("BEAT for a wid that is not registered is an error", func(t *testing.T) {
		_, err := side.Generic(`BEAT {"wid":"nosuchwid"}`)
		protocolError(t, err, "ERR unknown worker nosuchwid")
	})

	t.Run("a Manager runs jobs, stops fetching when quiet, exits 0 on terminate", func(t *testing.T) {
		flush(t, side)
		wid := fmt.Sprintf("go-s6-%d", time.Now().UnixNano())
		cmd := exec.Command(os.Args[0], "-test.run=^TestS6WorkerProcess$", "-test.v")
		cmd.Env = append(os.Environ(), s6ChildEnv+"=1", s6WidEnv+"="+wid)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		must(t, err, "stdout pipe")
		must(t, cmd.Start(), "start the worker process")
		out := &childOutput{done: make(chan struct{})}
		go out.read(bufio.NewScanner(stdout))
		exited := make(chan error, 1)
		go func() { <-out.done; exited <- cmd.Wait() }()
		finished := false
		t.Cleanup(func() {
			if !finished {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-exited
			}
		})
		began := time.Now()

		out.wait(t, "event startup", 10*time.Second)
		eventually(t, 5*time.Second, "the Manager's wid to be registered", func() bool { return workers(t, side) == 1 })

		jid := push(t, side, "S6Job", "s6", "one")
		out.wait(t, "ran [one] "+jid, 5*time.Second)
		eventually(t, 3*time.Second, "the Manager to ACK job one", func() bool {
			return state(t, side).Data.TotalProcessed == 1
		})
		push(t, side, "S6Job", "s6", "chain")
		out.wait(t, "ran [chained]", 5*time.Second)
		if n := workers(t, side); n != 1 {
			t.Errorf("tasks.Workers.size = %d: the in-job push connection must carry the same wid", n)
		}

		// A failing handler and an unregistered jobtype are FAILed into the retry set.
		push(t, side, "S6Boom", "s6")
		push(t, side, "S6Unregistered", "s6")
		eventually(t, 5*time.Second, "the Manager to FAIL both jobs", func() bool {
			return tasks(t, side, "Retries")[0] == 2
		})
		// Drop them, or their retry (15-45 s later) lands back in queue s6 during the test.
		refreshDeadline(t, side)
		must(t, side.Clear(client.Retries), "MUTATE clear retries")

		if elapsed := time.Since(began); elapsed > 12*time.Second {
			t.Fatalf("setup took %v: too late to quiet the Manager before its first heartbeat", elapsed)
		}
		if got := sideBeat(t, wid, "quiet"); got != `{"state":"quiet"}` {
			t.Fatalf("side BEAT quiet answered %q", got)
		}
		jid2 := push(t, side, "S6Job", "s6", "two")
		time.Sleep(2500 * time.Millisecond) // longer than one blocking FETCH
		if out.has("ran [two]") {
			t.Fatal("a quiet worker ran a new job")
		}
		if sizes, _ := side.QueueSizes(); sizes["s6"] != 1 {
			t.Errorf("job two (%s) should still be queued: %v", jid2, sizes)
		}
		if n := workers(t, side); n != 1 {
			t.Errorf("a quiet worker is still registered, tasks.Workers.size = %d", n)
		}

		// FWG's first heartbeat, 15 s after start-up, brings it "quiet".
		out.wait(t, "event quiet", 20*time.Second)

		if got := sideBeat(t, wid, "terminate"); got != `{"state":"terminate"}` {
			t.Fatalf("side BEAT terminate answered %q", got)
		}
		// The next heartbeat, 15 s later, brings "terminate": the Manager shuts down, closes its
		// pool and exits 0.
		select {
		case err := <-exited:
			finished = true
			if err != nil {
				t.Fatalf("the worker process ended with %v, want exit status 0", err)
			}
		case <-time.After(25 * time.Second):
			t.Fatal("the worker process did not exit within 25 s of terminate")
		}
		if !out.has("event shutdown") {
			t.Error("the Manager exited without its Shutdown event")
		}
		eventually(t, 5*time.Second, "the terminated worker's wid to go away", func() bool { return workers(t, side) == 0 })
		if out.has("ran [two]") {
			t.Error("job two ran")
		}
		if sizes, _ := side.QueueSizes(); sizes["s6"] != 1 {
			t.Errorf("job two should still be queued: %v", sizes)
		}
	})
}
