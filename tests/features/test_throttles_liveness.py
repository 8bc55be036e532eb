"""Liveness of throttled FETCH on an in-process server (protocol/spec.md §11.3), and its cost.

L1, no stuck job: random pushes (of two jobtypes and two tenants, through a partitioned
throttle and a per-jobtype limit too), FETCHes from several worker processes (each blocking
FETCH a waiter), ACKs, FAILs and clock jumps run against a real server on a MockClock that only moves
when told; whenever every task has settled, no waiting FETCH has, in one of its queues, a job
its `wid` may take (a free slot, and room in the rate window) — the Oban Pro 1.3.1 "stuck available" bug, checked after every step — and
S1 holds (never more slots than the limits).

Cost: FETCH from a full throttled queue of 100 000 jobs looks at none of them.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from helpers.async_client import AsyncClient
from helpers.scan_guard import private_queue
from faktory_py.config import Config, NamedLimit, Throttle, ThrottlesConfig, Timers
from faktory_py.core.lifecycle import Manager
from faktory_py.features.throttles.feature import Throttles
from faktory_py.server.app import Server, enterprise_features, serve
from faktory_py.server.reload import throttle_rules
from faktory_py.store.job_queue import JobQueue
from faktory_py.store.memory import MemoryStore

#: rate periods no sum of the clock's jumps reaches exactly (the due timer runs 1 ms after a
#: due time, so a jump landing on a window's opening would see it open before the timer ran)
THROTTLES = (Throttle("one", timeout=40, concurrency=1), Throttle("few", timeout=25, concurrency=3, worker=2),
             Throttle("per", timeout=30, worker=1), Throttle("rated", timeout=30, rate=(2, 7.3)),
             Throttle("burst", timeout=30, concurrency=2, rate=(3, 3.7)),
             Throttle("part", timeout=35, concurrency=1, partition=("custom.tenant",)))
#: a per-jobtype limit over every queue, per worker process too (every waiter of a queue is woken)
NAMED = (NamedLimit("pdf", jobtypes=("PDF",), concurrency=2, worker=1),)
RULES = throttle_rules(ThrottlesConfig(THROTTLES, limits=NAMED))
QUEUES = ("one", "few", "per", "rated", "burst", "part", "free")


class Fetcher:
    """One connection of a worker process, with at most one FETCH outstanding."""

    def __init__(self, client: AsyncClient, wid: str) -> None:
        self.client = client
        self.wid = wid
        self.queues: tuple[str, ...] | None = None  # the FETCH it waits on
        self.held: list[str] = []

    async def run_fetch(self, queues: tuple[str, ...]) -> None:
        self.queues = queues
        body = await self.client.command("FETCH " + " ".join(queues))
        self.queues = None
        if body is not None:
            self.held.append(json.loads(body)["jid"])


def stuck(server: Server, fetchers: list[Fetcher]) -> list[tuple[str, str]]:
    """(wid, queue) of every waiting FETCH with a job in one of its queues it may take."""
    manager = server.dispatcher.manager
    store = manager.store
    throttles = manager.features.find(Throttles)
    assert throttles is not None
    now = server.dispatcher.clock.now()
    return [(f.wid, q) for f in fetchers if f.queues is not None for q in f.queues
            if not store.is_paused(q)
            and (throttles.select(q, f.wid, now) is not None if throttles.selects(q) else store.queue_size(q))]


def over_limit(server: Server) -> list[Any]:
    """The (rule, partition) keys holding more slots than their limits allow."""
    store = server.dispatcher.manager.store
    now = server.dispatcher.clock.now()
    held: Counter[Any] = Counter()
    for res in store.reservations():
        for key in RULES.class_of(res.job):
            limit = RULES.by_name[key[0]].limit
            if limit.timeout is None or res.reserved_at + limit.timeout > now:
                held[key] += 1
                held[key, res.wid] += 1
    bad = []
    for key, n in held.items():
        name = key[0] if isinstance(key[0], str) else key[0][0]
        limit = RULES.by_name[name].limit
        bound = limit.concurrency if isinstance(key[0], str) else limit.worker
        if bound is not None and n > bound:
            bad.append(key)
    return bad


@pytest.mark.parametrize("seed", range(40))
async def test_no_waiting_fetch_while_a_job_is_eligible_for_it(
        tmp_path: Path, seed: int, mock_clock: trio.testing.MockClock) -> None:
    """`mock_clock` (pytest-trio's) moves only when the test jumps it."""
    rng = random.Random(seed)
    config = Config(binding="127.0.0.1:0", data_dir=tmp_path / "data", conf_dir=tmp_path / "conf",
                    fsync="no", throttles=ThrottlesConfig(THROTTLES, limits=NAMED),
                    timers=Timers(heartbeat_timeout=1e9))  # the workers never BEAT

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(serve, config)
            producer = await AsyncClient.connect(server.port)
            fetchers = [Fetcher(await AsyncClient.connect(server.port, wid=wid), wid)
                        for wid in ("A", "A", "B", "B", "C")]
            serial = 0
            for _step in range(80):
                action = rng.choice(["push", "push", "fetch", "fetch", "ack", "fail", "time"])
                idle = [f for f in fetchers if f.queues is None]
                busy = [f for f in idle if f.held]
                if action == "push":
                    serial += 1
                    job: dict[str, Any] = {"jid": f"jid-{serial:08d}", "jobtype": rng.choice(["T", "PDF"]),
                                           "args": [], "queue": rng.choice(QUEUES),
                                           "custom": {"tenant": rng.choice(["x", "y"])}}
                    assert await producer.push(job) == b"OK"
                elif action == "fetch" and idle:
                    fetcher = rng.choice(idle)
                    queues = tuple(rng.sample(QUEUES, rng.randint(1, 3)))
                    nursery.start_soon(fetcher.run_fetch, queues)
                elif action in ("ack", "fail") and busy:
                    fetcher = rng.choice(busy)
                    jid = fetcher.held.pop(rng.randrange(len(fetcher.held)))
                    if action == "ack":
                        reply = await fetcher.client.json_command("ACK", {"jid": jid})
                    else:
                        reply = await fetcher.client.json_command(
                            "FAIL", {"jid": jid, "errtype": "E", "message": "m", "backtrace": []})
                    assert reply == b"OK"
                elif action == "time":
                    mock_clock.jump(rng.choice([0.5, 1.0, 2.5, 10.0, 26.0]))
                await trio.testing.wait_all_tasks_blocked()
                assert stuck(server, fetchers) == []
                assert over_limit(server) == []
            server.shutdown()
            nursery.cancel_scope.cancel()

    await scenario()


def test_a_full_throttled_queue_is_not_scanned_by_fetch() -> None:
    """FETCH past a full throttle reads neither the queue's jobs nor the other slots."""

    class NoIteration(JobQueue):
        __slots__ = ()

        def __iter__(self) -> Any:
            raise AssertionError("FETCH iterated a queue")

        def page(self, start: int, count: int) -> Any:
            raise AssertionError("FETCH paged through a queue")

    store = MemoryStore()
    features = enterprise_features(store, throttles=ThrottlesConfig((Throttle("big", timeout=60, concurrency=2),)))
    manager = Manager(store, random.Random(0), features)
    for i in range(100_000):
        manager.push({"jid": f"jid-{i:08d}", "jobtype": "T", "args": [], "queue": "big"}, 1000.0)
    manager.push({"jid": "jid-other-1", "jobtype": "T", "args": [], "queue": "other"}, 1000.0)
    for _ in range(2):
        assert manager.fetch(["big"], "w", 1000.0)[0] is not None
    private_queue(store, "big").__class__ = NoIteration
    job, _ = manager.fetch(["big", "other"], "w", 1001.0)
    assert job is not None and job["jid"] == "jid-other-1"
    assert manager.fetch(["big"], "w", 1002.0)[0] is None


def test_waiters_are_woken_for_free_slots_not_for_every_queued_job() -> None:
    """`Manager.available` (how many waiters a queue's jobs wake) is capped by the free
    `concurrency` slots: a freed slot of a long throttled queue wakes one FETCH, not all."""
    store = MemoryStore()
    throttled = ThrottlesConfig((Throttle("q", timeout=60, concurrency=2), Throttle("w", timeout=60, worker=1)))
    manager = Manager(store, random.Random(0), enterprise_features(store, throttles=throttled))
    for i in range(10):
        for queue in ("q", "w", "free"):
            manager.push({"jid": f"jid-{queue}-{i:04d}", "jobtype": "T", "args": [], "queue": queue}, 1000.0)
    assert [manager.available(q, 1000.0) for q in ("q", "w", "free")] == [2, 10, 10]
    first, _ = manager.fetch(["q"], "A", 1000.0)
    manager.fetch(["q"], "B", 1000.0)
    assert manager.available("q", 1000.0) == 0
    assert first is not None
    manager.ack(first["jid"], 1001.0)
    assert manager.available("q", 1001.0) == 1
    assert manager.available("q", 1060.0) == 2  # the other slot timed out
    manager.pause(["free"])
    assert manager.available("free", 1060.0) == 0
