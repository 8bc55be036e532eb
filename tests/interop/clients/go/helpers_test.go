package conformance

// Shared bits for the scenario files. Every scenario talks to the server named by
// FAKTORY_URL (tcp://[:password@]host:port), which tests/interop/test_client_go.py starts fresh for
// each scenario. Connections are made the way applications make them: client.Open() (which
// reads FAKTORY_URL itself) or a client.Server value.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
	worker "github.com/contribsys/faktory_worker_go"
)

// widMu serialises changes to client.RandomProcessWid, the package variable the Go client
// copies into every HELLO (and into BEAT): a worker process sets it once, a test that wants
// connections for several wids has to set it around each dial.
var widMu sync.Mutex

// serverURL returns the URL in the environment variable `name`, or stops the test.
func serverURL(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set: run this package through tests/interop/test_client_go.py", name)
	}
	return value
}

// address is host:port of the server in FAKTORY_URL, for raw sockets.
func address(t *testing.T, name string) string {
	t.Helper()
	u, err := url.Parse(serverURL(t, name))
	if err != nil {
		t.Fatalf("cannot parse %s: %v", name, err)
	}
	return u.Host
}

// open returns a producer connection (HELLO with "wid":"") made by client.Open().
func open(t *testing.T) *client.Client {
	t.Helper()
	return openAs(t, "")
}

// openAs dials with client.Open() while client.RandomProcessWid is `wid`, so the HELLO
// registers a worker process with that wid ("" = producer). Closed (END) at cleanup.
func openAs(t *testing.T, wid string) *client.Client {
	t.Helper()
	var cl *client.Client
	var err error
	withWid(wid, func() { cl, err = client.Open() })
	if err != nil {
		t.Fatalf("client.Open() as wid %q: %v", wid, err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// withWid runs fn with client.RandomProcessWid set to wid.
func withWid(wid string, fn func()) {
	widMu.Lock()
	defer widMu.Unlock()
	saved := client.RandomProcessWid
	client.RandomProcessWid = wid
	defer func() { client.RandomProcessWid = saved }()
	fn()
}

// runUntilProcessed runs mgr until the server's INFO counts `jobs` processed — the Manager
// ACKs after its handler returns, so then every job it took is done — or for 60 s at most.
func runUntilProcessed(t *testing.T, mgr *worker.Manager, jobs uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	poller := open(t)
	go func() {
		for ctx.Err() == nil {
			st, err := poller.CurrentState()
			if err == nil && st.Data.TotalProcessed >= jobs {
				cancel()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	widMu.Lock() // the Manager sets client.RandomProcessWid for the whole process
	defer widMu.Unlock()
	must(t, mgr.RunWithContext(ctx), "Manager.RunWithContext")
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func flush(t *testing.T, cl *client.Client) {
	t.Helper()
	must(t, cl.Flush(), "FLUSH")
}

// newJob is client.NewJob with a queue. Without args it sends "args":[]: NewJob alone would
// send "args":null, which servers refuse (S1 checks that separately).
func newJob(jobtype, queue string, args ...any) *client.Job {
	job := client.NewJob(jobtype, args...)
	job.Queue = queue
	if job.Args == nil {
		job.Args = []any{}
	}
	return job
}

// push pushes a job built by newJob and returns its jid.
func push(t *testing.T, cl *client.Client, jobtype, queue string, args ...any) string {
	t.Helper()
	job := newJob(jobtype, queue, args...)
	must(t, cl.Push(job), "PUSH "+jobtype)
	return job.Jid
}

// fetchJob fetches from the queues and fails the test when nothing (or an error) comes back.
func fetchJob(t *testing.T, cl *client.Client, queues ...string) *client.Job {
	t.Helper()
	job, err := cl.Fetch(queues...)
	must(t, err, "FETCH "+strings.Join(queues, " "))
	if job == nil {
		t.Fatalf("FETCH %s returned no job", strings.Join(queues, " "))
	}
	return job
}

// fetchNothing asserts that a FETCH comes back empty ($-1): after its 2 s block, not never.
// The bound leaves 1 s for a loaded 2-core machine (the suite runs beside the clients'
// builds); how long the block lasts is pinned to the millisecond by the server's MockClock tests.
func fetchNothing(t *testing.T, cl *client.Client, queues ...string) {
	t.Helper()
	started := time.Now()
	job, err := cl.Fetch(queues...)
	elapsed := time.Since(started)
	must(t, err, "FETCH "+strings.Join(queues, " "))
	if job != nil {
		t.Fatalf("FETCH %s returned job %s (%s), expected nothing", strings.Join(queues, " "), job.Jid, job.Type)
	}
	if elapsed > 3*time.Second {
		t.Fatalf("empty FETCH %s took %v (> 3 s)", strings.Join(queues, " "), elapsed)
	}
}

func state(t *testing.T, cl *client.Client) *client.FaktoryState {
	t.Helper()
	st, err := cl.CurrentState()
	must(t, err, "INFO")
	if st == nil {
		t.Fatal("INFO returned nothing")
	}
	return st
}

// taskSize reads the deprecated INFO faktory.tasks.<name>.size (a JSON number).
func taskSize(t *testing.T, st *client.FaktoryState, name string) int {
	t.Helper()
	task, ok := st.Data.Tasks[name]
	if !ok {
		t.Fatalf("INFO faktory.tasks has no %q: %v", name, st.Data.Tasks)
	}
	size, ok := task["size"].(float64)
	if !ok {
		t.Fatalf("INFO faktory.tasks.%s.size is %#v, not a number", name, task["size"])
	}
	return int(size)
}

// tasks returns INFO faktory.tasks.<name>.size for each name, in order.
func tasks(t *testing.T, cl *client.Client, names ...string) []int {
	t.Helper()
	st := state(t, cl)
	out := make([]int, len(names))
	for i, name := range names {
		out[i] = taskSize(t, st, name)
	}
	return out
}

func workers(t *testing.T, cl *client.Client) int {
	t.Helper()
	return tasks(t, cl, "Workers")[0]
}

// refreshDeadline sends a cheap command first: the Go client's MUTATE sets no I/O deadline
// of its own and inherits the (absolute) 5 s one left by the previous command, so a MUTATE
// on a connection idle for more than 5 s fails client-side (protocol/clients.md §7).
func refreshDeadline(t *testing.T, cl *client.Client) {
	t.Helper()
	state(t, cl)
}

// eventually polls probe every 50 ms until it is true, or fails the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, probe func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !probe() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// protocolError asserts that err is the client's *ProtocolError (a `-` reply) with text want.
func protocolError(t *testing.T, err error, want string) {
	t.Helper()
	var pe *client.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("expected the error reply %q, got %v (%T)", want, err, err)
	}
	if pe.Error() != want {
		t.Fatalf("expected the error reply %q, got %q", want, pe.Error())
	}
}

// protocolErrorPrefix is protocolError for messages whose tail is not pinned down.
func protocolErrorPrefix(t *testing.T, err error, prefix string) {
	t.Helper()
	var pe *client.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("expected an error reply starting %q, got %v (%T)", prefix, err, err)
	}
	if !strings.HasPrefix(pe.Error(), prefix) {
		t.Fatalf("expected an error reply starting %q, got %q", prefix, pe.Error())
	}
}

func parseTime(t *testing.T, what, value string) time.Time {
	t.Helper()
	when, err := time.Parse(time.RFC3339Nano, value)
	if err != nil {
		t.Fatalf("%s %q is not RFC 3339: %v", what, value, err)
	}
	return when
}

// rawConn is a bare socket for the few checks the client cannot make (it hides the
// greeting bytes and never reads after END).
type rawConn struct {
	net.Conn
	rdr *bufio.Reader
}

func rawDial(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	must(t, err, "dial "+addr)
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: conn, rdr: bufio.NewReader(conn)}
}

// line reads one reply line, CRLF included.
func (c *rawConn) line(t *testing.T) string {
	t.Helper()
	text, err := c.rdr.ReadString('\n')
	must(t, err, "read a reply line")
	return text
}

func (c *rawConn) send(t *testing.T, format string, args ...any) {
	t.Helper()
	_, err := fmt.Fprintf(c.Conn, format+"\r\n", args...)
	must(t, err, "write")
}

// hello reads the plain greeting and sends a HELLO for wid.
func (c *rawConn) hello(t *testing.T, wid string) {
	t.Helper()
	if greeting := c.line(t); greeting != "+HI {\"v\":2}\r\n" {
		t.Fatalf("greeting %q", greeting)
	}
	c.send(t, `HELLO {"hostname":"go-raw","wid":%q,"pid":1,"labels":["golang"],"v":2}`, wid)
	if reply := c.line(t); reply != "+OK\r\n" {
		t.Fatalf("HELLO answered %q", reply)
	}
}

// expectClose asserts that the server closes the connection without sending anything more.
func (c *rawConn) expectClose(t *testing.T, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 64)
	n, err := c.rdr.Read(buf)
	if n > 0 {
		t.Fatalf("expected the server to close, got %q", buf[:n])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %v", within)
	}
	if err == nil {
		t.Fatal("read returned nothing and no error")
	}
}
