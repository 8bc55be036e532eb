package conformance

// S15 (issue 16, takeover under load): a Go-client producer and a faktory_worker_go Manager
// work against an HA cluster while tests/interop/test_takeover_load_go.py kills its primary
// again and again. Not a scenario of its own (it needs the cluster): the pytest test runs it and
// checks the ledger it writes (FAKTORY_LEDGER: one "PUSHED <jid>" line per PUSH answered +OK,
// one "RAN <jid>" line per execution, one "BATCH <bid> <success callback jid> <jid>..." line
// per batch committed +OK) against the op log in Redis. Every 10th job is unique for an
// hour; every 25th round pushes a batch of three jobs with a success callback instead.
//
// Both clients reconnect by themselves: the producer here dials again after a failed PUSH (the
// job's outcome is unknown then: it is not in the ledger, and the same jid is never pushed
// again), and faktory_worker_go's pool dials anew for its next FETCH, ACK or BEAT.

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
	worker "github.com/contribsys/faktory_worker_go"
)

const takeoverQueue = "takeover"

// ledger appends lines to FAKTORY_LEDGER, each written whole.
type ledger struct {
	mu   sync.Mutex
	file *os.File
}

func (l *ledger) record(what, jid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = fmt.Fprintf(l.file, "%s %s\n", what, jid)
}

// pushBatch pushes a batch of three jobs with a success callback and commits it; the
// ledger gets each job whose PUSH was acknowledged and, once committed, the batch.
func (l *ledger) pushBatch(cl *client.Client, n int) error {
	b := client.NewBatch(cl)
	b.Success = client.NewJob("BatchDone", n)
	b.Success.Queue = takeoverQueue
	jids := []string{"", b.Success.Jid} // the bid, once BATCH NEW answered
	err := b.Jobs(func() error {
		jids[0] = b.Bid // BatchNew assigned it
		for i := 0; i < 3; i++ {
			job := client.NewJob("Load", n, i)
			job.Queue = takeoverQueue
			job.ReserveFor = 60
			if err := b.Push(job); err != nil {
				return err
			}
			l.record("PUSHED", job.Jid)
			jids = append(jids, job.Jid)
		}
		return nil
	})
	if err == nil {
		l.record("BATCH", strings.Join(jids, " "))
	}
	return err
}

func TestS15TakeoverLoad(t *testing.T) {
	file, err := os.Create(serverURL(t, "FAKTORY_LEDGER"))
	must(t, err, "create the ledger")
	defer file.Close()
	book := &ledger{file: file}
	seconds, err := strconv.Atoi(serverURL(t, "FAKTORY_LOAD_SECONDS"))
	must(t, err, "FAKTORY_LOAD_SECONDS")

	mgr := worker.NewManager()
	mgr.Concurrency = 5
	mgr.ProcessStrictPriorityQueues(takeoverQueue)
	run := func(ctx context.Context, args ...interface{}) error {
		book.record("RAN", worker.HelperFor(ctx).Jid())
		return nil
	}
	mgr.Register("Load", run)
	mgr.Register("BatchDone", run)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.RunWithContext(ctx) }()

	// The producer: one connection, dialled again whenever a PUSH fails.
	stop := time.Now().Add(time.Duration(seconds) * time.Second)
	var cl *client.Client
	for n := 0; time.Now().Before(stop); n++ {
		if cl == nil {
			if cl, err = client.Open(); err != nil {
				cl = nil
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		if n%25 == 0 {
			if err := book.pushBatch(cl, n); err != nil {
				t.Logf("batch %d: %v", n, err)
				_ = cl.Close()
				cl = nil
			}
			continue
		}
		job := client.NewJob("Load", n)
		job.Queue = takeoverQueue
		job.ReserveFor = 60
		if n%10 == 0 {
			job.SetUniqueFor(3600) // unique locks held through every takeover: checked afterwards
		}
		if err := cl.Push(job); err != nil {
			t.Logf("push %s: %v", job.Jid, err)
			_ = cl.Close()
			cl = nil
			continue
		}
		book.record("PUSHED", job.Jid)
		time.Sleep(2 * time.Millisecond)
	}
	if cl != nil {
		_ = cl.Close()
	}
	// Let the workers catch up with the last pushes, then stop them.
	time.Sleep(3 * time.Second)
	cancel()
	must(t, <-done, "the manager")
}
