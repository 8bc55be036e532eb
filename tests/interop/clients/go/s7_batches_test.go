package conformance

// S7: batches through the Go client's batch API (client.Batch, BatchNew/Open/Commit/Status)
// and faktory_worker_go's Helper.Batch(), which reopens a job's own batch from inside the
// job through the Manager's pool (whose HELLOs carry the worker process's wid).
//
// TestS7Batches runs against the default (strict) server. TestS7EnterpriseReopen walks what
// the Go client's own Enterprise test (test/ent/batch_test.go) expects from Faktory
// Enterprise — reopening a committed batch from outside, adding a child to it, pushing after
// the callbacks — and runs twice: against a server with `[batches] policy = "permissive"`,
// where all of it must work, and against the strict default, where the first reopening from
// outside must be refused with the clear error. FAKTORY_BATCH_POLICY says which.

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
	worker "github.com/contribsys/faktory_worker_go"
)

const strictRefusal = "ERR Batch %s is committed: it can only be reopened or added to from within"

func batchStatus(t *testing.T, cl *client.Client, bid string) *client.BatchStatus {
	t.Helper()
	st, err := cl.BatchStatus(bid)
	must(t, err, "BATCH STATUS "+bid)
	return st
}

func wantStatus(t *testing.T, cl *client.Client, bid string, total, pending, failed int64, complete, success string) {
	t.Helper()
	st := batchStatus(t, cl, bid)
	if st.Total != total || st.Pending != pending || st.Failed != failed ||
		st.CompleteState != complete || st.SuccessState != success {
		t.Fatalf("status of %s: total=%d pending=%d failed=%d complete_st=%q success_st=%q, "+
			"want %d/%d/%d %q %q", bid, st.Total, st.Pending, st.Failed, st.CompleteState,
			st.SuccessState, total, pending, failed, complete, success)
	}
}

func newBatch(t *testing.T, cl *client.Client, def *client.Batch) *client.Batch {
	t.Helper()
	b, err := cl.BatchNew(def)
	must(t, err, "BATCH NEW")
	if !strings.HasPrefix(b.Bid, "b-") {
		t.Fatalf("bid %q does not start with b-", b.Bid)
	}
	return b
}

func ackAll(t *testing.T, cl *client.Client, queue string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		must(t, cl.Ack(fetchJob(t, cl, queue).Jid), "ACK")
	}
}

func TestS7Batches(t *testing.T) {
	producer := open(t)
	work := openAs(t, "go-s7")

	t.Run("NEW, push, STATUS, ACK all, COMMIT, complete then success", func(t *testing.T) {
		flush(t, producer)
		b := newBatch(t, producer, &client.Batch{
			Description: "S7 lifecycle",
			Complete:    newJob("S7Done", "s7cb"),
			Success:     newJob("S7Ok", "s7cb"),
		})
		for i := 0; i < 3; i++ {
			must(t, b.Push(newJob("S7Job", "s7", i)), "batch PUSH")
		}
		st := batchStatus(t, producer, b.Bid)
		if st.Bid != b.Bid || st.Description != "S7 lifecycle" || st.ParentBid != "" {
			t.Errorf("status %+v", st)
		}
		created := parseTime(t, "created_at", st.CreatedAt)
		if time.Since(created) > time.Minute || time.Until(created) > time.Second {
			t.Errorf("created_at %s is not now", st.CreatedAt)
		}
		wantStatus(t, producer, b.Bid, 3, 3, 0, "", "")

		job := fetchJob(t, work, "s7")
		if bid, _ := job.GetCustom("bid"); bid != b.Bid {
			t.Errorf("member custom.bid = %v", bid)
		}
		must(t, work.Ack(job.Jid), "ACK")
		ackAll(t, work, "s7", 2)
		wantStatus(t, producer, b.Bid, 3, 0, 0, "", "") // not committed: no callback yet
		must(t, b.Commit(), "BATCH COMMIT")
		wantStatus(t, producer, b.Bid, 3, 0, 0, "1", "")

		done := fetchJob(t, work, "s7cb")
		if done.Type != "S7Done" {
			t.Fatalf("first callback is %s, want the complete callback S7Done", done.Type)
		}
		if _, ok := done.GetCustom("bid"); ok {
			t.Errorf("the callback carries custom.bid: %v", done.Custom)
		}
		if cbid, _ := done.GetCustom("_bid"); cbid != b.Bid {
			t.Errorf("callback custom._bid = %v, want %s", cbid, b.Bid)
		}
		fetchNothing(t, work, "s7cb") // success waits for the complete callback's ACK
		must(t, work.Ack(done.Jid), "ACK complete callback")
		wantStatus(t, producer, b.Bid, 3, 0, 0, "2", "1")
		ok := fetchJob(t, work, "s7cb")
		if ok.Type != "S7Ok" {
			t.Fatalf("second callback is %s", ok.Type)
		}
		must(t, work.Ack(ok.Jid), "ACK success callback")
		wantStatus(t, producer, b.Bid, 3, 0, 0, "2", "2")
	})

	t.Run("an uncommitted batch opens; unknown bids say No such batch", func(t *testing.T) {
		b := newBatch(t, producer, &client.Batch{Success: newJob("S7Ok", "s7cb")})
		opened, err := producer.BatchOpen(b.Bid)
		must(t, err, "BATCH OPEN uncommitted")
		if opened.Bid != b.Bid {
			t.Errorf("OPEN answered %q", opened.Bid)
		}
		_, err = producer.BatchOpen("nosuchbatch")
		protocolError(t, err, "ERR No such batch nosuchbatch")
		_, err = producer.BatchStatus("nosuchbatch")
		protocolError(t, err, "ERR No such batch nosuchbatch")
		job := newJob("S7Job", "s7")
		job.SetCustom("bid", "nosuchbatch")
		protocolError(t, producer.Push(job), "ERR No such batch nosuchbatch")
	})

	t.Run("nested: child batches count their own jobs and fire first", func(t *testing.T) {
		flush(t, producer)
		parent := newBatch(t, producer, &client.Batch{Description: "parent", Success: newJob("ParentOk", "s7n-cb")})
		child := newBatch(t, producer, &client.Batch{Description: "child", ParentBid: parent.Bid,
			Success: newJob("ChildOk", "s7n-cb")})
		must(t, parent.Push(newJob("S7Job", "s7n")), "PUSH parent")
		must(t, child.Push(newJob("S7Job", "s7n")), "PUSH child")
		must(t, child.Push(newJob("S7Job", "s7n")), "PUSH child")
		must(t, child.Commit(), "COMMIT child")
		must(t, parent.Commit(), "COMMIT parent")
		if st := batchStatus(t, producer, child.Bid); st.ParentBid != parent.Bid || st.Total != 2 {
			t.Errorf("child status %+v", st)
		}
		wantStatus(t, producer, parent.Bid, 1, 1, 0, "", "")
		ackAll(t, work, "s7n", 3)
		cb := fetchJob(t, work, "s7n-cb")
		if cb.Type != "ChildOk" {
			t.Fatalf("first callback %s, want the child's", cb.Type)
		}
		wantStatus(t, producer, parent.Bid, 1, 0, 0, "", "")
		must(t, work.Ack(cb.Jid), "ACK child callback")
		if cb = fetchJob(t, work, "s7n-cb"); cb.Type != "ParentOk" {
			t.Fatalf("then %s, want the parent's callback", cb.Type)
		}
		must(t, work.Ack(cb.Jid), "ACK parent callback")
	})

	t.Run("strict: a committed batch is not reopened from outside", func(t *testing.T) {
		b := newBatch(t, producer, &client.Batch{Success: newJob("S7Ok", "s7cb")})
		must(t, b.Push(newJob("S7Job", "s7x")), "PUSH")
		must(t, b.Commit(), "COMMIT")
		_, err := producer.BatchOpen(b.Bid)
		protocolErrorPrefix(t, err, strings.Replace(strictRefusal, "%s", b.Bid, 1))
		_, err = producer.BatchNew(&client.Batch{ParentBid: b.Bid, Success: newJob("S7Ok", "s7cb")})
		protocolErrorPrefix(t, err, strings.Replace(strictRefusal, "%s", b.Bid, 1))
		wantStatus(t, producer, b.Bid, 1, 1, 0, "", "")
	})

	t.Run("from within: a faktory_worker_go job adds to its batch with Helper.Batch()", func(t *testing.T) {
		flush(t, producer)
		b := newBatch(t, producer, &client.Batch{Complete: newJob("GrownDone", "s7w-cb")})
		must(t, b.Push(newJob("S7Grow", "s7w", "grow")), "PUSH")
		must(t, b.Commit(), "COMMIT")

		var mu sync.Mutex
		var errs []error
		mgr := worker.NewManager()
		mgr.ProcessWID = "go-s7-fwg"
		mgr.Concurrency = 2
		mgr.ProcessStrictPriorityQueues("s7w")
		mgr.Register("S7Grow", func(ctx context.Context, args ...any) error {
			help := worker.HelperFor(ctx)
			if len(args) == 1 && args[0] == "grow" {
				err := help.Batch(func(open *client.Batch) error {
					if err := open.Push(newJob("S7Grow", "s7w", "leaf")); err != nil {
						return err
					}
					return open.Commit()
				})
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return err
			}
			return nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		go func() { stopped <- mgr.RunWithContext(ctx) }()
		defer func() {
			cancel()
			<-stopped
		}()
		eventually(t, 15*time.Second, "both jobs of the batch to run", func() bool {
			st, err := producer.BatchStatus(b.Bid)
			return err == nil && st.Total == 2 && st.Pending == 0
		})
		mu.Lock()
		defer mu.Unlock()
		if len(errs) != 1 || errs[0] != nil {
			t.Fatalf("Helper.Batch() from within the batch: %v", errs)
		}
		wantStatus(t, producer, b.Bid, 2, 0, 0, "1", "")
	})
}

func TestS7EnterpriseReopen(t *testing.T) {
	policy := os.Getenv("FAKTORY_BATCH_POLICY")
	if policy != "strict" && policy != "permissive" {
		t.Fatalf("FAKTORY_BATCH_POLICY=%q: run this through tests/interop/test_client_go.py", policy)
	}
	cl := open(t)
	work := openAs(t, "go-s7-ent")
	flush(t, cl)

	b := newBatch(t, cl, &client.Batch{
		Description: "reopened from outside",
		Complete:    newJob("OnParentComplete", "s7e-cb"),
		Success:     newJob("OnParentSuccess", "s7e-cb"),
	})
	must(t, b.Push(newJob("Common", "s7e")), "PUSH")
	must(t, b.Push(newJob("Common", "s7e")), "PUSH")
	_, err := cl.BatchOpen(b.Bid)
	must(t, err, "OPEN an uncommitted batch")
	must(t, b.Commit(), "COMMIT")

	reopened, err := cl.BatchOpen(b.Bid)
	if policy == "strict" {
		protocolErrorPrefix(t, err, strings.Replace(strictRefusal, "%s", b.Bid, 1))
		wantStatus(t, cl, b.Bid, 2, 2, 0, "", "")
		return
	}
	must(t, err, "OPEN a committed batch from outside (permissive)")
	must(t, reopened.Push(newJob("Extra", "s7e")), "PUSH after reopening")
	must(t, reopened.Push(newJob("Extra", "s7e")), "PUSH after reopening")
	must(t, reopened.Commit(), "COMMIT again")
	wantStatus(t, cl, b.Bid, 4, 4, 0, "", "")

	again, err := cl.BatchOpen(b.Bid)
	must(t, err, "OPEN a third time")
	nested := newBatch(t, cl, &client.Batch{
		ParentBid: again.Bid,
		Complete:  newJob("OnNestedComplete", "s7e-ncb"),
		Success:   newJob("OnNestedSuccess", "s7e-ncb"),
	})
	must(t, nested.Push(newJob("NestedJob", "s7e-nested")), "PUSH nested")
	must(t, nested.Push(newJob("NestedJob", "s7e-nested")), "PUSH nested")
	must(t, nested.Commit(), "COMMIT nested")
	must(t, again.Commit(), "COMMIT parent a third time")
	wantStatus(t, cl, nested.Bid, 2, 2, 0, "", "")

	ackAll(t, work, "s7e-nested", 2)
	wantStatus(t, cl, nested.Bid, 2, 0, 0, "1", "")
	done := fetchJob(t, work, "s7e-ncb")
	if done.Type != "OnNestedComplete" {
		t.Fatalf("callback %s", done.Type)
	}
	must(t, work.Ack(done.Jid), "ACK")
	wantStatus(t, cl, nested.Bid, 2, 0, 0, "2", "1")

	// After its callbacks: Enterprise still lets outsiders reopen and push (callbacks stay).
	late, err := cl.BatchOpen(nested.Bid)
	must(t, err, "OPEN after the callbacks (permissive)")
	must(t, late.Push(newJob("DoesNotMatter", "s7e-late")), "PUSH after the callbacks")
	must(t, late.Push(newJob("DoesNotMatter", "s7e-late")), "PUSH after the callbacks")
	must(t, late.Commit(), "COMMIT after the callbacks")
	wantStatus(t, cl, nested.Bid, 4, 2, 0, "2", "1")
}
