package conformance

// S13: job dependencies (protocol/spec.md §14) with the Go client's normal Push and job.Custom:
// a chain a → b → c pushed in reverse order; c and b are held, a runs; after each ACK the next
// job is fetched at once from another connection, and INFO's faktory.workflows.held goes
// 2 → 1 → 0 (the reference's C-T1). b's worker ACKs with a result through Generic, the one
// way the Go client can send it; c reads it in custom._after, RESULT GET returns it (C-T9).

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/contribsys/faktory/client"
)

func heldJobs(t *testing.T, cl *client.Client) float64 {
	t.Helper()
	info, err := cl.Info()
	must(t, err, "INFO")
	data, _ := info["faktory"].(map[string]any)
	workflows, _ := data["workflows"].(map[string]any)
	held, ok := workflows["held"].(float64)
	if !ok {
		t.Fatalf("INFO faktory.workflows = %v, want a held count", data["workflows"])
	}
	return held
}

// afterEntry is custom._after[jid] of a released job.
func afterEntry(t *testing.T, job *client.Job, jid string) map[string]any {
	t.Helper()
	after, _ := job.Custom["_after"].(map[string]any)
	entry, ok := after[jid].(map[string]any)
	if !ok {
		t.Fatalf("job %s custom._after = %v, want an entry for %s", job.Jid, job.Custom["_after"], jid)
	}
	return entry
}

func TestS13Workflows(t *testing.T) {
	producer := open(t)
	first := openAs(t, "go-s13-a")
	second := openAs(t, "go-s13-b")
	a, b, c := newJob("S13A", "s13"), newJob("S13B", "s13"), newJob("S13C", "s13")
	c.Custom = map[string]any{"after": []string{b.Jid}}
	b.Custom = map[string]any{"after": []string{a.Jid}}
	for _, job := range []*client.Job{c, b, a} {
		must(t, producer.Push(job), "PUSH "+job.Type)
	}
	if held := heldJobs(t, producer); held != 2 {
		t.Fatalf("held = %v after the pushes, want 2", held)
	}
	if got := fetchJob(t, first, "s13"); got.Jid != a.Jid {
		t.Fatalf("fetched %s (%s) first, want a", got.Jid, got.Type)
	}
	must(t, first.Ack(a.Jid), "ACK a")
	got := fetchJob(t, second, "s13")
	if got.Jid != b.Jid {
		t.Fatalf("fetched %s (%s) after a's ACK, want b", got.Jid, got.Type)
	}
	if outcome := afterEntry(t, got, a.Jid)["outcome"]; outcome != "success" {
		t.Errorf("b's custom._after[a].outcome = %v, want success", outcome)
	}
	if held := heldJobs(t, producer); held != 1 {
		t.Fatalf("held = %v after a's ACK, want 1", held)
	}
	reply, err := second.Generic(fmt.Sprintf(`ACK {"jid":%q,"result":{"n":3}}`, b.Jid))
	must(t, err, "ACK b with a result")
	if reply != "OK" {
		t.Fatalf("ACK with a result answered %q, want OK", reply)
	}
	got = fetchJob(t, first, "s13")
	if got.Jid != c.Jid {
		t.Fatalf("fetched %s (%s) after b's ACK, want c", got.Jid, got.Type)
	}
	result, _ := afterEntry(t, got, b.Jid)["result"].(map[string]any)
	if result["n"] != float64(3) {
		t.Errorf("c's custom._after[b].result = %v, want {\"n\":3}", result)
	}
	if held := heldJobs(t, producer); held != 0 {
		t.Fatalf("held = %v after b's ACK, want 0", held)
	}
	must(t, first.Ack(c.Jid), "ACK c")
	body, err := producer.Generic("RESULT GET " + b.Jid)
	must(t, err, "RESULT GET")
	var record map[string]any
	must(t, json.Unmarshal([]byte(body), &record), "decode RESULT GET")
	if record["outcome"] != "success" || fmt.Sprint(record["result"]) != "map[n:3]" {
		t.Errorf("RESULT GET = %v, want outcome success and result {\"n\":3}", record)
	}
}
