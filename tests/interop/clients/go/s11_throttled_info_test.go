package conformance

// S11: INFO with throttles configured (protocol/spec.md §11.4). test_client_go.py starts this
// scenario's server with a conf.d holding a concurrency, a worker and a rate throttle, so INFO
// carries faktory.throttles: the typed CurrentState() and the untyped Info() must both still
// decode it, and the document keeps the four top-level keys the client's own test counts.

import "testing"

func TestS11ThrottledInfo(t *testing.T) {
	producer := open(t)
	worker := openAs(t, "go-s11")
	jid := push(t, producer, "S11Job", "bulk", 1)
	if job := fetchJob(t, worker, "bulk"); job.Jid != jid {
		t.Fatalf("fetched %s, pushed %s", job.Jid, jid)
	}

	st := state(t, producer)
	if got := st.Data.Queues["bulk"]; got != 0 {
		t.Errorf("queues.bulk = %d after the FETCH, want 0", got)
	}
	if got := taskSize(t, st, "Workers"); got != 1 {
		t.Errorf("tasks.Workers.size = %d, want 1", got)
	}

	info, err := worker.Info()
	must(t, err, "Info()")
	if len(info) != 4 {
		t.Errorf("INFO has %d top-level keys, want 4 (faktory, server, now, server_utc_time): %v", len(info), info)
	}
	data, _ := info["faktory"].(map[string]any)
	throttles, _ := data["throttles"].(map[string]any)
	bulk, _ := throttles["bulk"].(map[string]any)
	if bulk["concurrency"] != float64(2) || bulk["in_use"] != float64(1) {
		t.Errorf("faktory.throttles.bulk = %v, want concurrency 2 and in_use 1", bulk)
	}
	api, _ := throttles["api"].(map[string]any)
	if _, ok := api["rate"].(map[string]any); !ok {
		t.Errorf("faktory.throttles.api = %v, want a rate object", api)
	}
	must(t, worker.Ack(jid), "ACK")
}
