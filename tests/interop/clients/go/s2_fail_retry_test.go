package conformance

// S2: FAIL → the job is in the retry set (INFO is exact straight away) → MUTATE requeue by jid
// → FETCH shows the failure block. Plus the other MUTATE calls and the retry policies.
// The Go client's FAIL always sends errtype "unknown", and a backtrace only when given one
// (it drops the first three lines, the runtime/debug.Stack() header).

import (
	"encoding/json"
	"errors"
	"runtime/debug"
	"testing"

	"github.com/contribsys/faktory/client"
)

func TestS2FailRetry(t *testing.T) {
	producer := open(t)
	worker := openAs(t, "go-s2")

	fetchAndFail := func(t *testing.T, queue string, retry *int, message string, backtrace []byte) string {
		t.Helper()
		job := newJob("S2Job", queue, "x")
		job.Retry = retry
		must(t, producer.Push(job), "PUSH")
		got := fetchJob(t, worker, queue)
		if got.Jid != job.Jid {
			t.Fatalf("fetched %s, pushed %s", got.Jid, job.Jid)
		}
		must(t, worker.Fail(job.Jid, errors.New(message), backtrace), "FAIL")
		return job.Jid
	}
	three := 3

	t.Run("FAIL puts the job in the retry set, hidden, then Requeue brings it back", func(t *testing.T) {
		flush(t, producer)
		before := state(t, producer).Data
		jid := fetchAndFail(t, "s2", &three, "it broke", nil)

		st := state(t, producer)
		if size := taskSize(t, st, "Retries"); size != 1 {
			t.Errorf("tasks.Retries.size = %d, want 1", size)
		}
		if st.Data.Sets["retries"] != 1 {
			t.Errorf("sets.retries = %d, want 1", st.Data.Sets["retries"])
		}
		if st.Data.TotalFailures != before.TotalFailures+1 {
			t.Errorf("total_failures %d → %d", before.TotalFailures, st.Data.TotalFailures)
		}

		// Retried no sooner than 15 s: a whole blocking FETCH (2 s) finds nothing.
		fetchNothing(t, worker, "s2")

		refreshDeadline(t, producer)
		must(t, producer.Requeue(client.Retries, client.WithJids(jid)), "MUTATE requeue retries")
		if size := tasks(t, producer, "Retries")[0]; size != 0 {
			t.Errorf("tasks.Retries.size = %d after requeue", size)
		}

		// Generic() hands back the raw payload: check which keys are there, not just values.
		raw, err := worker.Generic("FETCH s2")
		must(t, err, "FETCH s2")
		var job struct {
			Jid     string                     `json:"jid"`
			Failure map[string]json.RawMessage `json:"failure"`
		}
		must(t, json.Unmarshal([]byte(raw), &job), "decode "+raw)
		if job.Jid != jid {
			t.Fatalf("requeued FETCH gave %s", raw)
		}
		if _, ok := job.Failure["backtrace"]; ok {
			t.Errorf("failure has a backtrace key although none was sent: %s", raw)
		}
		var failure client.Failure
		must(t, json.Unmarshal([]byte(raw), &struct {
			F *client.Failure `json:"failure"`
		}{&failure}), "decode failure")
		if failure.RetryCount != 0 || failure.RetryRemaining != 3 {
			t.Errorf("retry_count=%d remaining=%d, want 0 and 3", failure.RetryCount, failure.RetryRemaining)
		}
		if failure.ErrorMessage != "it broke" || failure.ErrorType != "unknown" {
			t.Errorf("message=%q errtype=%q", failure.ErrorMessage, failure.ErrorType)
		}
		failedAt := parseTime(t, "failed_at", failure.FailedAt)
		nextAt := parseTime(t, "next_at", failure.NextAt)
		if d := nextAt.Sub(failedAt).Seconds(); d < 15 {
			t.Errorf("next_at is %.1f s after failed_at, want >= 15", d)
		}

		// Failing it again, with a backtrace, counts up.
		must(t, worker.Fail(jid, errors.New("again"), debug.Stack()), "FAIL again")
		refreshDeadline(t, producer)
		must(t, producer.Requeue(client.Retries, client.WithJids(jid)), "MUTATE requeue retries")
		again := fetchJob(t, worker, "s2")
		if again.Failure == nil || again.Failure.RetryCount != 1 || again.Failure.RetryRemaining != 2 ||
			again.Failure.ErrorMessage != "again" {
			t.Fatalf("second failure block %+v", again.Failure)
		}
		if n := len(again.Failure.Backtrace); n == 0 || n > 50 {
			t.Errorf("backtrace has %d lines, want 1..50", n)
		}
		must(t, worker.Ack(jid), "ACK")
	})

	t.Run("retry 0 drops the failed job; retry -1 sends it straight to the dead set", func(t *testing.T) {
		flush(t, producer)
		fetchAndFail(t, "s2", &client.RetryPolicyEmphemeral, "gone", nil)
		if got := tasks(t, producer, "Retries", "Dead"); got[0] != 0 || got[1] != 0 {
			t.Errorf("retry 0: Retries.size=%d Dead.size=%d, want 0 0", got[0], got[1])
		}
		jid := fetchAndFail(t, "s2", &client.RetryPolicyDirectToMorgue, "dead", nil)
		if got := tasks(t, producer, "Retries", "Dead"); got[0] != 0 || got[1] != 1 {
			t.Errorf("retry -1: Retries.size=%d Dead.size=%d, want 0 1", got[0], got[1])
		}
		refreshDeadline(t, producer)
		must(t, producer.Requeue(client.Dead, client.WithJids(jid)), "MUTATE requeue dead")
		if got := fetchJob(t, worker, "s2"); got.Jid != jid {
			t.Errorf("requeued from dead: %s", got.Jid)
		}
		must(t, worker.Ack(jid), "ACK")
	})

	t.Run("Clear empties the retry set", func(t *testing.T) {
		flush(t, producer)
		fetchAndFail(t, "s2", &three, "one", nil)
		fetchAndFail(t, "s2", &three, "two", nil)
		if size := tasks(t, producer, "Retries")[0]; size != 2 {
			t.Fatalf("tasks.Retries.size = %d, want 2", size)
		}
		must(t, producer.Clear(client.Retries), "MUTATE clear retries")
		if size := tasks(t, producer, "Retries")[0]; size != 0 {
			t.Errorf("tasks.Retries.size = %d after Clear", size)
		}
	})

	t.Run("Kill by jobtype moves retries to the dead set; Discard(Everything) empties it", func(t *testing.T) {
		flush(t, producer)
		fetchAndFail(t, "s2", &three, "one", nil)
		refreshDeadline(t, producer)
		must(t, producer.Kill(client.Retries, client.OfType("OtherJob")), "MUTATE kill OtherJob")
		if size := tasks(t, producer, "Retries")[0]; size != 1 {
			t.Errorf("a non-matching jobtype filter changed Retries.size to %d", size)
		}
		must(t, producer.Kill(client.Retries, client.OfType("S2Job")), "MUTATE kill S2Job")
		if got := tasks(t, producer, "Retries", "Dead"); got[0] != 0 || got[1] != 1 {
			t.Errorf("Retries.size=%d Dead.size=%d, want 0 1", got[0], got[1])
		}
		must(t, producer.Discard(client.Dead, client.Everything), "MUTATE discard dead *")
		if size := tasks(t, producer, "Dead")[0]; size != 0 {
			t.Errorf("Dead.size = %d after Discard(Everything)", size)
		}
	})

	t.Run("FAIL for a jid that is not reserved is an error", func(t *testing.T) {
		err := worker.Fail("0123456789abcdef", errors.New("x"), nil)
		protocolError(t, err, "ERR Job not found 0123456789abcdef")
	})
}
