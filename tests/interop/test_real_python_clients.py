"""Conformance matrix, Python column: the two PyPI clients against the server.

* cdrx ``faktory`` 1.0.0: HELLO without ``v`` (so a password is hashed once), JSON with
  spaces, ``retry: 5`` and ``priority`` by default, FAIL without backtrace, BEAT state parsed by
  substring. It has no INFO, MUTATE, QUEUE or END, so counters and requeues go through a side
  RawClient (tests/helpers/rawclient.py).
* ``pyfaktory`` 0.2.13: needs bulk replies for FETCH/INFO/PUSHB/BEAT-state, sends ``"at": ""``
  on every PUSH, beats as soon as a worker-role client is identified (from a non-daemon
  thread), sends END on disconnect without reading.

One test per client × scenario of protocol/clients.md §9, ids ``<target>-<client>-<Sx-name>``
(e.g. ``test_python_client[faktory_py-pyfaktory-S5-queue-control]``). Each one runs against a
fresh faktory_py and a fresh real Faktory (``any_server_factory`` from tests/helpers/real_faktory.py;
the real one skips when it is not built, except under CI=true): the assertions are what both
servers do. S0 uses a password-protected server as well; the other scenarios a plain one.

Scenarios a client cannot drive (§4 and §7.2's applicability table), so they have no test:
  cdrx: S4 (no PUSHB), S5 (no QUEUE); pyfaktory: QUEUE LATENCY (not in the client, so S5 covers
  pause/resume/remove only); both: S7 batches, S8 unique jobs, S9 tracking/expiry (Enterprise;
  pyfaktory has BATCH calls but the OSS servers under test answer them with an error).

S6 runs each client's real worker loop (cdrx ``Worker.run()``, pyfaktory ``Consumer.run()``) in a
subprocess, because both end in ``sys.exit(1)``, with a wid we choose. A side connection marks
that wid quiet and then terminating with ``BEAT {"wid":…,"current_state":…}``; the worker
learns it from the reply to its own next heartbeat. cdrx beats every 15 s by default and only
starts after two periods (30 s); the test sets its documented ``send_heartbeat_every`` to 2 s.
pyfaktory gets ``beat_period=5``, its minimum.

S10 has one check where the servers differ on purpose: a connection that goes away while
blocked in FETCH. faktory_py abandons that wait, so a job pushed right after it is still
fetchable; Faktory's BRPOP for the dead connection pops and reserves it (see
``job_lost_to_cut_fetch``).

Both clients use 30 s socket timeouts; here they get 10 s, and every wait polls with a
deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import faktory
import pytest
from faktory._proto import Connection
from pyfaktory import Client, Job, JobFilter, MutateOperation, Producer
from pyfaktory.util.enums import State
from pyfaktory.util.exceptions import FaktroyWorkProtocolError
from helpers.polling import eventually, fetches_blocked
from helpers.rawclient import RawClient

#: An exception in a client's thread fails the test (pyfaktory's heartbeat thread dies on an
#: error reply to BEAT), with one exception: that thread checks the state, then waits for the
#: connection's lock; when disconnect() takes the lock first, its _beat() raises "Client state
#: is State.DISCONNECTED while `_beat` is only valid in the states [...]". That is a race in
#: the client, harmless here, and only that is ignored. (Later marks in the list win.)
pytestmark = [
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings(
        r"ignore:Exception in thread .*\(_heartbeat\)[\s\S]*Client state is State\.(DISCONNECTED|END) "
        r"while ._beat. is only valid in the states:pytest.PytestUnhandledThreadExceptionWarning"),
]

PASSWORD = "s3cret"
CLIENT_TIMEOUT = 10  # seconds; both clients default to 30

SCENARIO_NAMES = {
    "S0": "handshake",
    "S1": "push-fetch-ack",
    "S2": "fail-retry",
    "S3": "scheduled",
    "S4": "push-bulk",
    "S5": "queue-control",
    "S6": "quiet-terminate",
    "S10": "connections",
}

#: §7.2's applicability table, restricted to what the OSS servers under test can answer.
APPLICABLE = {
    "cdrx": ("S0", "S1", "S2", "S3", "S6", "S10"),
    "pyfaktory": ("S0", "S1", "S2", "S3", "S4", "S5", "S6", "S10"),
}

#: (client, scenario) → reason, for failures caused by a known server gap (strict: fixing the
#: server must drop the mark).
XFAIL: dict[tuple[str, str], str] = {}

#: (client, scenario) → the scenario function, filled in by @scenario below.
SCENARIOS: dict[tuple[str, str], Callable[[Ctx], None]] = {}


def scenario(client: str, sid: str) -> Callable[[Callable[[Ctx], None]], Callable[[Ctx], None]]:
    def register(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        assert (client, sid) not in SCENARIOS
        SCENARIOS[(client, sid)] = fn
        return fn
    return register


@dataclass
class Ctx:
    """What a scenario gets: a way to start servers of the target kind, a scratch dir, and an
    ExitStack for clean-ups that must run even when an assertion fails."""

    factory: Callable[..., Any]
    tmp: Path
    stack: ExitStack

    def server(self, password: str | None = None) -> Any:
        return self.factory(password=password)


# --- helpers shared by both clients ------------------------------------------------------


def new_jid() -> str:
    return uuid.uuid4().hex


def raw(srv) -> RawClient:
    conn = srv.client()
    assert conn.handshake(password=srv.password) == b"OK"
    return conn


def raw_info(srv) -> dict[str, Any]:
    with raw(srv) as conn:
        return conn.info()


def workers(srv) -> int:
    return raw_info(srv)["faktory"]["tasks"]["Workers"]["size"]


def rfc3339(delta: float) -> str:
    """Now + delta seconds as RFC 3339 in UTC, with milliseconds."""
    at = datetime.now(timezone.utc) + timedelta(seconds=delta)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stays(check: Callable[[], bool], seconds: float, what: str, interval: float = 0.25) -> None:
    """`check` must hold at every poll for `seconds` seconds."""
    deadline = time.monotonic() + seconds
    while True:
        assert check(), f"no longer true: {what}"
        if time.monotonic() > deadline:
            return
        time.sleep(interval)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    value = fn()
    return value, time.monotonic() - started


def bulk_state(state: str) -> bytes:
    body = f'{{"state":"{state}"}}'
    return f"${len(body)}\r\n{body}\r\n".encode()


def side_beat(srv, wid: str, state: str) -> bytes:
    """BEAT for someone else's wid from a producer connection: the raw reply bytes."""
    with raw(srv) as conn:
        conn.send(f'BEAT {{"wid":"{wid}","current_state":"{state}"}}\r\n'.encode())
        return conn.recv_raw(len(bulk_state(state)))


def job_lost_to_cut_fetch(srv) -> bool:
    """A job was pushed just after a connection blocked in `FETCH cut` went away. faktory_py
    abandons the wait when the client disconnects, so the job stays queued (False). Faktory
    1.9.4's BRPOP for the dead connection still pops it: the job sits in the working set until
    its reservation expires (1800 s); that is checked here (True)."""
    if not getattr(srv, "is_real_faktory", False):
        return False
    info = eventually(lambda: (i := raw_info(srv)["faktory"])["sets"]["working"] == 1 and i, 3,
                      "Faktory to reserve the job for the closed connection")
    assert info["queues"]["cut"] == 0
    return True


def cut_blocked_fetch(srv, close: Callable[[], None]) -> None:
    """S10: a FETCH on the empty queue `cut` was just sent; once the server holds it blocked,
    `close()` cuts the connection, and this returns when the server has let the wait go.
    faktory_py reports both (INFO's `fetches_waiting`, ours); Faktory reports neither, so
    there a short pause stands in for each (its BRPOP must have started for the job it then
    loses to be observable, see job_lost_to_cut_fetch)."""
    if getattr(srv, "is_real_faktory", False):
        time.sleep(0.2)
        close()
        time.sleep(0.2)
        return
    fetches_blocked(lambda: raw_info(srv), 1)
    close()
    fetches_blocked(lambda: raw_info(srv), 0)


class WorkerProcess:
    """A client's worker loop in a subprocess; its stdout+stderr go to a log file."""

    def __init__(self, ctx: Ctx, name: str, script: str, args: list[str]) -> None:
        path = ctx.tmp / f"{name}.py"
        path.write_text(script)
        self.log = ctx.tmp / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKTORY_")}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log, "wb") as out:
            # A session of its own: pyfaktory's pebble pool forks children that must die with it.
            self.proc = subprocess.Popen([sys.executable, str(path), *args], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        ctx.stack.callback(self.kill)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                pytest.fail(f"the worker exited ({self.proc.returncode}) before logging {text!r}:\n"
                            f"{self.output()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"the worker did not log {text!r} within {timeout:.0f} s:\n{self.output()}",
                            pytrace=False)
            time.sleep(0.2)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit within {timeout:.0f} s:\n{self.output()}", pytrace=False)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


def quiet_then_terminate(srv, worker: WorkerProcess, wid: str, queue: str, *,
                         quiet_line: str, beat: float, learn_timeout: float,
                         exit_timeout: float) -> int:
    """The S6 walk shared by both clients, once the worker has run its first jobs."""
    # The failed job's first retry is 15-45 s away: move it to the dead set so that it cannot
    # come back to the queue while this walk counts the jobs there.
    with raw(srv) as side:
        assert side.json_command("MUTATE", {"cmd": "kill", "target": "retries"}) == b"OK"
    assert side_beat(srv, wid, "quiet") == bulk_state("quiet")
    # The client learns "quiet" from the reply to its own next BEAT.
    worker.wait_for_line(quiet_line, learn_timeout)
    with raw(srv) as producer:
        assert producer.push({"jid": new_jid(), "jobtype": "record", "args": ["after quiet"],
                              "queue": queue}) == b"OK"
    # It stops fetching: the job stays queued for longer than a beat plus a blocking FETCH.
    stays(lambda: raw_info(srv)["faktory"]["queues"].get(queue) == 1, beat + 2.5,
          "the job pushed after quiet is still queued")
    assert worker.proc.poll() is None, f"a quiet worker exited:\n{worker.output()}"
    assert workers(srv) == 1

    assert side_beat(srv, wid, "terminate") == bulk_state("terminate")
    returncode = worker.wait_exit(exit_timeout)
    info = raw_info(srv)["faktory"]
    assert info["queues"].get(queue) == 1, "the terminated worker took the job"
    eventually(lambda: workers(srv) == 0, 5, "the exited worker's wid to go away")
    return returncode


#: The start of both clients' worker scripts: argv, logging and the two job functions.
WORKER_PRELUDE = textwrap.dedent("""
    import logging
    import sys

    url, queue, wid, out, beat = sys.argv[1:]
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")

    def record(*args):
        with open(out, "a") as f:
            f.write(repr(list(args)) + "\\n")

    def explode(*args):
        raise ValueError("kaboom")
""")


def ran_record_and_explode(srv, out: Path, who: str) -> None:
    """S6: the worker ran the queued `record` [7, "x"] and `explode` jobs, and is still there."""
    eventually(lambda: raw_info(srv)["faktory"]["total_processed"] >= 2, 15,
               f"{who} to run both jobs", interval=0.2)
    info = raw_info(srv)["faktory"]
    assert info["total_processed"] == 2 and info["total_failures"] == 1, info
    assert info["sets"]["retries"] == 1  # explode's FAIL (errtype ValueError, no backtrace)
    assert out.read_text() == "[7, 'x']\n"
    assert info["tasks"]["Workers"]["size"] == 1


def fetch_concurrently(srv, fetchers: list[Callable[[], Any]], push_all: Callable[[], None]) -> list[Any]:
    """S10: one thread per fetcher sends one FETCH on the empty queue; once faktory_py reports
    them all blocked (INFO's `fetches_waiting`, ours), `push_all()` pushes a job for each, and
    each FETCH must return one: a blocked FETCH is woken, it does not time out. Returns what
    each fetched. (Faktory cannot say how many FETCHes wait; there the push follows at once,
    and a FETCH that comes after it simply finds its job.)"""
    n = len(fetchers)
    results: list[Any] = [None] * n

    def fetch(i: int) -> None:
        try:
            results[i] = fetchers[i]()
        except Exception as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=fetch, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    if not getattr(srv, "is_real_faktory", False):
        fetches_blocked(lambda: raw_info(srv), n)
    push_all()
    for t in threads:
        t.join(20)
    assert all(isinstance(r, dict) for r in results), results
    return results


def close_wids(a: list[Any], b: Any, info: Callable[[], dict[str, Any]]) -> None:
    """S10: a wid stays while one of its connections does (three for wid a, one for wid b)."""
    def workers_size() -> int:
        return info()["faktory"]["tasks"]["Workers"]["size"]

    open_before = info()["server"]["connections"]
    a[0].disconnect()
    a[1].disconnect()
    eventually(lambda: info()["server"]["connections"] == open_before - 2, 5,
               "the server to handle both closes")
    assert workers_size() == 2
    a[2].disconnect()
    b.disconnect()
    eventually(lambda: workers_size() == 0, 5, "both wids to go away")


# --- cdrx `faktory` 1.0.0 ----------------------------------------------------------------


def cdrx_worker(ctx: Ctx, srv, wid: str | None = None) -> Connection:
    """The client's own worker-side Connection (what Worker uses), HELLO with a wid."""
    wid = wid or "cdrx-" + new_jid()[:12]
    conn = Connection(srv.url, worker_id=wid, labels=["python"], timeout=CLIENT_TIMEOUT)
    assert conn.connect(worker_id=wid) is True
    ctx.stack.callback(cdrx_close, conn)
    return conn


def cdrx_close(conn: Connection) -> None:
    if conn.is_connected:
        conn.disconnect()  # cdrx just closes the socket: it has no END


def cdrx_call(conn: Connection, verb: str, payload: dict[str, Any]) -> str:
    conn.reply(verb, payload)
    return next(conn.get_message())


def wrong_url(srv) -> str:
    return f"tcp://:not-{PASSWORD}@127.0.0.1:{srv.port}"


def plain_url(srv) -> str:
    return f"tcp://127.0.0.1:{srv.port}"


@scenario("cdrx", "S0")
def cdrx_handshake(ctx: Ctx) -> None:
    plain = ctx.server()
    client = faktory.Client(faktory=plain.url)
    assert client.connect() is True  # HELLO without "v" and without "wid": a producer
    assert workers(plain) == 0
    client.disconnect()
    cdrx_worker(ctx, plain, "cdrx-s0-worker")
    assert workers(plain) == 1

    protected = ctx.server(PASSWORD)
    # No "v" in the HELLO ⇒ the server checks ONE round of SHA-256 over password+salt, which is
    # all cdrx computes (it ignores "i").
    jid = new_jid()
    with faktory.connection(faktory=protected.url) as client:
        assert client.queue("Auth", args=[1], queue="s0", jid=jid) is True
    conn = cdrx_worker(ctx, protected, "cdrx-s0-auth")
    assert conn.fetch(["s0"])["jid"] == jid
    assert cdrx_call(conn, "ACK", {"jid": jid}) == "OK"
    assert workers(protected) == 1

    # `-ERR Invalid password` is turned into FaktoryAuthenticationError (it matches on the text)
    with pytest.raises(faktory.FaktoryAuthenticationError):
        faktory.Client(faktory=wrong_url(protected)).connect()
    with pytest.raises(faktory.FaktoryAuthenticationError):
        Connection(wrong_url(protected), worker_id="cdrx-s0-wrong", timeout=CLIENT_TIMEOUT).connect(
            worker_id="cdrx-s0-wrong")
    # no password at all: cdrx sends no pwdhash, the server refuses the same way
    with pytest.raises(faktory.FaktoryAuthenticationError):
        faktory.Client(faktory=plain_url(protected)).connect()
    assert workers(protected) == 1


@scenario("cdrx", "S1")
def cdrx_push_fetch_ack(ctx: Ctx) -> None:
    srv = ctx.server()
    jid, low1, low2 = new_jid(), new_jid(), new_jid()
    with faktory.connection(faktory=srv.url) as client:
        assert client.queue("Low", args=[1], queue="s1-low", jid=low1) is True
        assert client.queue("Low", args=[2], queue="s1-low", jid=low2) is True
        assert client.queue("Add", args=[1, "two", {"k": [3]}], queue="s1-high", jid=jid,
                            custom={"locale": "fr"}) is True

    conn = cdrx_worker(ctx, srv)
    # queues in priority order: the high queue first although its job came last
    job = conn.fetch(["s1-high", "s1-low"])
    assert job is not None
    assert (job["jid"], job["jobtype"], job["args"], job["queue"]) == (
        jid, "Add", [1, "two", {"k": [3]}], "s1-high")
    assert job["custom"] == {"locale": "fr"}
    assert job["retry"] == 5  # cdrx's default, kept as sent
    assert "priority" not in job  # unknown top-level key dropped, like Faktory
    assert job["enqueued_at"].endswith("Z")
    assert cdrx_call(conn, "ACK", {"jid": jid}) == "OK"
    # FIFO within a queue
    for expected in (low1, low2):
        job = conn.fetch(["s1-high", "s1-low"])
        assert job["jid"] == expected
        assert cdrx_call(conn, "ACK", {"jid": expected}) == "OK"
    assert cdrx_call(conn, "BEAT", {"wid": conn.worker_id}) == "OK"
    # an empty FETCH blocks about 2 s, then `$-1`, which cdrx turns into None
    job, elapsed = timed(lambda: conn.fetch(["s1-high", "s1-low"]))
    assert job is None
    assert elapsed >= 1.9, elapsed

    info = raw_info(srv)["faktory"]
    assert info["total_processed"] == 3
    assert info["queues"]["s1-high"] == 0 and info["queues"]["s1-low"] == 0
    assert info["sets"]["working"] == 0


@scenario("cdrx", "S2")
def cdrx_fail_retry(ctx: Ctx) -> None:
    srv = ctx.server()
    bare, with_exc = new_jid(), new_jid()
    with faktory.connection(faktory=srv.url) as client:
        assert client.queue("Boom", args=[1], queue="s2", jid=bare) is True
        assert client.queue("Boom", args=[2], queue="s2", jid=with_exc) is True
    conn = cdrx_worker(ctx, srv)
    assert conn.fetch(["s2"])["jid"] == bare
    # Worker._fail without an exception sends only the jid
    assert cdrx_call(conn, "FAIL", {"jid": bare}) == "OK"
    assert cdrx_call(conn, "FAIL", {"jid": bare}) == f"ERR Job not found {bare}"
    info = raw_info(srv)["faktory"]
    assert info["sets"]["retries"] == 1
    assert info["tasks"]["Retries"]["size"] == 1
    assert info["total_failures"] == 1
    # with an exception: errtype (the class name) and message, still no backtrace
    assert conn.fetch(["s2"])["jid"] == with_exc
    assert cdrx_call(conn, "FAIL", {"jid": with_exc, "errtype": "ValueError", "message": "kaboom"}) == "OK"
    info = raw_info(srv)["faktory"]
    assert (info["sets"]["retries"], info["tasks"]["Retries"]["size"], info["total_failures"]) == (2, 2, 2)

    # the first retry is at least 15 s away: not fetchable through a whole blocking FETCH
    job, elapsed = timed(lambda: conn.fetch(["s2"]))
    assert job is None and elapsed >= 1.9

    # cdrx has no MUTATE: requeue from a side connection
    with raw(srv) as side:
        assert side.json_command("MUTATE", {"cmd": "requeue", "target": "retries",
                                            "filter": {"jids": [bare, with_exc]}}) == b"OK"
    jobs = {}
    for _ in range(2):
        job = conn.fetch(["s2"])
        assert job is not None
        jobs[job["jid"]] = job
    assert set(jobs) == {bare, with_exc}
    for jid, (errtype, message) in {bare: ("unknown", "unknown"), with_exc: ("ValueError", "kaboom")}.items():
        failure = jobs[jid]["failure"]
        assert (failure["retry_count"], failure["remaining"]) == (0, 5)  # cdrx pushes retry 5
        assert (failure["errtype"], failure["message"]) == (errtype, message)
        assert "backtrace" not in failure  # none was sent
        assert "failed_at" in failure and "next_at" in failure
        assert cdrx_call(conn, "ACK", {"jid": jid}) == "OK"
    info = raw_info(srv)["faktory"]
    assert (info["sets"]["retries"], info["sets"]["working"]) == (0, 0)


@scenario("cdrx", "S3")
def cdrx_scheduled(ctx: Ctx) -> None:
    srv = ctx.server()
    with faktory.connection(faktory=srv.url) as client:
        assert client.queue("Later", args=["s3-marker"], queue="s3", at=rfc3339(86400)) is True
        info = raw_info(srv)["faktory"]
        assert (info["tasks"]["Scheduled"]["size"], info["sets"]["scheduled"]) == (1, 1)
        assert info["queues"].get("s3", 0) == 0
        with raw(srv) as side:  # cdrx has no MUTATE
            assert side.json_command("MUTATE", {"cmd": "kill", "target": "scheduled",
                                                "filter": {"regexp": "*s3-marker*"}}) == b"OK"
        info = raw_info(srv)["faktory"]["tasks"]
        assert (info["Scheduled"]["size"], info["Dead"]["size"]) == (0, 1)

        past, empty, soon = new_jid(), new_jid(), new_jid()
        assert client.queue("Now", args=[], queue="s3", jid=past, at=rfc3339(-3600)) is True
        assert client.queue("Now", args=[], queue="s3", jid=empty, at="") is True
        conn = cdrx_worker(ctx, srv)
        assert conn.fetch(["s3"])["jid"] == past
        assert conn.fetch(["s3"])["jid"] == empty
        assert client.queue("Soon", args=[], queue="s3", jid=soon, at=rfc3339(2)) is True
    pushed = time.monotonic()
    assert raw_info(srv)["faktory"]["tasks"]["Scheduled"]["size"] == 1
    # due in 2 s: Faktory polls the scheduled set every 5 s, faktory_py fires at the due time
    job = eventually(lambda: conn.fetch(["s3"]), 2 + 5 + 2, "the job scheduled 2 s ahead", interval=0)
    assert job["jid"] == soon
    assert time.monotonic() - pushed >= 1.5
    for jid in (past, empty, soon):
        assert cdrx_call(conn, "ACK", {"jid": jid}) == "OK"


CDRX_WORKER = WORKER_PRELUDE + textwrap.dedent("""
    from faktory import Worker

    w = Worker(faktory=url, queues=[queue], concurrency=1, use_threads=True, worker_id=wid)
    # the documented knob (default 15 s); the first BEAT comes 2 periods after run()
    w.send_heartbeat_every = float(beat)
    w.register("record", record)
    w.register("explode", explode)
    w.run()
""")


@scenario("cdrx", "S6")
def cdrx_quiet_terminate(ctx: Ctx) -> None:
    srv = ctx.server()
    out, wid, beat = ctx.tmp / "ran.txt", "cdrx-s6-" + new_jid()[:8], 2.0
    with faktory.connection(faktory=srv.url) as client:
        assert client.queue("record", args=[7, "x"], queue="s6") is True
        assert client.queue("explode", args=[], queue="s6") is True
    worker = WorkerProcess(ctx, "cdrx_worker", CDRX_WORKER, [srv.url, "s6", wid, str(out), str(beat)])
    ran_record_and_explode(srv, out, "the worker")

    # first BEAT at 2 × beat after start, then every beat, each at most one 2 s FETCH late
    returncode = quiet_then_terminate(
        srv, worker, wid, "s6", quiet_line="Faktory has quieted this worker", beat=beat,
        learn_timeout=3 * beat + 2 + 5, exit_timeout=beat + 2 + 8)
    assert "Faktory has asked this worker to shutdown" in worker.output()
    assert returncode == 1  # Worker.run() always ends in sys.exit(1)
    assert out.read_text() == "[7, 'x']\n"


@scenario("cdrx", "S10")
def cdrx_connections(ctx: Ctx) -> None:
    srv = ctx.server()
    with raw(srv) as producer:
        base = producer.info()["server"]["connections"]
        # cdrx never sends END: Client.queue outside a `with` connects, pushes and just closes
        for i in range(3):
            assert faktory.Client(faktory=srv.url).queue("NoEnd", args=[i], queue="s10-noend") is True
        eventually(lambda: producer.info()["server"]["connections"] == base, 5,
                   "the server to drop the closed connections")
        assert producer.info()["faktory"]["queues"]["s10-noend"] == 3

        # 25 concurrent blocking FETCHes, each on its own Connection, all with one wid
        n, wid = 25, "cdrx-s10-" + new_jid()[:8]
        conns = [cdrx_worker(ctx, srv, wid) for _ in range(n)]
        assert producer.info()["faktory"]["tasks"]["Workers"]["size"] == 1
        assert producer.info()["server"]["connections"] >= base + n
        jids = [new_jid() for _ in range(n)]

        def push_all() -> None:
            with faktory.connection(faktory=srv.url) as client:
                for i, jid in enumerate(jids):
                    assert client.queue("S10Job", args=[i], queue="s10", jid=jid) is True

        results = fetch_concurrently(srv, [lambda c=c: c.fetch(["s10"]) for c in conns], push_all)
        assert sorted(r["jid"] for r in results) == sorted(jids)
        for conn, job in zip(conns, results):
            assert cdrx_call(conn, "ACK", {"jid": job["jid"]}) == "OK"
        assert producer.info()["faktory"]["total_processed"] == n
        for conn in conns:
            conn.disconnect()
        eventually(lambda: producer.info()["faktory"]["tasks"]["Workers"]["size"] == 0, 5,
                   "the wid to go away with its last connection")

        # Workers.size counts wids, not connections; producers do not count
        a = [cdrx_worker(ctx, srv, "cdrx-s10-a") for _ in range(3)]
        b = cdrx_worker(ctx, srv, "cdrx-s10-b")
        other_producer = faktory.Client(faktory=srv.url)
        assert other_producer.connect() is True
        ctx.stack.callback(other_producer.disconnect)
        assert producer.info()["faktory"]["tasks"]["Workers"]["size"] == 2
        for conn in [*a, b]:
            assert cdrx_call(conn, "BEAT", {"wid": conn.worker_id}) == "OK"
        close_wids(a, b, producer.info)

        # a connection closed in the middle of a blocking FETCH does not swallow the next job
        cut = cdrx_worker(ctx, srv, "cdrx-s10-cut")
        cut.reply("FETCH", "cut")  # sent, never read
        cut_blocked_fetch(srv, cut.disconnect)
        jid = new_jid()
        assert producer.push({"jid": jid, "jobtype": "S10Job", "args": [], "queue": "cut"}) == b"OK"
        if not job_lost_to_cut_fetch(srv):
            again = cdrx_worker(ctx, srv, "cdrx-s10-cut")
            assert again.fetch(["cut"])["jid"] == jid
            assert cdrx_call(again, "ACK", {"jid": jid}) == "OK"


# --- pyfaktory 0.2.13 --------------------------------------------------------------------


def pyf_client(ctx: Ctx, srv, role: str = "both", wid: str | None = None) -> Client:
    """A connected pyfaktory Client. beat_period 5 (its minimum): the heartbeat thread is not a
    daemon and only notices a disconnect after its sleep."""
    client = Client(faktory_url=srv.url, role=role, worker_id=wid or "pyf-" + new_jid()[:12],
                    beat_period=5, timeout=CLIENT_TIMEOUT)
    ctx.stack.callback(pyf_close, client)
    assert client.connect() is True
    return client


def pyf_close(client: Client) -> None:
    if client.state in (State.IDENTIFIED, State.QUIET, State.TERMINATING):
        client.disconnect()  # END (not read), then close
    elif client.state != State.DISCONNECTED:
        client.sock.close()
        client.state = State.DISCONNECTED


def pyf_cut(client: Client) -> None:
    """Close the socket without END, as a killed process would. Under the client's lock, and
    marked disconnected, so its heartbeat thread just stops instead of writing to a closed fd."""
    with client.rlock:
        client.sock.close()
        client._set_state(State.DISCONNECTED)


def pyf_refused(url: str, role: str, exc: type[Exception], match: str, server_closes: bool) -> None:
    client = Client(faktory_url=url, role=role, worker_id="pyf-refused", timeout=CLIENT_TIMEOUT)
    try:
        with pytest.raises(exc, match=match):
            client.connect()
        if server_closes:  # pyfaktory leaves its socket open: the server closes it
            client.sock.settimeout(5)
            assert client.sock.recv(64) == b""
    finally:
        client.sock.close()


@scenario("pyfaktory", "S0")
def pyf_handshake(ctx: Ctx) -> None:
    plain = ctx.server()
    producer = pyf_client(ctx, plain, role="producer")  # HELLO {"v": 2}
    assert producer.info()["faktory"]["tasks"]["Workers"]["size"] == 0
    worker = pyf_client(ctx, plain, role="both", wid="pyf-s0-worker")
    assert producer.info()["faktory"]["tasks"]["Workers"]["size"] == 1
    assert worker._beat() is True

    protected = ctx.server(PASSWORD)
    # "i" rounds of SHA-256 (computed because the HI carries both "i" and "s")
    for role in ("producer", "both"):
        client = pyf_client(ctx, protected, role=role)
        assert client.info()["server"]["faktory_version"]
    both = pyf_client(ctx, protected, role="both", wid="pyf-s0-auth")
    job = Job(jobtype="Auth", args=[1], queue="s0")
    assert Producer(both).push(job) is True
    assert both._fetch(["s0"])["jid"] == job.jid
    assert both._ack(job.jid) is True
    assert both.info()["faktory"]["tasks"]["Workers"]["size"] == 2

    for role in ("producer", "both"):
        pyf_refused(wrong_url(protected), role, FaktroyWorkProtocolError, "ERR Invalid password",
                    server_closes=True)
    # pyfaktory refuses locally (no HELLO sent) when the server asks for a password it was not given
    pyf_refused(plain_url(protected), "producer", ValueError, "Password required", server_closes=False)


@scenario("pyfaktory", "S1")
def pyf_push_fetch_ack(ctx: Ctx) -> None:
    srv = ctx.server()
    pyf = pyf_client(ctx, srv)
    low = [Job(jobtype="Low", args=[i], queue="s1-low") for i in range(2)]
    job = Job(jobtype="Resize", args=[{"w": 640, "h": 480}, "x"], queue="s1-high", custom={"n": 1})
    for j in (*low, job):
        assert Producer(pyf).push(j) is True  # sent with "at": "" ⇒ enqueued now
    got = pyf._fetch(["s1-high", "s1-low"])
    assert got is not None
    assert (got["jid"], got["jobtype"], got["args"], got["queue"]) == (
        job.jid, "Resize", [{"w": 640, "h": 480}, "x"], "s1-high")
    assert got["custom"] == {"n": 1}
    assert got["reserve_for"] == 1800 and got["retry"] == 25 and got["backtrace"] == 5
    assert "at" not in got  # the empty "at" is not echoed back
    assert pyf._ack(job.jid) is True
    for expected in low:  # FIFO
        got = pyf._fetch(["s1-high", "s1-low"])
        assert got["jid"] == expected.jid
        assert pyf._ack(expected.jid) is True
    info = pyf.info()
    assert info["faktory"]["total_processed"] == 3
    assert info["faktory"]["sets"]["working"] == 0
    assert info["faktory"]["tasks"]["Workers"]["size"] == 1
    assert pyf._beat() is True
    got, elapsed = timed(lambda: pyf._fetch(["s1-high", "s1-low"]))
    assert got is None
    assert elapsed >= 1.9, elapsed


@scenario("pyfaktory", "S2")
def pyf_fail_retry(ctx: Ctx) -> None:
    srv = ctx.server()
    pyf = pyf_client(ctx, srv)
    job = Job(jobtype="Flaky", args=["fizz"], queue="s2", retry=3)
    assert Producer(pyf).push(job) is True
    assert pyf._fetch(["s2"])["jid"] == job.jid
    assert pyf._fail(job.jid, "RuntimeError", "it broke", ["a.py:1", "b.py:2"]) is True
    info = pyf.info()["faktory"]
    assert info["tasks"]["Retries"]["size"] == 1
    assert info["sets"]["retries"] == 1
    assert info["total_failures"] == 1
    with pytest.raises(FaktroyWorkProtocolError, match=f"ERR Job not found {job.jid}"):
        pyf._fail(job.jid, "RuntimeError", "again", [])

    # not fetchable through a whole blocking FETCH (the first retry is at least 15 s away) …
    got, elapsed = timed(lambda: pyf._fetch(["s2"]))
    assert got is None and elapsed >= 1.9
    # … until MUTATE requeues it (pyfaktory sends compact JSON)
    op = MutateOperation(cmd="requeue", target="retries",
                         filter=JobFilter(jids=[job.jid], regexp=None, jobtype=None))
    assert pyf.mutate(op) is True
    again = pyf._fetch(["s2"])
    assert again["jid"] == job.jid
    failure = again["failure"]
    assert failure["retry_count"] == 0 and failure["remaining"] == 3
    assert (failure["errtype"], failure["message"]) == ("RuntimeError", "it broke")
    assert failure["backtrace"] == ["a.py:1", "b.py:2"]
    assert "failed_at" in failure and "next_at" in failure
    assert pyf._ack(job.jid) is True
    assert pyf.info()["faktory"]["sets"]["retries"] == 0


@scenario("pyfaktory", "S3")
def pyf_scheduled(ctx: Ctx) -> None:
    srv = ctx.server()
    pyf = pyf_client(ctx, srv)
    later = Job(jobtype="Later", args=["s3-marker"], queue="s3", at=rfc3339(86400))
    assert Producer(pyf).push(later) is True
    info = pyf.info()["faktory"]
    assert (info["tasks"]["Scheduled"]["size"], info["sets"]["scheduled"]) == (1, 1)
    assert info["queues"].get("s3", 0) == 0
    op = MutateOperation(cmd="kill", target="scheduled",
                         filter=JobFilter(jids=None, regexp="*s3-marker*", jobtype=None))
    assert pyf.mutate(op) is True
    info = pyf.info()["faktory"]
    assert (info["tasks"]["Scheduled"]["size"], info["tasks"]["Dead"]["size"]) == (0, 1)

    past = Job(jobtype="Now", args=[], queue="s3", at=rfc3339(-3600))
    empty = Job(jobtype="Now", args=[], queue="s3")  # "at": "" on the wire
    for j in (past, empty):
        assert Producer(pyf).push(j) is True
        assert pyf._fetch(["s3"])["jid"] == j.jid
        assert pyf._ack(j.jid) is True

    soon = Job(jobtype="Soon", args=[], queue="s3", at=rfc3339(2))
    assert Producer(pyf).push(soon) is True
    pushed = time.monotonic()
    assert pyf.info()["faktory"]["tasks"]["Scheduled"]["size"] == 1
    # due in 2 s: Faktory polls the scheduled set every 5 s, faktory_py fires at the due time
    got = eventually(lambda: pyf._fetch(["s3"]), 2 + 5 + 2, "the job scheduled 2 s ahead", interval=0)
    assert got["jid"] == soon.jid
    assert time.monotonic() - pushed >= 1.5
    assert pyf._ack(soon.jid) is True


@scenario("pyfaktory", "S4")
def pyf_push_bulk(ctx: Ctx) -> None:
    srv = ctx.server()
    pyf = pyf_client(ctx, srv)
    good = [Job(jobtype="Ok", args=[i], queue="bulk") for i in range(3)]
    no_jobtype = Job(jobtype="", args=[], queue="bulk", jid="no-jobtype-1")
    short_jid = Job(jobtype="Ok", args=[], queue="bulk", jid="short")
    # The model insists on args; model_construct skips validation, and the None is dropped by
    # push_bulk's model_dump(exclude_none=True): a job without args on the wire.
    no_args = Job.model_construct(jobtype="Ok", args=None, queue="bulk", jid="no-args-0001")
    too_long = Job(jobtype="Ok", args=[], queue="bulk", jid="reserve-0001", reserve_for=86401)
    errors = Producer(pyf).push_bulk([good[0], no_jobtype, good[1], short_jid, no_args, good[2], too_long])
    assert errors == {
        "no-jobtype-1": "jobs must have a jobtype parameter",
        "short": "jobs must have a reasonable jid parameter",
        "no-args-0001": "jobs must have an args parameter",
        "reserve-0001": "jobs cannot be reserved for more than one day",
    }
    assert Producer(pyf).push_bulk([Job(jobtype="Ok", args=[], queue="bulk")]) == {}  # bulk "{}"
    assert pyf.info()["faktory"]["queues"]["bulk"] == 4
    fetched = [pyf._fetch(["bulk"])["jid"] for _ in range(3)]
    assert fetched == [j.jid for j in good]


@scenario("pyfaktory", "S5")
def pyf_queue_control(ctx: Ctx) -> None:
    srv = ctx.server()
    pyf = pyf_client(ctx, srv)
    for queue in ("qa", "qa", "qb"):
        assert Producer(pyf).push(Job(jobtype="Q", args=[queue], queue=queue)) is True

    assert pyf.queue_pause(["qa"]) is True
    got, elapsed = timed(lambda: pyf._fetch(["qa"]))
    assert got is None and elapsed >= 1.9  # a paused queue is skipped
    assert pyf._fetch(["qa", "qb"])["args"] == ["qb"]
    assert pyf.queue_unpause(["qa"]) is True
    assert pyf._fetch(["qa"])["args"] == ["qa"]

    assert pyf.queue_pause(["never-seen"]) is True  # unknown names are ignored
    assert pyf.queue_pause(all_queues=True) is True  # QUEUE PAUSE *
    got, elapsed = timed(lambda: pyf._fetch(["qa", "qb"]))
    assert got is None and elapsed >= 1.9
    assert pyf.queue_unpause(all_queues=True) is True  # QUEUE RESUME *
    assert pyf._fetch(["qa"])["args"] == ["qa"]

    for queue in ("qb", "qc", "qc"):
        assert Producer(pyf).push(Job(jobtype="Q", args=[queue], queue=queue)) is True
    assert pyf.queue_remove(["qb"]) is True
    queues = pyf.info()["faktory"]["queues"]
    assert "qb" not in queues and queues["qc"] == 2
    assert pyf.queue_remove(all_queues=True) is True  # QUEUE REMOVE *
    info = pyf.info()["faktory"]
    assert "qc" not in info["queues"]
    got, elapsed = timed(lambda: pyf._fetch(["qb", "qc"]))
    assert got is None and elapsed >= 1.9

    assert Producer(pyf).push(Job(jobtype="Q", args=[], queue="qd")) is True
    assert pyf._flush() is True
    info = pyf.info()["faktory"]
    # queue names stay known with size 0, in Faktory too; jobs and counters are gone
    assert info["queues"] == {"qd": 0}
    assert (info["total_enqueued"], info["total_processed"], info["total_failures"]) == (0, 0, 0)


PYF_WORKER = WORKER_PRELUDE + textwrap.dedent("""
    from pyfaktory import Client, Consumer

    client = Client(faktory_url=url, role="consumer", worker_id=wid, beat_period=int(beat), timeout=10)
    client.connect()
    consumer = Consumer(client=client, queues=[queue], concurrency=1, priority="strict")
    consumer.register("record", record)
    consumer.register("explode", explode)
    consumer.run()
""")


@scenario("pyfaktory", "S6")
def pyf_quiet_terminate(ctx: Ctx) -> None:
    srv = ctx.server()
    out, wid, beat = ctx.tmp / "ran.txt", "pyf-s6-" + new_jid()[:8], 5
    with raw(srv) as producer:
        for jobtype, args in (("record", [7, "x"]), ("explode", [])):
            assert producer.push({"jid": new_jid(), "jobtype": jobtype, "args": args, "queue": "s6"}) == b"OK"
    worker = WorkerProcess(ctx, "pyf_worker", PYF_WORKER, [srv.url, "s6", wid, str(out), str(beat)])
    ran_record_and_explode(srv, out, "the consumer")

    # The heartbeat thread beats every 5 s, under the lock a 2 s FETCH may hold. It only
    # understands a BULK state; the quiet Consumer sleeps a beat period per loop turn.
    returncode = quiet_then_terminate(
        srv, worker, wid, "s6", quiet_line="not fetching further jobs", beat=beat,
        learn_timeout=beat + 2 + 5, exit_timeout=2 * beat + 2 + 8)
    output = worker.output()
    assert "from State.IDENTIFIED to State.QUIET" in output
    assert "from State.QUIET to State.TERMINATING" in output
    # its own BEATs now carry current_state "quiet" and get the bulk state back, parsed fine
    assert "client state is State.QUIET, not changed" in output
    assert "Unexpected BEAT" not in output and "Traceback" not in output
    assert returncode == 1  # Consumer.run() always ends in sys.exit(1)
    assert out.read_text() == "[7, 'x']\n"


@scenario("pyfaktory", "S10")
def pyf_connections(ctx: Ctx) -> None:
    srv = ctx.server()
    producer = pyf_client(ctx, srv, role="producer")
    base = producer.info()["server"]["connections"]

    # END (what disconnect() sends, unread): the server closes without a reply
    ender = pyf_client(ctx, srv, role="producer")
    ender._end()
    ender.sock.settimeout(5)
    assert ender.sock.recv(64) == b""
    ender.sock.close()
    ender._set_state(State.DISCONNECTED)
    eventually(lambda: producer.info()["server"]["connections"] == base, 5,
               "the server to forget the ENDed connection")

    # 25 concurrent blocking FETCHes, each on its own Client, all with one wid
    n, wid = 25, "pyf-s10-" + new_jid()[:8]
    clients = [pyf_client(ctx, srv, role="consumer", wid=wid) for _ in range(n)]
    # Faktory counts a connection in its own goroutine: wait for the count, then check it
    eventually(lambda: producer.info()["server"]["connections"] >= base + n, 5,
               "the server to count the 25 new connections")
    assert producer.info()["faktory"]["tasks"]["Workers"]["size"] == 1
    jobs = [Job(jobtype="S10Job", args=[i], queue="s10") for i in range(n)]

    def push_all() -> None:
        for job in jobs:
            assert Producer(producer).push(job) is True

    results = fetch_concurrently(srv, [lambda c=c: c._fetch(["s10"]) for c in clients], push_all)
    assert sorted(r["jid"] for r in results) == sorted(j.jid for j in jobs)
    for client, job in zip(clients, results):
        assert client._ack(job["jid"]) is True
    assert producer.info()["faktory"]["total_processed"] == n
    for client in clients:
        client.disconnect()
    eventually(lambda: producer.info()["faktory"]["tasks"]["Workers"]["size"] == 0, 5,
               "the wid to go away with its last connection")

    # Workers.size counts wids, not connections; producers do not count
    a = [pyf_client(ctx, srv, wid="pyf-s10-a") for _ in range(3)]
    b = pyf_client(ctx, srv, wid="pyf-s10-b")
    pyf_client(ctx, srv, role="producer")
    assert producer.info()["faktory"]["tasks"]["Workers"]["size"] == 2
    for client in [*a, b]:
        assert client._beat() is True
    close_wids(a, b, producer.info)

    # an abrupt close (no END) is tolerated; the same wid connects again
    abrupt = pyf_client(ctx, srv, wid="pyf-s10-abrupt")
    assert producer.info()["faktory"]["tasks"]["Workers"]["size"] == 1
    pyf_cut(abrupt)
    eventually(lambda: producer.info()["faktory"]["tasks"]["Workers"]["size"] == 0, 5,
               "the server to drop the abruptly closed worker")
    again = pyf_client(ctx, srv, wid="pyf-s10-abrupt")
    assert again.info()["faktory"]["tasks"]["Workers"]["size"] == 1

    # a connection closed in the middle of a blocking FETCH does not swallow the next job
    cut = pyf_client(ctx, srv, wid="pyf-s10-cut")
    with cut.rlock:
        cut._send("FETCH cut\r\n")  # sent, never read
        cut_blocked_fetch(srv, lambda: pyf_cut(cut))
    job = Job(jobtype="S10Job", args=[], queue="cut")
    assert Producer(producer).push(job) is True
    if not job_lost_to_cut_fetch(srv):
        worker = pyf_client(ctx, srv, wid="pyf-s10-cut")
        assert worker._fetch(["cut"])["jid"] == job.jid
        assert worker._ack(job.jid) is True


# --- the matrix --------------------------------------------------------------------------


def _cases() -> list[Any]:
    cases = []
    for client, sids in APPLICABLE.items():
        for sid in sids:
            reason = XFAIL.get((client, sid))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            cases.append(pytest.param(client, sid, id=f"{client}-{sid}-{SCENARIO_NAMES[sid]}", marks=marks))
    return cases


@pytest.mark.parametrize(("client", "sid"), _cases())
def test_python_client(client: str, sid: str, any_server_factory, tmp_path: Path) -> None:
    with ExitStack() as stack:
        SCENARIOS[(client, sid)](Ctx(any_server_factory, tmp_path, stack))


def test_every_scenario_is_collected() -> None:
    """A scenario function missing from APPLICABLE (or the other way round) would never run."""
    assert set(SCENARIOS) == {(c, s) for c, sids in APPLICABLE.items() for s in sids}
    assert set(XFAIL) <= set(SCENARIOS)
