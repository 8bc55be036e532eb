package conformance

// S14: a faktory_worker_go Manager runs the jobs an every-second `[[cron]]` entry fires
// (protocol/spec.md §12, B-T11): each arrives with the entry's jobtype and args and the
// server's `custom._cron` mark ({"id", "tick"}), and the Manager ACKs it. The server's own
// counts (INFO) say they were processed without failure; test_client_go.py configures the
// entry and reads the fires' outcomes from the server's journal afterwards.

import (
	"context"
	"sync"
	"testing"

	worker "github.com/contribsys/faktory_worker_go"
)

const s13Jobs = 3

func TestS14CronManager(t *testing.T) {
	var mu sync.Mutex
	ticks := map[string]bool{}
	var problems []string
	mgr := worker.NewManager()
	mgr.ProcessWID = "go-s14-manager"
	mgr.Concurrency = 2
	mgr.ProcessStrictPriorityQueues("cron")
	mgr.Register("S14Cron", func(ctx context.Context, args ...any) error {
		help := worker.HelperFor(ctx)
		mark, ok := help.Custom("_cron")
		mu.Lock()
		defer mu.Unlock()
		fields, isMap := mark.(map[string]any)
		switch {
		case !ok || !isMap:
			problems = append(problems, "no custom._cron map")
		case fields["id"] != "s14":
			problems = append(problems, "custom._cron.id is not s14")
		case len(args) != 2 || args[0] != "cron" || args[1] != float64(14):
			problems = append(problems, "unexpected args")
		default:
			tick, _ := fields["tick"].(string)
			ticks[tick] = true
		}
		return nil
	})
	runUntilProcessed(t, mgr, s13Jobs)
	if len(problems) > 0 {
		t.Fatalf("cron jobs as the Manager saw them: %v", problems)
	}
	if len(ticks) < s13Jobs {
		t.Fatalf("%d distinct ticks worked, want at least %d", len(ticks), s13Jobs)
	}
	for tick := range ticks {
		parseTime(t, "custom._cron.tick", tick)
	}
	st := state(t, open(t))
	if st.Data.TotalFailures != 0 {
		t.Errorf("total_failures = %d, want 0", st.Data.TotalFailures)
	}
}
