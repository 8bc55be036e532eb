"""Hot standby and takeover on a real redis-server (protocol/spec.md §7.1): while one node
holds the lease, another follows the op log into its store (its web UI says `standby`,
`/health/primary` answers 503, its INFO's `faktory.ha` shows how far it is); `kill -9` of
the primary and the standby serves within the lease TTL plus its catch-up, with every
acknowledged job, the reservations as they were (same deadlines), and no ACKed or
reserved job handed out again. Three rounds, the nodes taking turns; the takeover times
are printed (`-s`) and each is bounded."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import trio

from faktory_py.config import Config, parse_store
from faktory_py.server.app import Server, configured_features, serve
from faktory_py.server.ha.backend import open_redis_backend
from faktory_py.store.memory import MemoryStore
from helpers.polling import eventually
from helpers.rawclient import RawClient
from helpers.redis import TEST_REDIS_TOML, advertise, job_state, redis_conf
from helpers.servers import ServerProcess

QUEUE = "takeover"
ROUNDS = 3
#: TEST_REDIS_TOML's lease_ttl_ms: the standby may take over only once the dead lease expired
LEASE_TTL = 2.0
#: what a takeover may take beyond the lease TTL (the catch-up, ACQUIRE, the marker, listen)
SLACK = 3.0


def make_job(jid: str) -> dict[str, object]:
    return {"jid": jid, "jobtype": "T", "args": [jid], "queue": QUEUE, "reserve_for": 600}


@pytest.fixture
def nodes(tmp_path: Path, redis_store: str) -> Iterator[list[ServerProcess]]:
    """Two server processes on one op log in Redis, each with its web UI (not started)."""
    made = [ServerProcess(tmp_path / f"node{n}", args=("--store", redis_store), web=True) for n in range(2)]
    for node in made:
        redis_conf(node.conf_dir)
    assert "lease_ttl_ms = 2000" in TEST_REDIS_TOML
    yield made
    for node in made:
        node.cleanup()


def web_get(node: ServerProcess, path: str) -> tuple[int, bytes] | None:
    """(status, body) of a GET on `node`'s web UI; None while it does not answer."""
    try:
        with urllib.request.urlopen(node.web_url + path, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None


def web_post(node: ServerProcess, path: str, form: str) -> tuple[int, bytes]:
    request = urllib.request.Request(node.web_url + path, data=form.encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def ha(node: ServerProcess) -> dict[str, Any]:
    """INFO's `faktory.ha` as `node`'s web UI (`/stats`) reports it: a standby has no command port."""
    answer = web_get(node, "/stats")
    assert answer is not None and answer[0] == 200
    return json.loads(answer[1])["faktory"]["ha"]


def stats(node: ServerProcess) -> dict[str, Any]:
    answer = web_get(node, "/stats")
    assert answer is not None
    return json.loads(answer[1])["faktory"]


def greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(3) == b"+HI"
    except OSError:
        return False


def connect(node: ServerProcess, **hello: object) -> RawClient:
    c = node.client()
    assert c.handshake(**hello) == b"OK"
    return c


@dataclass
class Ledger:
    """What the test was told: every jid in exactly one of these sets."""

    pending: set[str] = field(default_factory=set)  # pushed (+OK), neither fetched nor acked
    reserved: set[str] = field(default_factory=set)  # fetched by a worker that never ACKs
    acked: set[str] = field(default_factory=set)


def takeover_round(primary: ServerProcess, standby: ServerProcess, number: int, ledger: Ledger) -> float:
    """Start `standby`, work `primary`, check the standby follows, kill -9 the primary;
    returns how long the standby took to serve."""
    standby.spawn()
    eventually(lambda: web_get(standby, "/health/primary"), 20, "the standby's web UI")
    assert web_get(standby, "/health/primary") == (503, b"standby")
    assert web_get(primary, "/health/primary") == (200, b"primary")
    parked = socket.create_connection(("127.0.0.1", standby.port), timeout=LEASE_TTL + SLACK + 5)

    with connect(primary) as c:
        jids = [f"round{number}-{i:06d}" for i in range(200)]
        c.send(b"".join(f"PUSH {json.dumps(make_job(jid))}\r\n".encode() for jid in jids))
        assert all(c.reply() == b"OK" for _ in jids)
        ledger.pending.update(jids)
    with connect(primary, wid=f"acker-{number}") as c:
        for _ in range(50):
            jid = c.fetch(QUEUE)["jid"]  # type: ignore[index]
            assert c.json_command("ACK", {"jid": jid}) == b"OK"
            ledger.pending.discard(jid)
            ledger.acked.add(jid)
    worker = connect(primary, wid=f"worker-{number}")
    for _ in range(10):
        jid = worker.fetch(QUEUE)["jid"]  # type: ignore[index]
        ledger.pending.discard(jid)
        ledger.reserved.add(jid)
    with connect(primary) as c:
        head = c.info()["faktory"]["ha"]["index"]

    # the standby reads what the primary appends, as it is appended
    eventually(lambda: ha(standby)["index"] == head, 10, f"the standby at index {head}")
    follower = ha(standby)
    assert follower["lag"] == 0 and follower["role"] == "standby"
    assert follower["lease_holder"] == f"{socket.gethostname()}:{primary.port}"
    assert stats(standby)["queues"] == {QUEUE: len(ledger.pending)}
    assert stats(standby)["sets"]["working"] == len(ledger.reserved)
    assert web_post(standby, f"/queues?name={QUEUE}", "action=pause") == (
        503, f"this node is a standby: the primary is {follower['lease_holder']}".encode())

    primary.kill()
    killed = time.monotonic()
    with parked:  # accepted, not greeted: no primary advertises an address to forward it to
        assert parked.recv(3) == b"+HI"  # the standby greets it once it serves
    took = time.monotonic() - killed
    worker.close()
    with connect(standby) as c:
        info = c.info()["faktory"]
    assert info["ha"] | {"index": 0} == {"role": "primary", "node_id": follower["node_id"], "index": 0, "lag": 0,
                                         "lease_holder": follower["node_id"], "epoch": follower["epoch"] + 1}
    assert info["queues"] == {QUEUE: len(ledger.pending)}
    assert info["sets"]["working"] == len(ledger.reserved)  # still reserved: they expire at their deadline
    assert web_get(standby, "/health/primary") == (200, b"primary")
    return took


def test_a_standby_follows_the_log_and_takes_over_after_kill_9(nodes) -> None:
    """Without `advertise` a standby parks the clients that connect to it; they are
    greeted once it serves."""  # type: ignore[no-untyped-def]
    primary, standby = nodes
    primary.start()
    with connect(primary) as c:
        assert c.info()["faktory"]["ha"]["role"] == "primary"
    ledger = Ledger()
    times = []
    for number in range(ROUNDS):
        times.append(takeover_round(primary, standby, number, ledger))
        primary, standby = standby, primary
    print(f"\ntakeover after kill -9 (lease TTL {LEASE_TTL} s), {ROUNDS} rounds: "
          + ", ".join(f"{t:.2f} s" for t in times))
    assert max(times) < LEASE_TTL + SLACK

    # everything pushed and not ended is there exactly once; nothing ACKed or reserved came back
    with connect(primary) as c:
        c.send(b"".join(f"FETCH {QUEUE}\r\n".encode() for _ in range(len(ledger.pending) + 1)))
        drained = [c.reply() for _ in range(len(ledger.pending) + 1)]
    assert drained[-1] is None
    jobs = [json.loads(raw)["jid"] for raw in drained[:-1]]
    assert sorted(jobs) == sorted(ledger.pending)
    assert not set(jobs) & (ledger.acked | ledger.reserved)
    assert "Traceback" not in primary.log_text() + standby.log_text()

    # SIGTERM stops a standby at once (it has nothing to drain); the primary is untouched
    standby.spawn()
    eventually(lambda: web_get(standby, "/health/primary"), 20, "the standby's web UI")
    assert standby.stop(timeout=5) == 0
    with connect(primary) as c:
        assert c.info()["faktory"]["ha"]["role"] == "primary"


def test_a_standby_forwards_clients_to_the_advertised_primary(nodes) -> None:  # type: ignore[no-untyped-def]
    """A client of the standby talks to the primary through it (HI, HELLO, PUSH, INFO are
    the primary's); when the primary dies the forwarded connection closes, and the client's
    next connection is served by the standby, now the primary."""
    primary, standby = nodes
    for node in nodes:
        advertise(node.conf_dir, node.port)
    primary.start()
    standby.spawn()
    eventually(lambda: web_get(standby, "/health/primary"), 20, "the standby's web UI")
    with connect(standby) as c:
        assert c.push(make_job("forwarded-00000001")) == b"OK"
        assert c.info()["faktory"]["ha"]["node_id"] == f"{socket.gethostname()}:{primary.port}"
        forwarded = connect(standby, wid="forwarded-worker")
    assert forwarded.fetch(QUEUE)["jid"] == "forwarded-00000001"  # type: ignore[index]
    primary.kill()
    assert forwarded.closed_by_peer(within=10)
    eventually(lambda: greets(standby.port) and stats(standby)["ha"]["role"] == "primary", LEASE_TTL + SLACK + 5,
               "the standby to serve")
    with connect(standby) as c:
        info = c.info()["faktory"]
        assert info["ha"]["node_id"] == f"{socket.gethostname()}:{standby.port}"
        assert info["sets"]["working"] == 1  # the forwarded worker's reservation, on the new primary
    primary.spawn()  # back as a standby: it forwards to the new primary
    eventually(lambda: web_get(primary, "/health/primary") == (503, b"standby"), 20, "the old primary standing by")
    with connect(primary) as c:
        assert c.info()["faktory"]["ha"]["node_id"] == f"{socket.gethostname()}:{standby.port}"


def refuse(ops: list[dict[str, Any]]) -> int:
    raise AssertionError("a standby committed")


def node_config(tmp_path: Path, url: str, node_id: str) -> Config:
    section = {"lease_ttl_ms": 2000, "renew_every_ms": 400, "node_id": node_id}
    return Config(binding="127.0.0.1:0", data_dir=tmp_path / node_id, conf_dir=tmp_path / "conf",
                  redis=parse_store(url, section))


async def test_a_clean_stop_hands_over_and_reservations_keep_their_deadlines(
        tmp_path, redis_store, caplog) -> None:  # type: ignore[no-untyped-def]
    """In one trio run: node b stands by while a serves; a stops cleanly (releasing the
    lease) and b serves at once, with a's reservation due at the same instant, and b's due
    timer expires it then (a job fetched 57 s "ago" with the minimum reserve_for of 60 s)."""
    caplog.set_level(logging.INFO, "faktory_py.redis")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a = await nursery.start(serve, node_config(tmp_path, redis_store, "a"))
            manager, clock = a.dispatcher.manager, a.dispatcher.clock
            manager.push(make_job("reserved-00000001") | {"reserve_for": 60}, clock.now())
            fetched, _ = manager.fetch([QUEUE], "w1", clock.now() - 57)
            assert fetched is not None
            deadline = manager.store.reservation(fetched["jid"]).expires_at  # type: ignore[union-attr]
            await a.durable.durable(a.durable.appended)

            started: list[Server] = []

            async def run_b() -> None:
                started.append(await nursery.start(serve, node_config(tmp_path, redis_store, "b")))

            nursery.start_soon(run_b)
            while "standby: the lease" not in caplog.text:  # b follows the log now
                await trio.sleep(0.01)
            stopped = trio.current_time()
            a.shutdown()
            while not started:
                await trio.sleep(0.01)
            assert trio.current_time() - stopped < 1.5
            b = started[0]
            store = b.dispatcher.manager.store
            assert store.reservation(fetched["jid"]).expires_at == deadline  # type: ignore[union-attr]
            assert b.dispatcher.info(clock.now())["faktory"]["ha"]["lease_holder"] == "b"
            while b.dispatcher.manager.reaped_reservations < 1:  # b's due timer, from the replayed state
                await trio.sleep(0.01)
            assert store.reservation(fetched["jid"]) is None
            assert clock.now() >= deadline
            b.shutdown()


async def test_a_standby_behind_the_trimmed_stream_resyncs_from_the_snapshot(
        tmp_path, redis_store, caplog) -> None:  # type: ignore[no-untyped-def]
    """Node b loaded the log early, then fell behind (as if stopped) while a wrote snapshots
    and trimmed the stream past b's position: b's next read finds a gap, so it wipes its
    store, loads the snapshot and the stream again, and takes over with a's exact state."""
    caplog.set_level(logging.INFO, "faktory_py.redis")
    config = node_config(tmp_path, redis_store, "a")
    config = Config(binding=config.binding, data_dir=config.data_dir, conf_dir=config.conf_dir,
                    redis=config.redis, compact_min_bytes=20_000)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            a = await nursery.start(serve, config)
            manager, clock, oplog = a.dispatcher.manager, a.dispatcher.clock, a.durable
            for i in range(20):
                manager.push(make_job(f"early-{i:08d}"), clock.now())
            await oplog.durable(oplog.appended)
            assert config.redis is not None
            async with open_redis_backend(config.redis, "b", config.compact_min_bytes) as b:
                store = MemoryStore(sink=refuse)
                configured_features(store, config)
                await b.load(store)
                behind = b.oplog.position.index
                i = 0
                while oplog.snapshots < 3:  # a snapshot and trim up to the previous one, and again
                    now = clock.now()
                    manager.push(make_job(f"later-{i:08d}"), now)
                    if i % 2:
                        fetched, _ = manager.fetch([QUEUE], "w", now)
                        manager.ack(fetched["jid"], now)  # type: ignore[index]
                    i += 1
                    if i % 20 == 0:
                        await oplog.durable(oplog.appended)
                await oplog.durable(oplog.appended)
                first = (await b.oplog.client.xrange(b.oplog.keys.log, count=1))[0].identifier
                assert int(first.split(b"-")[0]) > behind + 1  # b's next entry is gone
                expected = job_state(manager.store)
                a.shutdown()
                await b.take_over(store, lambda: store.wire(b.oplog.append, lambda queue: None, lambda at: None))
                assert "standby out of step" in caplog.text
                assert job_state(store) == expected
                assert b.info_fields()["ha"]["role"] == "primary"


async def test_a_standby_whose_position_does_not_match_the_head_resyncs(
        tmp_path, redis_store, caplog) -> None:  # type: ignore[no-untyped-def]
    """Node b is at the head's index, but with another frame CRC (its copy diverged): ACQUIRE
    refuses it, so it loads the log afresh, and then takes over with the primary's state."""
    caplog.set_level(logging.INFO, "faktory_py.redis")
    config = node_config(tmp_path, redis_store, "a")
    assert config.redis is not None
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a = await nursery.start(serve, config)
            manager, clock = a.dispatcher.manager, a.dispatcher.clock
            for i in range(10):
                manager.push(make_job(f"job-{i:08d}"), clock.now())
            await a.durable.durable(a.durable.appended)
            expected = job_state(manager.store)
            async with open_redis_backend(config.redis, "b", config.compact_min_bytes) as b:
                store = MemoryStore(sink=refuse)
                configured_features(store, config)
                await b.load(store)
                store.apply({"op": "flush"})  # b's copy lost its jobs, its position says otherwise
                b.oplog.position = replace(b.oplog.position, crc=b"\0\0\0\0")
                a.shutdown()
                await b.take_over(store, lambda: store.wire(b.oplog.append, lambda queue: None, lambda at: None))
                assert "standby out of step" in caplog.text
                assert job_state(store) == expected
