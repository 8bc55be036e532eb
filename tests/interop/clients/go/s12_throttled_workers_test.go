package conformance

// S12: a worker process of 10 goroutines, each on its own connection, works 200 jobs through
// the `gated` queue, throttled to `concurrency = 3` (protocol/spec.md §11): once with the Go
// client's own Fetch/Ack (TestS12ThrottledWorkers), once as a faktory_worker_go Manager with
// Concurrency 10 (TestS12ThrottledManager). Every job must be worked exactly once; that the
// server never had more than 3 reserved at once is read afterwards from its journal by
// test_client_go.py (what a client sees cannot prove it: an ACK reaches the server after the
// client counts it).

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
	worker "github.com/contribsys/faktory_worker_go"
)

const (
	s12Jobs    = 200
	s12Workers = 10
	// s12Work is each job's run time: long enough for all 10 to be fetching while slots are held
	// (at 5 ms a Manager with Concurrency 10 kept only 4 jobs reserved against an 8-slot throttle).
	s12Work = 20 * time.Millisecond
)

// s12Push pushes the jobs to `gated` and returns their jids.
func s12Push(t *testing.T, producer *client.Client) map[string]bool {
	t.Helper()
	pushed := map[string]bool{}
	for i := 0; i < s12Jobs; i++ {
		pushed[push(t, producer, "S12Job", "gated", i)] = true
	}
	return pushed
}

// s12Check: every pushed job worked once, and `gated` is empty.
func s12Check(t *testing.T, producer *client.Client, pushed map[string]bool, worked map[string]int) {
	t.Helper()
	if len(worked) != s12Jobs {
		t.Fatalf("%d distinct jobs worked, want %d", len(worked), s12Jobs)
	}
	for jid, times := range worked {
		if !pushed[jid] || times != 1 {
			t.Errorf("job %s worked %d times (pushed: %v)", jid, times, pushed[jid])
		}
	}
	st := state(t, producer)
	if got := st.Data.Queues["gated"]; got != 0 {
		t.Errorf("queues.gated = %d after the run, want 0", got)
	}
}

func TestS12ThrottledWorkers(t *testing.T) {
	producer := open(t)
	pushed := s12Push(t, producer)
	workers := make([]*client.Client, s12Workers)
	for i := range workers {
		workers[i] = openAs(t, "go-s12")
	}

	var mu sync.Mutex
	worked := map[string]int{}
	var done atomic.Int64
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	for _, cl := range workers {
		wg.Add(1)
		go func(cl *client.Client) {
			defer wg.Done()
			for done.Load() < s12Jobs && time.Now().Before(deadline) {
				job, err := cl.Fetch("gated")
				if err != nil {
					t.Errorf("FETCH gated: %v", err)
					return
				}
				if job == nil {
					continue // the 2 s block ran out: every slot was held meanwhile, or all is done
				}
				time.Sleep(s12Work)
				mu.Lock()
				worked[job.Jid]++
				mu.Unlock()
				if err := cl.Ack(job.Jid); err != nil {
					t.Errorf("ACK %s: %v", job.Jid, err)
					return
				}
				done.Add(1)
			}
		}(cl)
	}
	wg.Wait()
	s12Check(t, producer, pushed, worked)
}

func TestS12ThrottledManager(t *testing.T) {
	producer := open(t)
	pushed := s12Push(t, producer)

	var mu sync.Mutex
	worked := map[string]int{}
	mgr := worker.NewManager()
	mgr.ProcessWID = "go-s12-manager"
	mgr.Concurrency = s12Workers
	mgr.ProcessStrictPriorityQueues("gated")
	mgr.Register("S12Job", func(ctx context.Context, args ...any) error {
		time.Sleep(s12Work)
		mu.Lock()
		defer mu.Unlock()
		worked[worker.HelperFor(ctx).Jid()]++
		return nil
	})
	runUntilProcessed(t, mgr, s12Jobs)
	s12Check(t, producer, pushed, worked)
}
