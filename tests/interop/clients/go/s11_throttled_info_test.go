package conformance

// S11: INFO with throttles configured (protocol/spec.md §11.4, A-T14). test_client_go.py starts
// this scenario's server with a conf.d holding a concurrency, a worker and a rate throttle, a
// named limit partitioned by tenant and a yearly cron entry, and pushes a job held on a jid
// never pushed, so INFO carries faktory.throttles, .limits, .cron and .workflows: the typed
// CurrentState() and the untyped Info() must both still decode it, and the document keeps the
// four top-level keys the client's own test counts.

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
	limits, _ := data["limits"].(map[string]any)
	tenants, _ := limits["tenants"].(map[string]any)
	if tenants["concurrency"] != float64(1) || tenants["waiting"] != float64(0) {
		t.Errorf("faktory.limits.tenants = %v, want concurrency 1 and waiting 0 (its one job is held)", tenants)
	}
	if cron, _ := data["cron"].(map[string]any); cron["entries"] != float64(1) {
		t.Errorf("faktory.cron = %v, want 1 entry", data["cron"])
	}
	if workflows, _ := data["workflows"].(map[string]any); workflows["held"] != float64(1) {
		t.Errorf("faktory.workflows = %v, want 1 held job", data["workflows"])
	}
	must(t, worker.Ack(jid), "ACK")
}
