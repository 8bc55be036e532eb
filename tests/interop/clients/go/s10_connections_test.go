package conformance

// S10: connection hygiene. One wid with many pooled connections (client.Pool, as FWG uses it),
// 25 concurrent blocking FETCHes, INFO tasks.Workers.size counting wids (not connections),
// END closing without a reply, abrupt closes. The Go client never reads after END and never
// closes without END, so those two checks use a raw socket.

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
)

func TestS10Connections(t *testing.T) {
	producer := open(t)

	t.Run("25 concurrent blocking FETCHes from one wid's pool each get a distinct job", func(t *testing.T) {
		flush(t, producer)
		pool, err := client.NewPool(25)
		must(t, err, "NewPool")
		const n = 25
		results := make([]*client.Job, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		// Every pooled connection dials lazily, with the wid in client.RandomProcessWid.
		withWid("go-s10", func() {
			var ready sync.WaitGroup
			ready.Add(n)
			held := make([]*client.Client, n)
			for i := range n {
				go func() {
					defer ready.Done()
					held[i], errs[i] = pool.Get()
				}()
			}
			ready.Wait()
			for i := range n {
				must(t, errs[i], "pool.Get")
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer pool.Put(held[i])
					// Like a worker, FETCH again after an empty reply (only a very slow
					// push loop below would make that happen).
					for deadline := time.Now().Add(10 * time.Second); results[i] == nil && errs[i] == nil && time.Now().Before(deadline); {
						results[i], errs[i] = held[i].Fetch("s10")
					}
				}()
			}
		})
		time.Sleep(300 * time.Millisecond) // let the FETCHes block on the empty queue
		if got := workers(t, producer); got != 1 {
			t.Errorf("tasks.Workers.size = %d with 25 connections of one wid, want 1", got)
		}
		if conns := state(t, producer).Server.Connections; conns < n+1 {
			t.Errorf("server.connections = %d, want >= %d", conns, n+1)
		}
		var jids []string
		for i := range n {
			jids = append(jids, push(t, producer, "S10Job", "s10", i))
		}
		wg.Wait()
		var got []string
		for i := range n {
			must(t, errs[i], "FETCH")
			if results[i] == nil {
				t.Fatalf("FETCH %d came back empty", i)
			}
			got = append(got, results[i].Jid)
		}
		sort.Strings(got)
		sort.Strings(jids)
		for i := range n {
			if got[i] != jids[i] {
				t.Fatalf("fetched jids %v, pushed %v", got, jids)
			}
		}
		if pool.Len() != n {
			t.Errorf("the pool holds %d connections, want %d", pool.Len(), n)
		}
		for _, jid := range got {
			must(t, pool.With(func(cl *client.Client) error { return cl.Ack(jid) }), "ACK")
		}
		if processed := state(t, producer).Data.TotalProcessed; processed != n {
			t.Errorf("total_processed = %d, want %d", processed, n)
		}
		pool.Close() // END on every connection
		eventually(t, 5*time.Second, "the wid to go away with its last connection", func() bool {
			return workers(t, producer) == 0
		})
	})

	t.Run("INFO tasks.Workers.size counts distinct wids; producers do not count", func(t *testing.T) {
		a1, a2, a3 := openAs(t, "go-s10-a"), openAs(t, "go-s10-a"), openAs(t, "go-s10-a")
		b := openAs(t, "go-s10-b")
		openAs(t, "")
		if got := workers(t, producer); got != 2 {
			t.Errorf("tasks.Workers.size = %d, want 2", got)
		}
		for _, c := range []struct {
			wid string
			cl  *client.Client
		}{{"go-s10-a", a1}, {"go-s10-a", a2}, {"go-s10-a", a3}, {"go-s10-b", b}} {
			var reply string
			var err error
			withWid(c.wid, func() { reply, err = c.cl.Beat() })
			must(t, err, "Beat "+c.wid)
			if reply != "" {
				t.Errorf("Beat() for %s = %q, want \"\" (+OK)", c.wid, reply)
			}
		}
		must(t, a1.Close(), "close")
		must(t, a2.Close(), "close")
		if got := workers(t, producer); got != 2 {
			t.Errorf("a wid with one connection left is still a worker: Workers.size = %d", got)
		}
		must(t, a3.Close(), "close")
		must(t, b.Close(), "close")
		eventually(t, 5*time.Second, "both wids to go away", func() bool { return workers(t, producer) == 0 })
	})

	t.Run("END is answered by a close, with no reply", func(t *testing.T) {
		conn := rawDial(t, address(t, "FAKTORY_URL"))
		conn.hello(t, "")
		conn.send(t, "END")
		conn.expectClose(t, 3*time.Second)
	})

	t.Run("an abrupt close (no END) is tolerated, and the server still answers", func(t *testing.T) {
		conn := rawDial(t, address(t, "FAKTORY_URL"))
		conn.hello(t, "go-s10-abrupt")
		if got := workers(t, producer); got != 1 {
			t.Errorf("tasks.Workers.size = %d, want 1", got)
		}
		_ = conn.Close()
		eventually(t, 5*time.Second, "the server to drop the abruptly closed worker", func() bool {
			return workers(t, producer) == 0
		})
		state(t, openAs(t, "go-s10-abrupt"))
		if got := workers(t, producer); got != 1 {
			t.Errorf("the same wid reconnecting: Workers.size = %d, want 1", got)
		}
	})

	t.Run("a connection closed during a blocking FETCH does not lose the next job", func(t *testing.T) {
		flush(t, producer)
		conn := rawDial(t, address(t, "FAKTORY_URL"))
		conn.hello(t, "go-s10-cut")
		conn.send(t, "FETCH cut")
		time.Sleep(200 * time.Millisecond)
		_ = conn.Close()
		time.Sleep(200 * time.Millisecond)
		jid := push(t, producer, "S10Job", "cut")
		worker := openAs(t, "go-s10-cut")
		job := fetchJob(t, worker, "cut")
		if job.Jid != jid {
			t.Errorf("fetched %s, pushed %s", job.Jid, jid)
		}
		must(t, worker.Ack(jid), "ACK")
	})
}
