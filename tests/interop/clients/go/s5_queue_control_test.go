package conformance

// S5: queue control with PauseQueues / ResumeQueues / RemoveQueues (QUEUE PAUSE|RESUME|REMOVE)
// and, through Generic(), QUEUE LATENCY, which the Go client has no method for.

import (
	"encoding/json"
	"testing"
	"time"
)

func TestS5QueueControl(t *testing.T) {
	producer := open(t)
	worker := openAs(t, "go-s5")

	sizes := func(t *testing.T) map[string]uint64 {
		t.Helper()
		got, err := producer.QueueSizes()
		must(t, err, "QueueSizes")
		return got
	}

	t.Run("pause hides a queue from FETCH, resume brings its jobs back", func(t *testing.T) {
		flush(t, producer)
		jid := push(t, producer, "S5Job", "q5a", "a")
		must(t, producer.PauseQueues("q5a"), "QUEUE PAUSE q5a")
		fetchNothing(t, worker, "q5a")
		if sizes(t)["q5a"] != 1 {
			t.Errorf("a paused queue keeps its job: %v", sizes(t))
		}

		// A paused queue is skipped, the others still serve.
		other := push(t, producer, "S5Job", "q5b", "b")
		if got := fetchJob(t, worker, "q5a", "q5b"); got.Jid != other {
			t.Errorf("FETCH q5a q5b gave %s, want q5b's %s", got.Jid, other)
		}
		must(t, worker.Ack(other), "ACK")

		must(t, producer.ResumeQueues("q5a"), "QUEUE RESUME q5a")
		if got := fetchJob(t, worker, "q5a"); got.Jid != jid {
			t.Errorf("after resume FETCH gave %s, want %s", got.Jid, jid)
		}
		must(t, worker.Ack(jid), "ACK")
	})

	t.Run("pausing and resuming unknown queues is a no-op", func(t *testing.T) {
		flush(t, producer)
		must(t, producer.PauseQueues("never-seen-1", "never-seen-2"), "QUEUE PAUSE unknown")
		must(t, producer.ResumeQueues("never-seen-1"), "QUEUE RESUME unknown")
		must(t, producer.RemoveQueues("never-seen-2"), "QUEUE REMOVE unknown")
		if _, ok := sizes(t)["never-seen-1"]; ok {
			t.Errorf("pausing an unknown queue created it: %v", sizes(t))
		}
	})

	t.Run("REMOVE deletes the jobs and drops the queue from INFO", func(t *testing.T) {
		flush(t, producer)
		push(t, producer, "S5Job", "q5a", 1)
		push(t, producer, "S5Job", "q5a", 2)
		keep := push(t, producer, "S5Job", "q5b", 3)
		must(t, producer.RemoveQueues("q5a"), "QUEUE REMOVE q5a")
		got := sizes(t)
		if _, ok := got["q5a"]; ok || got["q5b"] != 1 {
			t.Errorf("after REMOVE q5a: %v", got)
		}
		fetchNothing(t, worker, "q5a")
		if job := fetchJob(t, worker, "q5b"); job.Jid != keep {
			t.Errorf("q5b gave %s", job.Jid)
		}
		must(t, worker.Ack(keep), "ACK")
	})

	t.Run("`*` pauses, resumes and removes every known queue", func(t *testing.T) {
		flush(t, producer)
		a := push(t, producer, "S5Job", "q5a", 1)
		push(t, producer, "S5Job", "q5b", 2)
		must(t, producer.PauseQueues("*"), "QUEUE PAUSE *")
		fetchNothing(t, worker, "q5a", "q5b")
		must(t, producer.ResumeQueues("*"), "QUEUE RESUME *")
		if job := fetchJob(t, worker, "q5a", "q5b"); job.Jid != a {
			t.Errorf("after RESUME * got %s, want %s", job.Jid, a)
		}
		must(t, worker.Ack(a), "ACK")
		push(t, producer, "S5Job", "q5c", 3)
		must(t, producer.RemoveQueues("*"), "QUEUE REMOVE *")
		if got := sizes(t); len(got) != 0 {
			t.Errorf("after REMOVE * INFO still lists %v", got)
		}
		fetchNothing(t, worker, "q5a", "q5b", "q5c")
	})

	t.Run("QUEUE LATENCY via Generic gives seconds per queue", func(t *testing.T) {
		flush(t, producer)
		push(t, producer, "S5Job", "q5lat", 1)
		time.Sleep(300 * time.Millisecond)
		raw, err := producer.Generic("QUEUE LATENCY q5lat q5empty")
		must(t, err, "QUEUE LATENCY")
		var latency map[string]float64
		must(t, json.Unmarshal([]byte(raw), &latency), "decode "+raw)
		if len(latency) != 2 {
			t.Errorf("latency %s, want both queues", raw)
		}
		if l := latency["q5lat"]; l < 0.25 || l > 10 {
			t.Errorf("q5lat latency %v s, want about 0.3", l)
		}
		if l, ok := latency["q5empty"]; !ok || l != 0 {
			t.Errorf("q5empty latency %v (present %v), want 0", l, ok)
		}
		_, err = producer.Generic("QUEUE LATENCY *")
		protocolErrorPrefix(t, err, "ERR ")
	})
}
