package conformance

// S1: producer PUSH, worker FETCH + ACK, FIFO, queue priority, empty FETCH, INFO counters.

import (
	"reflect"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
)

func TestS1PushFetchAck(t *testing.T) {
	producer := open(t)
	worker := openAs(t, "go-s1")

	t.Run("a job round-trips jid, jobtype, args, queue and custom", func(t *testing.T) {
		flush(t, producer)
		job := newJob("S1Job", "s1", 1, "two", map[string]any{"three": []any{3}}, nil)
		job.SetCustom("trace", "abc").SetCustom("nested", map[string]any{"n": 1})
		must(t, producer.Push(job), "PUSH")
		if len(job.Jid) != 16 {
			t.Errorf("the Go client's jids are 16 base64url characters, got %q", job.Jid)
		}

		got := fetchJob(t, worker, "s1")
		if got.Jid != job.Jid || got.Type != "S1Job" || got.Queue != "s1" {
			t.Errorf("fetched jid=%q jobtype=%q queue=%q", got.Jid, got.Type, got.Queue)
		}
		// JSON numbers come back as float64.
		wantArgs := []any{1.0, "two", map[string]any{"three": []any{3.0}}, nil}
		if !reflect.DeepEqual(got.Args, wantArgs) {
			t.Errorf("args %#v, want %#v", got.Args, wantArgs)
		}
		wantCustom := map[string]any{"trace": "abc", "nested": map[string]any{"n": 1.0}}
		if !reflect.DeepEqual(got.Custom, wantCustom) {
			t.Errorf("custom %#v, want %#v", got.Custom, wantCustom)
		}
		if got.Retry == nil || *got.Retry != 25 {
			t.Errorf("retry %v, want 25", got.Retry)
		}
		if got.CreatedAt != job.CreatedAt {
			t.Errorf("created_at %q, pushed %q", got.CreatedAt, job.CreatedAt)
		}
		parseTime(t, "enqueued_at", got.EnqueuedAt)
		if got.At != "" || got.Failure != nil {
			t.Errorf("at=%q failure=%v on a fresh job", got.At, got.Failure)
		}
		must(t, worker.Ack(got.Jid), "ACK")
	})

	t.Run("ACK bumps INFO total_processed by one; the drained queue stays listed", func(t *testing.T) {
		flush(t, producer)
		jid := push(t, producer, "S1Job", "s1")
		before := state(t, producer).Data
		if before.Queues["s1"] != 1 {
			t.Fatalf("queues.s1 = %d, want 1", before.Queues["s1"])
		}
		if got := fetchJob(t, worker, "s1"); got.Jid != jid {
			t.Fatalf("fetched %s, pushed %s", got.Jid, jid)
		}
		if busy := tasks(t, producer, "Busy")[0]; busy != 1 {
			t.Errorf("tasks.Busy.size = %d while the job is reserved", busy)
		}
		must(t, worker.Ack(jid), "ACK")
		after := state(t, producer).Data
		if after.TotalProcessed != before.TotalProcessed+1 || after.TotalFailures != before.TotalFailures {
			t.Errorf("processed %d→%d, failures %d→%d", before.TotalProcessed, after.TotalProcessed,
				before.TotalFailures, after.TotalFailures)
		}
		sizes, err := producer.QueueSizes()
		must(t, err, "QueueSizes")
		if size, ok := sizes["s1"]; !ok || size != 0 {
			t.Errorf("QueueSizes() = %v, want s1 listed with 0", sizes)
		}
	})

	t.Run("ACK of an unknown jid is OK", func(t *testing.T) {
		must(t, worker.Ack("no-such-jid-0001"), "ACK unknown jid")
	})

	t.Run("queues are FIFO", func(t *testing.T) {
		flush(t, producer)
		var jids, seen []string
		for i := range 5 {
			jids = append(jids, push(t, producer, "S1Job", "fifo", i))
		}
		for range 5 {
			job := fetchJob(t, worker, "fifo")
			seen = append(seen, job.Jid)
			must(t, worker.Ack(job.Jid), "ACK")
		}
		if !reflect.DeepEqual(seen, jids) {
			t.Errorf("fetched %v, pushed %v", seen, jids)
		}
	})

	t.Run("FETCH takes queues in the order given", func(t *testing.T) {
		flush(t, producer)
		low := push(t, producer, "S1Job", "low", "low")
		high := push(t, producer, "S1Job", "high", "high")
		first := fetchJob(t, worker, "high", "low")
		second := fetchJob(t, worker, "high", "low")
		if first.Jid != high || second.Jid != low {
			t.Errorf("fetched %s then %s, want high %s then low %s", first.Jid, second.Jid, high, low)
		}
		must(t, worker.Ack(first.Jid), "ACK")
		must(t, worker.Ack(second.Jid), "ACK")
	})

	t.Run("FETCH on an empty queue gives nil after its block", func(t *testing.T) {
		flush(t, producer)
		fetchNothing(t, worker, "s1")
	})

	t.Run("a blocked FETCH wakes up for a job pushed meanwhile", func(t *testing.T) {
		flush(t, producer)
		type result struct {
			job *client.Job
			err error
		}
		done := make(chan result, 1)
		go func() {
			job, err := worker.Fetch("late")
			done <- result{job, err}
		}()
		time.Sleep(300 * time.Millisecond)
		jid := push(t, producer, "S1Job", "late")
		select {
		case r := <-done:
			must(t, r.err, "FETCH late")
			if r.job == nil || r.job.Jid != jid {
				t.Fatalf("blocked FETCH returned %v, want %s", r.job, jid)
			}
			must(t, worker.Ack(jid), "ACK")
		case <-time.After(5 * time.Second): // a FETCH not woken returns nil at 2 s, failing above
			t.Fatal("the blocked FETCH did not return within 5 s")
		}
	})

	t.Run("NewJob without args sends \"args\":null, which is refused", func(t *testing.T) {
		err := producer.Push(client.NewJob("S1NoArgs"))
		protocolError(t, err, "ERR jobs must have an args parameter")
	})

	t.Run("retry policies and reserve_for survive the round trip", func(t *testing.T) {
		flush(t, producer)
		job := newJob("S1Job", "s1", "x")
		job.Retry = &client.RetryPolicyDirectToMorgue
		job.ReserveFor = 600
		job.Backtrace = 5
		must(t, producer.Push(job), "PUSH")
		got := fetchJob(t, worker, "s1")
		if got.Retry == nil || *got.Retry != -1 || got.ReserveFor != 600 || got.Backtrace != 5 {
			t.Errorf("retry=%v reserve_for=%d backtrace=%d", got.Retry, got.ReserveFor, got.Backtrace)
		}
		must(t, worker.Ack(got.Jid), "ACK")
	})
}
