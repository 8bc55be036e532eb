"""The Python clients through a throttled server process (protocol/spec.md §11.4): pyfaktory and
`faktory` (through its own reply reader) parse INFO with `faktory.throttles` in it, a rate
limit's object too, and `faktory.limits` (a partitioned named limit), `faktory.cron` (a yearly
entry) and `faktory.workflows` (a held job), the document keeping its four top-level keys
(A-T14, its Python part), and both clients' FETCH
skips a full throttled queue for the next one, as the server's own count confirms; 10 threads
of either client work 200 jobs through `concurrency = 3` and the server's journal shows never
more than 3 reserved at once (A-T15). (An unknown key in the configuration is logged and does not
stop the server.)"""

from __future__ import annotations

import json
import uuid

import faktory
from faktory._proto import Connection
from pyfaktory import Client, Job, Producer

from helpers.rawclient import RawClient
from helpers.throttles import HELD_JOB, configure_throttles, hold_a_job, peak_reserved, work_in_threads


def throttled_server(server_factory):
    srv = server_factory(start=False)
    configure_throttles(srv)
    srv.start()
    hold_a_job(srv)
    return srv


def assert_full_info(info: dict) -> None:
    """What A-T14 asks of every client's INFO: four top-level keys, the extensions under
    `faktory`, the held job counted only as held."""
    assert sorted(info) == ["faktory", "now", "server", "server_utc_time"]  # all nests under faktory
    data = info["faktory"]
    assert data["limits"]["tenants"]["jobtypes"] == [HELD_JOB["jobtype"]]
    assert data["limits"]["tenants"]["waiting"] == 0  # the held TenantJob waits on its dependency only
    assert data["cron"]["entries"] == 1
    assert data["workflows"]["held"] == 1


def in_use(srv, queue: str) -> int:
    with RawClient(srv.port) as conn:
        assert conn.handshake() == b"OK"
        return json.loads(conn.command(f"THROTTLE STATUS {queue}"))[queue]["in_use"]


def test_pyfaktory_parses_info_and_fetches_past_a_full_throttle(server_factory) -> None:
    srv = throttled_server(server_factory)
    client = Client(faktory_url=srv.url, role="both", worker_id="pyf-throttled", beat_period=5, timeout=10)
    assert client.connect() is True
    try:
        producer = Producer(client)
        for i in range(3):
            assert producer.push(Job(jobtype="Bulk", args=[i], queue="bulk")) is True
        assert producer.push(Job(jobtype="Other", args=[], queue="other")) is True
        info = client.info()
        assert_full_info(info)
        assert info["faktory"]["throttles"]["bulk"]["concurrency"] == 2
        assert info["faktory"]["throttles"]["image-processing"]["worker"] == 1
        assert info["faktory"]["throttles"]["api"]["rate"] == {"limit": 100, "period": 60.0}
        assert info["faktory"]["queues"]["bulk"] == 3
        queues = [client._fetch(["bulk", "other"])["queue"] for _ in range(3)]
        assert queues == ["bulk", "bulk", "other"]
        assert in_use(srv, "bulk") == 2
        assert client.info()["faktory"]["throttles"]["bulk"]["waiting"] == 1
    finally:
        client.disconnect()
    # an unknown key is only a warning: logged at boot, and the server runs
    assert 'config: throttles.image-processing: unknown key "colour" ignored' in srv.log_text()


def test_cdrx_faktory_fetches_past_a_full_throttle(server_factory) -> None:
    srv = throttled_server(server_factory)
    with faktory.connection(faktory=srv.url) as producer:
        for i in range(3):
            assert producer.queue("Bulk", args=[i], queue="bulk", jid=uuid.uuid4().hex) is True
        assert producer.queue("Other", args=[], queue="other", jid=uuid.uuid4().hex) is True
    conn = Connection(srv.url, worker_id="cdrx-throttled", labels=["python"], timeout=10)
    assert conn.connect(worker_id="cdrx-throttled") is True
    try:
        queues = [conn.fetch(["bulk", "other"])["queue"] for _ in range(3)]
        assert queues == ["bulk", "bulk", "other"]
        assert in_use(srv, "bulk") == 2
        conn.reply("INFO")  # the client has no INFO of its own: its reply reader parses ours
        info = json.loads(next(conn.get_message()))
        assert_full_info(info)
        assert info["faktory"]["throttles"]["bulk"]["in_use"] == 2
    finally:
        conn.disconnect()


def test_cdrx_faktory_threads_through_concurrency_3(server_factory) -> None:
    """A-T15, its Python part: 10 threads of one worker process, each on its own connection of the
    `faktory` client, work 200 jobs through `gated` (`concurrency = 3`). The server's journal,
    replayed after a clean stop, shows every job reserved once and never more than 3 at once."""
    srv = throttled_server(server_factory)
    with faktory.connection(faktory=srv.url) as producer:
        for i in range(200):
            assert producer.queue("Gated", args=[i], queue="gated", jid=uuid.uuid4().hex) is True

    class Worker:
        def __init__(self) -> None:
            self.conn = Connection(srv.url, worker_id="cdrx-gated", labels=["python"], timeout=10)
            assert self.conn.connect(worker_id="cdrx-gated") is True

        def fetch(self) -> str | None:
            job = self.conn.fetch(["gated"])
            return None if job is None else job["jid"]

        def ack(self, jid: str) -> None:
            self.conn.reply("ACK", {"jid": jid})
            assert next(self.conn.get_message()) == "OK"

        def close(self) -> None:
            self.conn.disconnect()

    worked = work_in_threads(Worker)
    assert len(worked) == 200 and set(worked.values()) == {1}
    assert srv.stop() == 0
    assert peak_reserved(srv.data_dir, "gated") == (3, 200)


def test_pyfaktory_threads_through_concurrency_3(server_factory) -> None:
    """A-T15 with pyfaktory: 10 threads, each with its own worker `Client` of one process (one wid),
    work 200 jobs through `gated`; never more than 3 reserved at once, by the server's journal."""
    srv = throttled_server(server_factory)
    client = Client(faktory_url=srv.url, role="producer", timeout=10)
    assert client.connect() is True
    try:
        producer = Producer(client)
        for i in range(200):
            assert producer.push(Job(jobtype="Gated", args=[i], queue="gated")) is True
    finally:
        client.disconnect()

    class Worker:
        def __init__(self) -> None:
            self.client = Client(faktory_url=srv.url, role="consumer", worker_id="pyf-gated", beat_period=5,
                                 timeout=10)
            assert self.client.connect() is True

        def fetch(self) -> str | None:
            job = self.client._fetch(["gated"])
            return None if job is None else job["jid"]

        def ack(self, jid: str) -> None:
            assert self.client._ack(jid) is True

        def close(self) -> None:
            self.client.disconnect()

    worked = work_in_threads(Worker)
    assert len(worked) == 200 and set(worked.values()) == {1}
    assert srv.stop() == 0
    assert peak_reserved(srv.data_dir, "gated") == (3, 200)


def test_kill_9_and_restart_keep_the_slots(server_factory) -> None:
    """A-T10: 3 of 4 slots held, `kill -9`, restart from the journal (`--fsync always`, so
    every +OK was on disk): THROTTLE STATUS shows the same; ACK of a job fetched before the
    crash frees its slot."""
    srv = server_factory(start=False, args=("--fsync", "always"))
    (srv.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (srv.conf_dir / "conf.d" / "throttles.toml").write_text("[throttles.q]\nconcurrency = 4\ntimeout = 600\n")
    srv.start()
    with RawClient(srv.port) as conn:
        assert conn.handshake(wid="w1") == b"OK"
        jids = [uuid.uuid4().hex for _ in range(5)]
        for jid in jids:
            assert conn.push({"jid": jid, "jobtype": "T", "args": [], "queue": "q"}) == b"OK"
        assert [conn.fetch("q")["jid"] for _ in range(3)] == jids[:3]
        before = json.loads(conn.command("THROTTLE STATUS"))
    assert before["q"]["in_use"] == 3
    srv.kill()
    srv.start()
    with RawClient(srv.port) as conn:
        assert conn.handshake(wid="w1") == b"OK"
        assert json.loads(conn.command("THROTTLE STATUS")) == before
        assert conn.json_command("ACK", {"jid": jids[0]}) == b"OK"
        assert json.loads(conn.command("THROTTLE STATUS q"))["q"]["in_use"] == 2
