package conformance

// S3: scheduled jobs. The Go client sends `at` as whatever string the caller puts in Job.At
// (omitted when empty); applications use time.Format(time.RFC3339Nano) in UTC.

import (
	"reflect"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
)

func TestS3Scheduled(t *testing.T) {
	producer := open(t)
	worker := openAs(t, "go-s3")

	schedule := func(t *testing.T, at string, args ...any) string {
		t.Helper()
		job := newJob("S3Job", "s3", args...)
		job.At = at
		must(t, producer.Push(job), "PUSH at "+at)
		return job.Jid
	}
	utc := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339Nano) }

	t.Run("at = now + 1 day: scheduled, not fetchable; Kill by pattern moves it to dead", func(t *testing.T) {
		flush(t, producer)
		jid := schedule(t, utc(24*time.Hour), "a-marker-arg")
		schedule(t, utc(24*time.Hour), "other")

		st := state(t, producer)
		if size := taskSize(t, st, "Scheduled"); size != 2 || st.Data.Sets["scheduled"] != 2 {
			t.Errorf("tasks.Scheduled.size=%d sets.scheduled=%d, want 2", size, st.Data.Sets["scheduled"])
		}
		fetchNothing(t, worker, "s3")

		refreshDeadline(t, producer)
		must(t, producer.Kill(client.Scheduled, client.Matching("*marker*")), "MUTATE kill scheduled *marker*")
		if got := tasks(t, producer, "Scheduled", "Dead"); got[0] != 1 || got[1] != 1 {
			t.Errorf("Scheduled.size=%d Dead.size=%d, want 1 1", got[0], got[1])
		}

		// Requeue it from the dead set to look at it.
		must(t, producer.Requeue(client.Dead, client.WithJids(jid)), "MUTATE requeue dead")
		job := fetchJob(t, worker, "s3")
		if job.Jid != jid || !reflect.DeepEqual(job.Args, []any{"a-marker-arg"}) {
			t.Errorf("requeued job %s args %v", job.Jid, job.Args)
		}
		if size := tasks(t, producer, "Dead")[0]; size != 0 {
			t.Errorf("Dead.size = %d after requeue", size)
		}
		must(t, worker.Ack(jid), "ACK")

		// A jobtype + pattern filter must match both.
		refreshDeadline(t, producer)
		must(t, producer.Discard(client.Scheduled, client.OfType("OtherType").Matching("*other*")), "MUTATE discard")
		if size := tasks(t, producer, "Scheduled")[0]; size != 1 {
			t.Errorf("a jobtype that does not match discarded a job: Scheduled.size=%d", size)
		}
		must(t, producer.Discard(client.Scheduled, client.OfType("S3Job").Matching("*other*")), "MUTATE discard")
		if size := tasks(t, producer, "Scheduled")[0]; size != 0 {
			t.Errorf("Scheduled.size=%d after discarding by jobtype + pattern", size)
		}
	})

	t.Run("at = now + 2 s: fetchable once due, not before", func(t *testing.T) {
		flush(t, producer)
		pushed := time.Now()
		jid := schedule(t, utc(2*time.Second), "soon")
		if size := tasks(t, producer, "Scheduled")[0]; size != 1 {
			t.Errorf("Scheduled.size = %d, want 1", size)
		}
		var job *client.Job
		// The real server polls its scheduled set every 5 s; allow 2 s + that.
		for job == nil && time.Since(pushed) < 7500*time.Millisecond {
			var err error
			job, err = worker.Fetch("s3")
			must(t, err, "FETCH s3")
		}
		waited := time.Since(pushed)
		if job == nil {
			t.Fatalf("the job did not become fetchable within %v", waited)
		}
		if job.Jid != jid {
			t.Errorf("fetched %s, scheduled %s", job.Jid, jid)
		}
		if waited < 1900*time.Millisecond {
			t.Errorf("fetched after %v, before it was due", waited)
		}
		if size := tasks(t, producer, "Scheduled")[0]; size != 0 {
			t.Errorf("Scheduled.size = %d after it ran", size)
		}
		must(t, worker.Ack(jid), "ACK")
	})

	t.Run("at in the past is enqueued immediately", func(t *testing.T) {
		flush(t, producer)
		jid := schedule(t, utc(-time.Minute), "past")
		if size := tasks(t, producer, "Scheduled")[0]; size != 0 {
			t.Errorf("Scheduled.size = %d for a past `at`", size)
		}
		started := time.Now()
		job := fetchJob(t, worker, "s3")
		if job.Jid != jid || time.Since(started) > time.Second {
			t.Errorf("fetched %s after %v", job.Jid, time.Since(started))
		}
		must(t, worker.Ack(jid), "ACK")
	})

	t.Run("at with a +00:00 offset and a local-zone offset are accepted", func(t *testing.T) {
		flush(t, producer)
		zone := time.FixedZone("X", 5*3600+30*60)
		schedule(t, time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000000000-07:00"), "utc-offset")
		schedule(t, time.Now().Add(time.Hour).In(zone).Format(time.RFC3339Nano), "zoned")
		if size := tasks(t, producer, "Scheduled")[0]; size != 2 {
			t.Errorf("Scheduled.size = %d, want 2", size)
		}
	})

	t.Run("a malformed at is refused", func(t *testing.T) {
		flush(t, producer)
		job := newJob("S3Job", "s3")
		job.At = "tomorrow-ish"
		protocolErrorPrefix(t, producer.Push(job), `ERR invalid timestamp for 'at': "tomorrow-ish"`)
		if enq := state(t, producer).Data.TotalEnqueued; enq != 0 {
			t.Errorf("total_enqueued = %d after a refused push", enq)
		}
	})
}
