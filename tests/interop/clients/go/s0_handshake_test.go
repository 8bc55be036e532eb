package conformance

// S0: handshake, plain and password-protected (protocol/clients.md §9).
// FAKTORY_URL points at a server without a password, FAKTORY_PASSWORD_URL at one with a
// password (tcp://:<percent-encoded password>@host:port). The Go client always sends the same
// seven HELLO keys, with "wid":"", "username":"" and "pwdhash":"" where they mean nothing.

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/contribsys/faktory/client"
)

var semver = regexp.MustCompile(`^\d+\.\d+\.\d+`)

// withPassword returns FAKTORY_PASSWORD_URL with its userinfo replaced.
func withUserinfo(t *testing.T, info *url.Userinfo) string {
	t.Helper()
	u, err := url.Parse(serverURL(t, "FAKTORY_PASSWORD_URL"))
	must(t, err, "parse FAKTORY_PASSWORD_URL")
	u.User = info
	return u.String()
}

func TestS0Handshake(t *testing.T) {
	t.Run("plain server: producer and worker HELLO are answered OK", func(t *testing.T) {
		producer := open(t)
		worker := openAs(t, "go-s0-plain")
		st := state(t, producer)
		if !semver.MatchString(st.Server.Version) {
			t.Errorf("server.faktory_version %q is not semver", st.Server.Version)
		}
		if st.ServerUtcTime == "" || st.Now == "" {
			t.Errorf("INFO now=%q server_utc_time=%q", st.Now, st.ServerUtcTime)
		}
		if st.Server.Uptime < 1 {
			t.Errorf("server.uptime %d", st.Server.Uptime)
		}
		if got := taskSize(t, st, "Workers"); got != 1 {
			t.Errorf("tasks.Workers.size = %d, want 1 (the producer's wid \"\" does not count)", got)
		}
		// The deprecated untyped Info() decodes the same document.
		info, err := worker.Info()
		must(t, err, "Info()")
		if _, ok := info["faktory"].(map[string]any); !ok {
			t.Errorf("Info() has no faktory object: %v", info)
		}
	})

	t.Run("plain server: greeting is exactly +HI {\"v\":2}", func(t *testing.T) {
		conn := rawDial(t, address(t, "FAKTORY_URL"))
		if got := conn.line(t); got != "+HI {\"v\":2}\r\n" {
			t.Fatalf("greeting %q", got)
		}
	})

	t.Run("password server: greeting carries i and s, compact", func(t *testing.T) {
		conn := rawDial(t, address(t, "FAKTORY_PASSWORD_URL"))
		greeting := conn.line(t)
		if !strings.HasPrefix(greeting, "+HI {") || !strings.HasSuffix(greeting, "}\r\n") || strings.Count(greeting, " ") != 1 {
			t.Fatalf("greeting %q", greeting)
		}
		var hi client.HIv2
		must(t, json.Unmarshal([]byte(strings.TrimSpace(greeting[4:])), &hi), "decode HI")
		if hi.V != 2 || hi.S == "" || hi.I < 1 {
			t.Fatalf("greeting %q decodes to %+v", greeting, hi)
		}
	})

	t.Run("password server: the password from the URL authenticates", func(t *testing.T) {
		t.Setenv("FAKTORY_URL", serverURL(t, "FAKTORY_PASSWORD_URL"))
		producer := open(t)
		worker := openAs(t, "go-s0-auth")
		jid := push(t, producer, "S0Job", "s0", 1)
		job := fetchJob(t, worker, "s0")
		if job.Jid != jid {
			t.Fatalf("fetched %s, pushed %s", job.Jid, jid)
		}
		must(t, worker.Ack(jid), "ACK")
	})

	t.Run("password server: a username in the URL is sent and ignored", func(t *testing.T) {
		u, err := url.Parse(serverURL(t, "FAKTORY_PASSWORD_URL"))
		must(t, err, "parse")
		password, _ := u.User.Password()
		t.Setenv("FAKTORY_URL", withUserinfo(t, url.UserPassword("someone", password)))
		state(t, open(t))
	})

	t.Run("password server: a client.Server with Password set authenticates", func(t *testing.T) {
		u, err := url.Parse(serverURL(t, "FAKTORY_PASSWORD_URL"))
		must(t, err, "parse")
		password, _ := u.User.Password()
		srv := client.DefaultServer()
		srv.Address = u.Host
		srv.Password = password
		cl, err := srv.Open()
		must(t, err, "Server.Open()")
		defer cl.Close()
		state(t, cl)
	})

	for _, c := range []struct{ name, password string }{
		{"a wrong password", "not-the-password"}, {"no password", ""},
	} {
		t.Run("password server: "+c.name+" gets ERR Invalid password", func(t *testing.T) {
			var info *url.Userinfo
			if c.password != "" {
				info = url.UserPassword("", c.password)
			}
			t.Setenv("FAKTORY_URL", withUserinfo(t, info))
			cl, err := client.Open()
			if err == nil {
				cl.Close()
				t.Fatal("client.Open() succeeded with " + c.name)
			}
			protocolError(t, err, "ERR Invalid password")
		})
	}

	t.Run("password server: the refusal is followed by a close", func(t *testing.T) {
		conn := rawDial(t, address(t, "FAKTORY_PASSWORD_URL"))
		conn.line(t)
		conn.send(t, `HELLO {"hostname":"go-raw","wid":"","username":"","pwdhash":"%s","labels":["golang"],"pid":1,"v":2}`,
			strings.Repeat("0", 64))
		if got := conn.line(t); got != "-ERR Invalid password\r\n" {
			t.Fatalf("wrong pwdhash answered %q", got)
		}
		conn.expectClose(t, 3*time.Second)
	})
}
