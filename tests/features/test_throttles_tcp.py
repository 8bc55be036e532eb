"""Throttles over TCP on an in-process server driven by trio's MockClock (protocol/spec.md §11):
the acceptance cases A-T2 (a full throttle acts as if empty, a freed slot wakes a waiting FETCH
at once), A-T3 (per worker process), A-T4 (a slot ends at its timeout, the late ACK frees
nothing twice), A-T6 (an expired head takes no slot), A-T10 (a restart keeps occupancy), and
INFO / THROTTLE STATUS. See test_timers.py for how MockClock drives the server (fsync "no")."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from helpers import jobs
from helpers.async_client import AsyncClient
from faktory_py.config import Throttle, ThrottlesConfig
from faktory_py.server.app import Server
from helpers.inprocess import inprocess_config, running_server
from helpers.rawclient import ReplyError

SLACK = 0.01


def throttled_server(tmp_path: Path, *throttles: Throttle) -> AbstractAsyncContextManager[Server]:
    return running_server(inprocess_config(tmp_path, throttles=ThrottlesConfig(throttles)))


def job(name: str, queue: str, **fields: Any) -> dict[str, Any]:
    return jobs.job(jid(name), jobtype="ThrottleTest", queue=queue, **fields)


def jid(name: str) -> str:
    """Job names in these tests are short; Faktory wants jids of 8 characters or more."""
    return f"jid-{name:0>6}"


def named(got: dict[str, Any]) -> str:
    return got["jid"].removeprefix("jid-").lstrip("0")


async def ack(client: AsyncClient, name: str) -> Any:
    return await client.json_command("ACK", {"jid": jid(name)})


async def status(client: AsyncClient, *queues: str) -> dict[str, Any]:
    return json.loads(await client.command(" ".join(("THROTTLE", "STATUS", *queues))))


async def workers(server: Server, n: int, prefix: str = "w") -> list[AsyncClient]:
    return [await AsyncClient.connect(server.port, wid=f"{prefix}{i}") for i in range(n)]


async def test_a_full_throttle_acts_as_if_empty_and_a_freed_slot_wakes_a_fetch(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T2: concurrency 4; of 6 FETCH instagram default, 4 get instagram jobs and 2 the
    default jobs at once; after one ACK a waiting FETCH instagram gets the 5th job at once."""
    async with throttled_server(tmp_path, Throttle("instagram", timeout=60, concurrency=4)) as server:
        producer = await AsyncClient.connect(server.port)
        for i in range(6):
            assert await producer.push(job(f"ig-{i}", "instagram")) == b"OK"
        for i in range(2):
            assert await producer.push(job(f"df-{i}", "default")) == b"OK"
        fetchers = await workers(server, 7)
        start = trio.current_time()
        got = [named(await w.fetch("instagram", "default")) for w in fetchers[:6]]
        assert trio.current_time() - start < SLACK
        assert got == [f"ig-{i}" for i in range(4)] + ["df-0", "df-1"]
        assert (await status(producer, "instagram"))["instagram"]["in_use"] == 4
        waiting = fetchers[6]
        await waiting.send("FETCH instagram")
        await producer.wait_fetches_waiting(1)  # it is blocked: the throttle is full
        acked_at = trio.current_time()
        assert await ack(fetchers[0], "ig-0") == b"OK"
        assert named(json.loads(await waiting.reply())) == "ig-4"
        assert trio.current_time() - acked_at < SLACK
        assert (await status(producer))["instagram"]["in_use"] == 4
        for client in [producer, *fetchers]:
            await client.aclose()


async def test_a_worker_limit_counts_per_worker_process(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T3: worker = 2; two wids with three connections each: each holds at most 2 bulk
    jobs, its third FETCH skips bulk for the next queue."""
    async with throttled_server(tmp_path, Throttle("bulk", timeout=60, worker=2)) as server:
        producer = await AsyncClient.connect(server.port)
        for i in range(10):
            assert await producer.push(job(f"bulk-{i}", "bulk")) == b"OK"
        for i in range(4):
            assert await producer.push(job(f"df-{i}", "default")) == b"OK"
        conns = {wid: [await AsyncClient.connect(server.port, wid=wid) for _ in range(3)] for wid in ("A", "B")}
        queues = {wid: [(await c.fetch("bulk", "default"))["queue"] for c in cs] for wid, cs in conns.items()}
        assert queues == {"A": ["bulk", "bulk", "default"], "B": ["bulk", "bulk", "default"]}
        state = (await status(producer, "bulk"))["bulk"]
        assert (state["in_use"], state["by_worker"]) == (4, {"A": 2, "B": 2})
        # a FETCH of wid A waits while B's freed slot cannot serve it, and A's own wakes it
        await conns["A"][2].send("FETCH bulk")
        await producer.wait_fetches_waiting(1)
        b_job = (await status(producer))["bulk"]["by_worker"]
        assert b_job == {"A": 2, "B": 2}
        # B acks one of its jobs: B gains a slot, A does not; A's FETCH keeps waiting
        reserved = {res.job["jid"]: res.wid for res in server.dispatcher.manager.store.reservations()}
        b_jid = next(jid for jid, wid in reserved.items() if wid == "B" and "bulk" in jid)
        a_jid = next(jid for jid, wid in reserved.items() if wid == "A" and "bulk" in jid)
        assert await conns["B"][0].json_command("ACK", {"jid": b_jid}) == b"OK"
        await trio.sleep(0.5)  # mock time: B's freed slot must not end A's wait meanwhile
        assert (await status(producer))["bulk"]["by_worker"] == {"A": 2, "B": 1}
        assert (await producer.info())["server"]["fetches_waiting"] == 1
        acked_at = trio.current_time()
        assert await conns["A"][0].json_command("ACK", {"jid": a_jid}) == b"OK"
        assert json.loads(await conns["A"][2].reply())["queue"] == "bulk"
        assert trio.current_time() - acked_at < SLACK
        for client in [producer, *conns["A"], *conns["B"]]:
            await client.aclose()


async def test_a_slot_ends_at_its_timeout_and_the_late_ack_frees_nothing_more(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T4, timeout mode: the slot of an unacknowledged job ends exactly `timeout` after its
    FETCH, waking a waiting FETCH by the due timer (no poll); the first job's later ACK is +OK
    and leaves in_use right."""
    async with throttled_server(tmp_path, Throttle("slow", timeout=60, concurrency=1)) as server:
        producer, first, second = await workers(server, 3)
        for i in range(3):
            assert await producer.push(job(f"slow-{i}", "slow")) == b"OK"
        fetched_at = trio.current_time()
        assert named(await first.fetch("slow")) == "slow-0"
        while (got := await second.fetch("slow")) is None:  # each empty FETCH waits 2 s
            pass
        assert named(got) == "slow-1"
        assert abs(trio.current_time() - fetched_at - 60) < SLACK
        state = (await status(producer, "slow"))["slow"]
        assert (state["in_use"], state["overdue"]) == (1, 1)
        assert await ack(first, "slow-0") == b"OK"
        state = (await status(producer, "slow"))["slow"]
        assert (state["in_use"], state["overdue"]) == (1, 0)
        assert await second.fetch("slow") is None  # slow-1 still holds the only slot
        for client in (producer, first, second):
            await client.aclose()


async def test_an_expired_job_at_the_head_takes_no_slot(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T6: concurrency 1, an expired job at the head: it is dropped, the next is handed out,
    in_use is 1 (Faktory Enterprise leaks the lock of a job it discards at FETCH)."""
    async with throttled_server(tmp_path, Throttle("q", timeout=60, concurrency=1)) as server:
        client = await AsyncClient.connect(server.port, wid="w")
        assert await client.push(job("gone", "q", custom={"expires_at": "2001-01-01T00:00:00Z"})) == b"OK"
        assert await client.push(job("next", "q")) == b"OK"
        assert named(await client.fetch("q")) == "next"
        info = await client.info()
        assert info["faktory"]["total_expired"] == 1
        assert info["faktory"]["throttles"]["q"]["in_use"] == 1
        assert await ack(client, "next") == b"OK"
        assert (await status(client, "q"))["q"]["in_use"] == 0
        await client.aclose()


async def test_a_restart_keeps_occupancy_and_an_ack_frees_a_slot_taken_before(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T10 in process: 3 of 4 slots in use, the server stops and starts on its journal:
    THROTTLE STATUS shows the same, and ACK of a reservation made before frees its slot."""
    throttle = Throttle("q", timeout=600, concurrency=4)
    async with throttled_server(tmp_path, throttle) as server:
        client = await AsyncClient.connect(server.port, wid="w")
        for i in range(5):
            assert await client.push(job(f"j{i}", "q")) == b"OK"
        for i in range(3):
            assert named(await client.fetch("q")) == f"j{i}"
        before = await status(client)
        await client.aclose()
    async with throttled_server(tmp_path, throttle) as server:
        client = await AsyncClient.connect(server.port, wid="w")
        assert await status(client) == before
        assert before["q"]["in_use"] == 3
        assert await ack(client, "j0") == b"OK"
        assert (await status(client, "q"))["q"]["in_use"] == 2
        await client.aclose()


async def test_info_shows_throttles_only_when_configured(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with throttled_server(tmp_path / "a") as server:
        client = await AsyncClient.connect(server.port)
        info = await client.info()
        assert "throttles" not in info["faktory"]
        assert await status(client) == {}
        await client.aclose()
    async with throttled_server(tmp_path / "b", Throttle("q", timeout=30, concurrency=2, worker=1)) as server:
        client = await AsyncClient.connect(server.port)
        info = await client.info()
        assert sorted(info) == ["faktory", "now", "server", "server_utc_time"]
        assert info["faktory"]["throttles"] == {"q": {
            "concurrency": 2, "worker": 1, "timeout": 30, "in_use": 0, "waiting": 0, "rate": None,
            "partitions": 1, "slot_release": "timeout", "overdue": 0}}
        await client.aclose()


@pytest.mark.parametrize(("line", "error"), [
    ("THROTTLE STATUS nope", "ERR no such throttle nope"),
    ("THROTTLE", "ERR THROTTLE needs STATUS [<queue> …]"),
    ("THROTTLE RESET q", "ERR THROTTLE needs STATUS [<queue> …]"),
])
async def test_throttle_status_errors(tmp_path: Path, autojump_clock: trio.testing.MockClock,
                                      line: str, error: str) -> None:
    async with throttled_server(tmp_path, Throttle("q", timeout=30, concurrency=2)) as server:
        client = await AsyncClient.connect(server.port)
        with pytest.raises(ReplyError) as caught:
            await client.command(line)
        assert str(caught.value) == error
        await client.aclose()


async def test_a_job_for_a_per_worker_queue_reaches_the_waiter_whose_worker_may_take_it(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """worker = 1: wid A (holding its slot) has waited longest, wid B waits too; a job pushed
    goes to B at once, though A was first in line (A cannot take it)."""
    async with throttled_server(tmp_path, Throttle("per", timeout=60, worker=1)) as server:
        producer = await AsyncClient.connect(server.port)
        a_holding, a_waiting, b_waiting = [await AsyncClient.connect(server.port, wid=w) for w in "AAB"]
        assert await producer.push(job("first", "per")) == b"OK"
        assert named(await a_holding.fetch("per")) == "first"
        await a_waiting.send("FETCH per")
        await trio.sleep(0.1)
        await b_waiting.send("FETCH per")
        await trio.sleep(0.1)
        pushed_at = trio.current_time()
        assert await producer.push(job("second", "per")) == b"OK"
        assert named(json.loads(await b_waiting.reply())) == "second"
        assert trio.current_time() - pushed_at < SLACK
        assert await a_waiting.reply() is None  # its 2 s ran out: nothing it may take
        for client in (producer, a_holding, a_waiting, b_waiting):
            await client.aclose()
