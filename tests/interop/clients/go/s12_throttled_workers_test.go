package conformance

// S12: a worker process of 10 goroutines, each on its own connection (as faktory_worker_go
// runs them), works 200 jobs through the `gated` queue, throttled to `concurrency = 3`
// (protocol/spec.md §11). Every job must be worked exactly once; that the server never had
// more than 3 reserved at once is read afterwards from its journal by test_client_go.py
// (what a client sees cannot prove it: an ACK reaches the server after the client counts it).

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
)

const (
	s12Jobs    = 200
	s12Workers = 10
)

func TestS12ThrottledWorkers(t *testing.T) {
	producer := open(t)
	pushed := map[string]bool{}
	for i := 0; i < s12Jobs; i++ {
		pushed[push(t, producer, "S12Job", "gated", i)] = true
	}
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
				time.Sleep(5 * time.Millisecond) // the work, long enough for the slots to fill
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
