"""Smoke tests with the two real PyPI clients against the server process.

* cdrx ``faktory`` 1.0.0: sends HELLO without ``v`` (so a password is hashed once), JSON with
  spaces, ``retry: 5`` and ``priority`` by default, FAIL without backtrace; no INFO, so
  counters are read with a RawClient.
* ``pyfaktory`` 0.2.13: needs bulk replies for FETCH/INFO/PUSHB, sends ``"at": ""`` on every
  PUSH, beats as soon as a worker-role client is identified.

Each scenario runs with and without a password, against faktory_py and against the real
Faktory (tests/real_faktory.py; skipped when tests/run.sh has not built it): the assertions are
what both servers do. Both clients use 30 s socket timeouts, so
nothing here waits on a reply that may not come: the only slow step is an empty FETCH (2 s).
``Worker.run()`` ends in ``sys.exit`` and is only ever run in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import faktory
import pytest
from faktory._proto import Connection
from pyfaktory import Client, Job, JobFilter, MutateOperation, Producer
from pyfaktory.util.exceptions import FaktroyWorkProtocolError
from real_faktory import any_server_factory, real_faktory_factory  # noqa: F401 (fixtures)

PASSWORD = "s3cret"

#: every scenario runs against a server without and with a password
both = pytest.mark.parametrize("password", [None, PASSWORD], ids=["nopass", "password"])


@pytest.fixture
def start(any_server_factory):
    """`start(password)`: a fresh faktory_py, or a fresh real Faktory (ids `[faktory_py]`,
    `[faktory-1.9.4]`; the latter skips when the binary is missing, except under CI=true)."""
    return lambda password: any_server_factory(password=password)


@pytest.fixture
def srv(start, password):
    return start(password)


def raw_info(srv) -> dict[str, Any]:
    with srv.client() as raw:
        assert raw.handshake(password=srv.password) == b"OK"
        return raw.info()


def wrong_url(srv) -> str:
    return f"tcp://:not-{PASSWORD}@127.0.0.1:{srv.port}"


def new_jid() -> str:
    return uuid.uuid4().hex


# --- cdrx `faktory` 1.0.0 ---------------------------------------------------------------


def cdrx_worker(srv, wid: str) -> Connection:
    conn = Connection(srv.url, worker_id=wid, labels=["python"], timeout=10)
    assert conn.connect(worker_id=wid) is True
    return conn


def cdrx_call(conn: Connection, verb: str, payload: dict[str, Any]) -> str:
    conn.reply(verb, payload)
    return next(conn.get_message())


@both
def test_cdrx_push_fetch_ack(srv, password):
    jid = new_jid()
    before = raw_info(srv)["faktory"]["total_processed"]
    with faktory.connection(faktory=srv.url) as client:
        assert client.queue("Add", args=[1, "two", {"k": [3]}], queue="cdrx", jid=jid,
                            custom={"locale": "fr"}) is True

    conn = cdrx_worker(srv, "cdrx-" + new_jid()[:8])
    try:
        job = conn.fetch(["other", "cdrx"])
        assert job is not None
        assert (job["jid"], job["jobtype"], job["args"], job["queue"]) == (
            jid, "Add", [1, "two", {"k": [3]}], "cdrx")
        assert job["custom"] == {"locale": "fr"}
        assert job["retry"] == 5  # cdrx's default, kept as sent
        assert "priority" not in job  # unknown top-level key dropped, like Faktory
        assert job["enqueued_at"].endswith("Z")
        assert cdrx_call(conn, "ACK", {"jid": jid}) == "OK"
        assert cdrx_call(conn, "BEAT", {"wid": conn.worker_id}) == "OK"
    finally:
        conn.disconnect()

    info = raw_info(srv)
    assert info["faktory"]["total_processed"] == before + 1
    assert info["faktory"]["queues"]["cdrx"] == 0
    assert info["faktory"]["sets"]["working"] == 0


@both
def test_cdrx_empty_fetch_is_none(srv, password):
    conn = cdrx_worker(srv, "cdrx-" + new_jid()[:8])
    try:
        started = time.monotonic()
        assert conn.fetch(["nothing-here"]) is None
        assert time.monotonic() - started < 3.0
    finally:
        conn.disconnect()


@both
def test_cdrx_fail_without_backtrace_goes_to_retries(srv, password):
    jid = new_jid()
    with faktory.connection(faktory=srv.url) as client:
        assert client.queue("Boom", args=[], queue="cdrx", jid=jid) is True
    conn = cdrx_worker(srv, "cdrx-" + new_jid()[:8])
    try:
        assert conn.fetch(["cdrx"])["jid"] == jid
        # cdrx sends only the jid when it has no exception to report
        assert cdrx_call(conn, "FAIL", {"jid": jid}) == "OK"
        assert cdrx_call(conn, "FAIL", {"jid": jid}) == f"ERR Job not found {jid}"
    finally:
        conn.disconnect()
    faktory_info = raw_info(srv)["faktory"]
    assert faktory_info["sets"]["retries"] == 1
    assert faktory_info["tasks"]["Retries"]["size"] == 1
    assert faktory_info["total_failures"] == 1


def test_cdrx_wrong_password_refused(start):
    srv = start(PASSWORD)
    with pytest.raises(faktory.FaktoryAuthenticationError):
        faktory.Client(faktory=wrong_url(srv)).connect()
    # no password at all: cdrx sends no pwdhash
    with pytest.raises(faktory.FaktoryAuthenticationError):
        faktory.Client(faktory=f"tcp://127.0.0.1:{srv.port}").connect()


WORKER_SCRIPT = textwrap.dedent("""
    import sys
    from faktory import Worker

    url, queue, out = sys.argv[1:]

    def record(*args):
        with open(out, "a") as f:
            f.write(repr(list(args)) + "\\n")

    def explode(*args):
        raise ValueError("kaboom")

    w = Worker(faktory=url, queues=[queue], concurrency=1, use_threads=True, worker_id="cdrx-subprocess")
    w.register("record", record)
    w.register("explode", explode)
    w.run()
""")


@both
def test_cdrx_worker_run_in_subprocess(srv, password, tmp_path: Path):
    out = tmp_path / "ran.txt"
    with faktory.connection(faktory=srv.url) as client:
        assert client.queue("record", args=[7, "x"], queue="sub") is True
        assert client.queue("explode", args=[], queue="sub") is True
    env = dict(os.environ)
    env.pop("FAKTORY_URL", None)
    proc = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, srv.url, "sub", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        info = raw_info(srv)
        while time.monotonic() < deadline:
            info = raw_info(srv)
            if info["faktory"]["total_processed"] >= 2:
                break
            time.sleep(0.2)
        assert info["faktory"]["total_processed"] == 2, info
        assert info["faktory"]["total_failures"] == 1
        assert info["faktory"]["sets"]["retries"] == 1
        assert out.read_text() == "[7, 'x']\n"
    finally:
        proc.terminate()  # SIGTERM ⇒ KeyboardInterrupt ⇒ graceful disconnect ⇒ sys.exit(1)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- pyfaktory 0.2.13 -------------------------------------------------------------------


@pytest.fixture
def pyf(srv):
    # beat_period 5 (its minimum): the heartbeat thread is not a daemon and only notices
    # the disconnect after its sleep
    client = Client(faktory_url=srv.url, role="both", worker_id="pyf-" + new_jid()[:12], beat_period=5, timeout=10)
    assert client.connect() is True
    yield client
    client.disconnect()


@both
def test_pyfaktory_push_fetch_ack(srv, pyf, password):
    before = pyf.info()["faktory"]["total_processed"]
    job = Job(jobtype="Resize", args=[{"w": 640, "h": 480}, "x"], queue="pyf", custom={"n": 1})
    assert Producer(pyf).push(job) is True  # sent with "at": "" ⇒ enqueued now
    got = pyf._fetch(["pyf"])
    assert got is not None
    assert (got["jid"], got["jobtype"], got["args"], got["queue"]) == (
        job.jid, "Resize", [{"w": 640, "h": 480}, "x"], "pyf")
    assert got["custom"] == {"n": 1}
    assert got["reserve_for"] == 1800 and got["retry"] == 25 and got["backtrace"] == 5
    assert "at" not in got  # the empty "at" is not echoed back
    assert pyf._ack(job.jid) is True
    info = pyf.info()
    assert info["faktory"]["total_processed"] == before + 1
    assert info["faktory"]["sets"]["working"] == 0
    assert info["faktory"]["tasks"]["Workers"]["size"] >= 1
    assert pyf._beat() is True
    assert pyf._fetch(["pyf"]) is None


def test_pyfaktory_wrong_password_refused(start):
    srv = start(PASSWORD)
    for role in ("producer", "both"):
        client = Client(faktory_url=wrong_url(srv), role=role, worker_id="pyf-wrong-pw", timeout=10)
        with pytest.raises(FaktroyWorkProtocolError, match="ERR Invalid password"):
            client.connect()
        client.sock.close()
    # pyfaktory refuses locally when the server asks for a password it was not given
    client = Client(faktory_url=f"tcp://127.0.0.1:{srv.port}", role="producer", timeout=10)
    with pytest.raises(ValueError, match="Password required"):
        client.connect()
    client.sock.close()


@both
def test_pyfaktory_push_bulk_error_map(srv, pyf, password):
    good = [Job(jobtype="Ok", args=[i], queue="bulk") for i in range(3)]
    bad_type = Job(jobtype="", args=[], queue="bulk", jid="no-jobtype-1")
    errors = Producer(pyf).push_bulk([good[0], bad_type, good[1], good[2]])
    assert errors == {"no-jobtype-1": "jobs must have a jobtype parameter"}
    assert Producer(pyf).push_bulk([Job(jobtype="Ok", args=[], queue="bulk")]) == {}
    bad_jid = Job(jobtype="Ok", args=[], queue="bulk", jid="short")
    assert Producer(pyf).push_bulk([bad_jid]) == {"short": "jobs must have a reasonable jid parameter"}
    assert pyf.info()["faktory"]["queues"]["bulk"] == 4


@both
def test_pyfaktory_fail_then_retries(srv, pyf, password):
    job = Job(jobtype="Flaky", args=["fizz"], queue="pyf-fail", retry=3)
    assert Producer(pyf).push(job) is True
    assert pyf._fetch(["pyf-fail"])["jid"] == job.jid
    assert pyf._fail(job.jid, "RuntimeError", "it broke", ["a.py:1", "b.py:2"]) is True
    info = pyf.info()["faktory"]
    assert info["tasks"]["Retries"]["size"] == 1
    assert info["sets"]["retries"] == 1
    assert info["total_failures"] == 1

    # not fetchable straight away (first retry is at least 15 s away) …
    assert pyf._fetch(["pyf-fail"]) is None
    # … until MUTATE requeues it (pyfaktory sends compact JSON)
    op = MutateOperation(cmd="requeue", target="retries", filter=JobFilter(jids=[job.jid], regexp=None, jobtype=None))
    assert pyf.mutate(op) is True
    again = pyf._fetch(["pyf-fail"])
    assert again["jid"] == job.jid
    failure = again["failure"]
    assert failure["retry_count"] == 0 and failure["remaining"] == 3
    assert (failure["errtype"], failure["message"]) == ("RuntimeError", "it broke")
    assert failure["backtrace"] == ["a.py:1", "b.py:2"]
    assert "failed_at" in failure and "next_at" in failure
    assert pyf._ack(job.jid) is True
    assert pyf.info()["faktory"]["sets"]["retries"] == 0


@both
def test_pyfaktory_queue_control_and_flush(srv, pyf, password):
    assert Producer(pyf).push(Job(jobtype="Q", args=[], queue="paused-q")) is True
    assert pyf.queue_pause(["paused-q"]) is True
    assert pyf._fetch(["paused-q"]) is None
    assert pyf.queue_unpause(all_queues=True) is True
    assert pyf._fetch(["paused-q"])["jobtype"] == "Q"
    assert pyf.queue_remove(["paused-q"]) is True
    assert "paused-q" not in pyf.info()["faktory"]["queues"]
    assert pyf._flush() is True


@both
def test_pyfaktory_scheduled_push(srv, pyf, password):
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    job = Job(jobtype="Later", args=[], queue="sched", at=at)
    assert Producer(pyf).push(job) is True
    info = pyf.info()["faktory"]
    assert info["tasks"]["Scheduled"]["size"] == 1
    op = MutateOperation(cmd="kill", target="scheduled", filter=JobFilter(jids=None, regexp="*Later*", jobtype=None))
    assert pyf.mutate(op) is True
    info = pyf.info()["faktory"]
    assert (info["tasks"]["Scheduled"]["size"], info["tasks"]["Dead"]["size"]) == (0, 1)
