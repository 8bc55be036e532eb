"""Rate limits of throttles (protocol/spec.md §11.5), over TCP on an in-process server driven
by trio's MockClock: A-T9 (a full window acts as if empty, the next opening is a timer that
hands the job out exactly then, a FAIL refunds nothing), a restart keeps the window (grants
of jobs ACKed before it too, from the journal and from a snapshot), THROTTLE STATUS / INFO,
and how many waiting FETCHes a window wakes. S2 is checked by test_throttles_model.py."""

from __future__ import annotations

import random
from pathlib import Path

import trio
import trio.testing

from helpers.async_client import AsyncClient
from faktory_py.config import Config, Throttle, ThrottlesConfig
from faktory_py.core.lifecycle import Manager
from faktory_py.features.throttles.feature import Throttles
from faktory_py.server.app import enterprise_features, serve
from faktory_py.server.reload import throttle_rules
from faktory_py.store.memory import MemoryStore
from helpers.model_replay import enterprise_manager, replay, snapshot_records
from faktory_py.util.timefmt import format_time
from test_throttles_tcp import SLACK, ack, job, jid, named, throttled_server, status, workers

RATED = Throttle("api", timeout=60, rate=(3, 10.0))


async def test_a_full_window_opens_exactly_a_period_after_its_oldest_grant(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T9: limit 3 per 10 s, 10 jobs: 3 FETCHes at t=0 get jobs, the 4th waits and gets one
    at t=10 s exactly (woken by the window's opening, not by its own 2 s polls), though a
    job FAILed at t=1; at t=10 the whole window is open again (3 more), then the 7th waits
    until t=20."""
    async with throttled_server(tmp_path, RATED) as server:
        producer, *fetchers = await workers(server, 5)
        for i in range(10):
            assert await producer.push(job(f"api-{i}", "api")) == b"OK"
        assert await producer.push(job("other", "default")) == b"OK"
        start = trio.current_time()
        assert [named(await w.fetch("api")) for w in fetchers[:3]] == ["api-0", "api-1", "api-2"]
        # a full window acts as if empty: FETCH goes on to the next queue at once
        assert named(await fetchers[3].fetch("api", "default")) == "other"
        assert trio.current_time() - start < SLACK
        state = await status(producer, "api")
        assert state["api"]["waiting"] == (await producer.info())["faktory"]["throttles"]["api"]["waiting"] == 7
        partition = state["api"]["by_partition"][0]
        assert partition["grants_in_window"] == 3
        assert partition["next_grant_at"] == format_time(server.dispatcher.clock.now() + 10)
        await trio.sleep(1)
        assert await fetchers[0].json_command(
            "FAIL", {"jid": jid("api-0"), "errtype": "E", "message": "boom"}) == b"OK"
        while (got := await fetchers[3].fetch("api")) is None:  # FETCHes at 1, 3, 5, 7, 9
            pass
        assert named(got) == "api-3"
        assert abs(trio.current_time() - start - 10) < SLACK
        assert (await status(producer, "api"))["api"]["waiting"] == 0  # 2 grants left in the window
        assert [named(await w.fetch("api")) for w in fetchers[1:3]] == ["api-4", "api-5"]
        assert trio.current_time() - start - 10 < SLACK
        while (got := await fetchers[0].fetch("api")) is None:  # FETCHes at 10, 12, … 18
            pass
        assert named(got) == "api-6"
        assert abs(trio.current_time() - start - 20) < SLACK
        for client in (producer, *fetchers):
            await client.aclose()


async def test_a_restart_keeps_the_window_with_the_grants_of_acked_jobs(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T10 for rates: 2 grants in window (one job ACKed, one still reserved), the server
    stops and starts on its journal: both still count, one more FETCH gets a job and the
    next waits for the window to open."""
    async with throttled_server(tmp_path, RATED) as server:
        client = await AsyncClient.connect(server.port, wid="w")
        for i in range(5):
            assert await client.push(job(f"j{i}", "api")) == b"OK"
        first_grant = server.dispatcher.clock.now()  # unix time: the next server's trio clock differs
        assert named(await client.fetch("api")) == "j0"
        assert named(await client.fetch("api")) == "j1"
        assert await ack(client, "j0") == b"OK"
        before = await status(client)
        await client.aclose()
    await trio.sleep(1)
    async with throttled_server(tmp_path, RATED) as server:
        client = await AsyncClient.connect(server.port, wid="w")
        after = await status(client)
        assert after == before
        assert after["api"]["by_partition"][0]["grants_in_window"] == 2
        assert after["api"]["in_use"] == 1
        assert named(await client.fetch("api")) == "j2"
        while (got := await client.fetch("api")) is None:
            pass
        assert named(got) == "j3"
        assert abs(trio.current_time() - server.dispatcher.clock.trio_time(first_grant + 10)) < SLACK
        await client.aclose()


async def test_info_shows_the_rate_limit(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with throttled_server(tmp_path, RATED) as server:
        client = await AsyncClient.connect(server.port)
        info = await client.info()
        assert info["faktory"]["throttles"] == {"api": {
            "concurrency": None, "worker": None, "timeout": 60, "in_use": 0, "waiting": 0,
            "rate": {"limit": 3, "period": 10.0}, "partitions": 1, "slot_release": "timeout", "overdue": 0}}
        await client.aclose()


def test_a_snapshot_keeps_the_grants_of_ended_reservations() -> None:
    """Compaction keeps only live reservations, so the snapshot carries each window: after a
    restart from it, the grants of jobs ACKed and FAILed before it count, the live one's
    once (it is in the window and restored as a reservation), and the window opens on time."""
    now = 1_700_000_000.0
    store, manager, throttles = build()
    for i in range(4):
        manager.push({"jid": jid(f"s{i}"), "jobtype": "T", "args": [], "queue": "api"}, now)
    for i in range(3):
        assert named(manager.fetch(["api"], "w", now + i)[0]) == f"s{i}"
    manager.ack(jid("s0"), now + 3)
    manager.fail(jid("s1"), "E", "boom", [], now + 3)
    assert manager.fetch(["api"], "w", now + 9.5)[0] is None
    restored, manager, throttles = build()
    replay(restored, snapshot_records(store))
    assert [op["op"] for record in snapshot_records(store) for op in record].count("throttle_grants") == 1
    assert throttles.rate.in_window(("api", ()), now + 9.5) == 3
    assert manager.next_due() == now + 10
    assert manager.fetch(["api"], "w", now + 9.999)[0] is None
    assert named(manager.fetch(["api"], "w", now + 10)[0]) == "s3"


def test_a_job_fetched_twice_at_one_instant_is_two_grants() -> None:
    """A job requeued by MUTATE on `working` and fetched again at the same instant was granted
    twice: both count, live and after a restart from a snapshot in which one of them is a live
    reservation's (hypothesis found the two once merged into one, as a duplicate)."""
    now = 1_700_000_000.0
    store, manager, throttles = build()
    manager.push({"jid": jid("twice"), "jobtype": "T", "args": [], "queue": "api"}, now)
    assert named(manager.fetch(["api"], "w", now)[0]) == "twice"
    manager.mutate({"cmd": "requeue", "target": "working", "filter": {"jids": [jid("twice")]}}, now)
    assert named(manager.fetch(["api"], "w", now)[0]) == "twice"
    assert throttles.rate.in_window(("api", ()), now) == 2
    restored, _manager, throttles = build()
    replay(restored, snapshot_records(store))
    assert throttles.rate.in_window(("api", ()), now) == 2


async def test_grants_of_acked_jobs_outlive_a_real_compaction(tmp_path: Path) -> None:
    """Through the server's own journal compaction (real time, an hour-long window): 3 jobs
    fetched and ACKed, then enough other work for two compactions, so their reservations are
    only in segments the snapshot replaced; after a restart the window is still full."""
    config = Config(binding="127.0.0.1:0", data_dir=tmp_path / "data", conf_dir=tmp_path / "conf",
                    compact_min_bytes=50_000, throttles=ThrottlesConfig((Throttle("api", timeout=60, rate=(3, 3600.0)),)))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, config)
            manager, clock = server.dispatcher.manager, server.dispatcher.clock
            for i in range(4):
                manager.push({"jid": jid(f"c{i}"), "jobtype": "T", "args": [], "queue": "api"}, clock.now())
            for _ in range(3):
                job, _ = manager.fetch(["api"], "", clock.now())
                manager.ack(job["jid"], clock.now())
            later = server.durable.compactions + 2
            i = 0
            while server.durable.compactions < later:
                manager.push({"jid": f"filler-{i:08d}", "jobtype": "T", "args": ["x" * 200], "queue": "filler"},
                             clock.now())
                job, _ = manager.fetch(["filler"], "", clock.now())
                manager.ack(job["jid"], clock.now())
                i += 1
                if i % 50 == 0:
                    server.durable.write()
                    await trio.sleep(0.001)
            server.shutdown()
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, config)
            throttles = server.dispatcher.manager.features.find(Throttles)
            assert throttles is not None
            assert throttles.rate.in_window(("api", ()), server.dispatcher.clock.now()) == 3
            assert server.dispatcher.manager.fetch(["api"], "", server.dispatcher.clock.now())[0] is None
            server.shutdown()


def test_waiters_are_woken_for_the_grants_left_in_the_window() -> None:
    """`Manager.available` (how many waiting FETCHes a queue's jobs wake) is capped by the
    grants the window has left; a FETCH refused by the window changes nothing."""
    now = 1_700_000_000.0
    _store, manager, _throttles = build()
    for i in range(5):
        manager.push({"jid": jid(f"a{i}"), "jobtype": "T", "args": [], "queue": "api"}, now)
    assert manager.available("api", now) == 3
    manager.fetch(["api"], "w", now)
    manager.fetch(["api"], "w", now + 4)
    assert manager.available("api", now + 4) == 1
    manager.fetch(["api"], "w", now + 5)
    assert manager.fetch(["api"], "w", now + 6)[0] is None
    assert manager.available("api", now + 9.99) == 0
    assert manager.available("api", now + 10) == 1
    assert manager.available("api", now + 15) == 2  # min(queue size, room)


def build() -> tuple[MemoryStore, Manager, Throttles]:
    return enterprise_manager(Throttles, throttles=ThrottlesConfig((RATED,)))


def test_a_reload_keeps_the_grants_that_happened() -> None:
    """A reload (§11.6) changing rates: a queue that keeps a rate keeps its grants, down to a
    lowered limit; a queue that gains one counts its reservations still live; one that loses
    its rate forgets its window."""
    now = 1_700_000_000.0
    store = MemoryStore()
    config = ThrottlesConfig((Throttle("api", timeout=60, rate=(3, 10.0)),))
    features = enterprise_features(store, throttles=config)
    manager = Manager(store, random.Random(0), features)
    throttles = features.find(Throttles)
    assert throttles is not None
    for i in range(3):
        manager.push(job(f"api-{i}", "api"), now)
        manager.push(job(f"new-{i}", "new"), now)
        assert manager.fetch(["api"], "w", now + i)[0] is not None
    assert manager.fetch(["new"], "w", now)[0] is not None
    assert throttles.rate.in_window(("api", ()), now + 2) == 3

    lowered = ThrottlesConfig((Throttle("api", timeout=60, rate=(2, 10.0)), Throttle("new", timeout=60, rate=(1, 10.0))))
    manager.features.replace(throttles.reconfigure(throttle_rules(lowered), (), now + 2))
    assert throttles.rate.in_window(("api", ()), now + 2) == 2  # the latest two grants
    assert throttles.rate.full(("api", ())) and throttles.rate.full(("new", ()))  # new: its live reservation
    manager.push(job("api-3", "api"), now + 2)
    assert manager.fetch(["api", "new"], "w", now + 2)[0] is None
    assert throttles.rate.next_grant_at(("api", ()), now + 2) == now + 1 + 10.0  # its oldest kept grant's
    assert throttles.next_due() == now + 10.0  # new's one grant leaves its window first

    manager.features.replace(throttles.reconfigure(throttle_rules(ThrottlesConfig()), (), now + 2))
    assert manager.fetch(["api"], "w", now + 2)[0] is not None  # no rate: nothing to wait for
