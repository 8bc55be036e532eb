package conformance

// S4: PUSHB through Client.PushBulk, with a mix of valid and invalid jobs. The result is the
// server's map jid → error message, decoded as map[string]string.

import (
	"reflect"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
)

func TestS4PushBulk(t *testing.T) {
	producer := open(t)
	worker := openAs(t, "go-s4")

	t.Run("all valid: an empty result map, every job enqueued in order", func(t *testing.T) {
		flush(t, producer)
		var jobs []*client.Job
		for i := range 3 {
			jobs = append(jobs, newJob("S4Job", "s4", i))
		}
		result, err := producer.PushBulk(jobs)
		must(t, err, "PUSHB")
		if len(result) != 0 {
			t.Errorf("PushBulk result %v, want empty", result)
		}
		for _, job := range jobs {
			got := fetchJob(t, worker, "s4")
			if got.Jid != job.Jid {
				t.Errorf("fetched %s, want %s", got.Jid, job.Jid)
			}
			must(t, worker.Ack(got.Jid), "ACK")
		}
	})

	t.Run("a mix: rejected jobs come back with the exact reasons, valid ones are enqueued", func(t *testing.T) {
		flush(t, producer)
		good1 := newJob("S4Job", "s4", "good1")
		good2 := newJob("S4Job", "s4", "good2")
		shortJid := newJob("S4Job", "s4")
		shortJid.Jid = "short"
		noJobtype := newJob("", "s4")
		noJobtype.Jid = "nojobtype-0001"
		nullArgs := client.NewJob("S4Job") // NewJob without args: "args":null
		nullArgs.Queue = "s4"
		nullArgs.Jid = "nullargs-00001"
		longReserve := newJob("S4Job", "s4", "long")
		longReserve.Jid, longReserve.ReserveFor = "reserve-000001", 86401
		scheduled := newJob("S4Job", "s4", "later")
		scheduled.At = time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)

		result, err := producer.PushBulk([]*client.Job{good1, shortJid, noJobtype, good2, nullArgs, longReserve, scheduled})
		must(t, err, "PUSHB")
		want := map[string]string{
			"short":          "jobs must have a reasonable jid parameter",
			"nojobtype-0001": "jobs must have a jobtype parameter",
			"nullargs-00001": "jobs must have an args parameter",
			"reserve-000001": "jobs cannot be reserved for more than one day",
		}
		if !reflect.DeepEqual(result, want) {
			t.Errorf("PushBulk result\n got %v\nwant %v", result, want)
		}

		st := state(t, producer)
		if st.Data.Queues["s4"] != 2 || taskSize(t, st, "Scheduled") != 1 {
			t.Errorf("queues.s4=%d Scheduled.size=%d, want 2 and 1", st.Data.Queues["s4"], taskSize(t, st, "Scheduled"))
		}
		first := fetchJob(t, worker, "s4")
		second := fetchJob(t, worker, "s4")
		if first.Jid != good1.Jid || second.Jid != good2.Jid {
			t.Errorf("fetched %s, %s; want %s, %s", first.Jid, second.Jid, good1.Jid, good2.Jid)
		}
		must(t, worker.Ack(first.Jid), "ACK")
		must(t, worker.Ack(second.Jid), "ACK")
	})

	t.Run("an empty slice is accepted", func(t *testing.T) {
		result, err := producer.PushBulk([]*client.Job{})
		must(t, err, "PUSHB []")
		if len(result) != 0 {
			t.Errorf("PushBulk([]) = %v", result)
		}
	})

	t.Run("PUSH of a single invalid job is an error reply", func(t *testing.T) {
		job := newJob("S4Job", "s4", 1)
		job.Jid = "short"
		protocolError(t, producer.Push(job), "ERR jobs must have a reasonable jid parameter")
	})
}
