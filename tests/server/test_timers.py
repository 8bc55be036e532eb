"""Timers and blocking behaviour of an in-process server, driven by trio's MockClock.

Each test takes pytest-trio's built-in `autojump_clock` fixture (a
`MockClock(autojump_threshold=0)`), which pytest-trio uses as the run's clock: whenever
every task is blocked, mock time jumps straight to the next deadline. The server reads
unix time through `faktory_py.server.clock.Clock` (wall clock at start + trio time elapsed), so
one jump moves scheduled jobs, retries, reservations, dead-set expiry and heartbeats.

Clients talk to the server over real loopback TCP. That works with a threshold of 0
because trio polls for ready I/O before it declares the run idle, and loopback writes
are readable on the peer as soon as `send` returns. What would NOT be safe is a worker
thread: while one runs every task looks blocked and the clock would jump. So the server
runs with `fsync="no"` (the journal's fsync/compaction threads never start; with
`everysec` its 1 s sleeps would also be extra deadlines). Nothing else uses threads.

Timings asserted are the server's: FETCH's 2 s wait, the due timer firing when an entry
is due (+1 ms), Faktory's backoff (15–44 s for the first retry), the 60 s heartbeat
timeout with the 15 s reaper period, the 180-day dead TTL, and the Enterprise TTLs on both
sides of their boundary (a unique lock's `unique_for`, counted from `at` for a scheduled
job; `expires_in`; a batch's `uncommitted_ttl`), which over real time would race.

The connection's own deadlines (HELLO, FETCH's wait and its wake-up by a PUSH, the send
watchdog) are asserted over in-memory streams in test_tcp_inprocess.py.
"""

from __future__ import annotations

import json
import math
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from helpers import jobs
from helpers.async_client import AsyncClient, PeerClosed
from faktory_py.config import BatchesConfig, Config, Timers
from faktory_py.features.batches.feature import Batches
from faktory_py.server.app import Server, serve
from helpers.inprocess import inprocess_config, running_server
from helpers.rawclient import ReplyError

#: How late a timer-driven event may be seen (DueTimer fires 1 ms after the due time).
SLACK = 0.01
DAY = 86400.0


def make_config(tmp_path: Path, timers: Timers | None = None, batches: BatchesConfig | None = None) -> Config:
    return inprocess_config(tmp_path, timers, batches=batches or BatchesConfig())


def timed_server(tmp_path: Path, timers: Timers | None = None,
                 batches: BatchesConfig | None = None) -> AbstractAsyncContextManager[Server]:
    return running_server(make_config(tmp_path, timers, batches))


def unix_now(server: Server) -> float:
    return server.dispatcher.clock.now()


def trio_time_of(server: Server, unix: float) -> float:
    return server.dispatcher.clock.trio_time(unix)


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def job(jid: str, **fields: Any) -> dict[str, Any]:
    return jobs.job(jid, jobtype="TimerTest", args=[1], **fields)


async def assert_timer_emptied(client: AsyncClient, set_name: str, task: str) -> None:
    """The `set_name` set is empty again, and its timer task `task` counted one job as enqueued."""
    info = await client.info()
    assert info["faktory"]["sets"][set_name] == 0
    assert info["faktory"]["tasks"][task]["enqueued"] == 1


async def fetch_until_job(client: AsyncClient, *queues: str, limit: float) -> tuple[dict[str, Any], float]:
    """FETCH repeatedly (each empty FETCH blocks 2 s) until a job arrives; (job, trio time)."""
    deadline = trio.current_time() + limit
    while trio.current_time() < deadline:
        got = await client.fetch(*queues)
        if got is not None:
            return got, trio.current_time()
    raise AssertionError(f"no job within {limit} s")


async def test_scheduled_job_becomes_fetchable_at_its_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with timed_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        at_unix = math.floor(unix_now(server)) + 3600
        due = trio_time_of(server, at_unix)
        assert await client.push(job("sched-00001", at=rfc3339(at_unix))) == b"OK"
        info = await client.info()
        assert info["faktory"]["sets"]["scheduled"] == 1
        assert await client.fetch("default") is None

        await trio.sleep_until(due - 3)
        assert await client.fetch("default") is None  # returns at due - 1: still not due
        assert trio.current_time() < due

        got = await client.fetch("default")  # blocks from due - 1; the due timer wakes it
        assert got is not None and got["jid"] == "sched-00001"
        assert due - 1e-6 <= trio.current_time() <= due + SLACK
        assert got["at"] == rfc3339(at_unix)
        assert parse_rfc3339(got["enqueued_at"]) >= at_unix
        await assert_timer_emptied(client, "scheduled", "Scheduled")
        await client.aclose()


async def test_retry_after_fail_waits_for_backoff(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with timed_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        assert await client.push(job("retry-00001")) == b"OK"
        fetched = await client.fetch("default")
        assert fetched is not None
        failed_at = trio.current_time()
        failure = {"jid": "retry-00001", "errtype": "RuntimeError", "message": "boom",
                   "backtrace": ["app.rb:1", "app.rb:2"]}
        assert await client.json_command("FAIL", failure) == b"OK"
        info = await client.info()
        assert info["faktory"]["sets"]["retries"] == 1
        assert info["faktory"]["total_failures"] == 1

        got, got_at = await fetch_until_job(client, "default", limit=60)
        delay = got_at - failed_at
        assert 15 <= delay <= 44 + SLACK, delay
        assert got["jid"] == "retry-00001"
        block = got["failure"]
        assert block["retry_count"] == 0 and block["remaining"] == 25
        assert block["errtype"] == "RuntimeError" and block["message"] == "boom"
        assert block["backtrace"] == ["app.rb:1", "app.rb:2"]
        # next_at is when it became due; it was fetchable then and not before
        next_at = trio_time_of(server, parse_rfc3339(block["next_at"]))
        assert next_at - 1e-3 <= got_at <= next_at + SLACK
        assert round(next_at - failed_at, 2) == int(round(next_at - failed_at))  # whole seconds of backoff
        await assert_timer_emptied(client, "retries", "Retries")
        await client.aclose()


async def test_reservation_expires_into_retries(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with timed_server(tmp_path) as server:
        # a producer connection fetches: a worker that never BEATs would be reaped at ~75 s
        client = await AsyncClient.connect(server.port)
        assert await client.push(job("reserve-001", reserve_for=60)) == b"OK"
        assert (await client.fetch("default"))["jid"] == "reserve-001"
        fetched_at = trio.current_time()
        info = await client.info()
        assert info["faktory"]["sets"]["working"] == 1
        assert info["faktory"]["tasks"]["Busy"] == {"reaped": 0, "size": 1}

        await trio.sleep_until(fetched_at + 59.9)
        info = await client.info()
        assert info["faktory"]["sets"]["working"] == 1
        assert info["faktory"]["tasks"]["Busy"]["reaped"] == 0

        await trio.sleep_until(fetched_at + 60 + SLACK)
        info = await client.info()
        faktory = info["faktory"]
        assert faktory["sets"]["working"] == 0
        assert faktory["sets"]["retries"] == 1
        assert faktory["tasks"]["Busy"] == {"reaped": 1, "size": 0}
        assert faktory["total_failures"] == 1 and faktory["total_processed"] == 1
        # the late ACK of an expired reservation is still OK, and changes nothing
        assert await client.json_command("ACK", {"jid": "reserve-001"}) == b"OK"
        assert (await client.info())["faktory"]["total_processed"] == 1

        got, got_at = await fetch_until_job(client, "default", limit=60)
        assert 15 <= got_at - (fetched_at + 60) <= 44 + SLACK
        assert got["failure"]["errtype"] == "ReservationExpired"
        assert got["failure"]["message"] == "Faktory job reservation expired"
        assert got["failure"]["retry_count"] == 0
        assert "backtrace" not in got["failure"]
        await client.aclose()


async def test_silent_worker_is_reaped(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with timed_server(tmp_path) as server:
        started = trio.current_time()
        silent = await AsyncClient.connect(server.port, wid="silent-worker")
        beating = await AsyncClient.connect(server.port, wid="beating-worker")
        producer = await AsyncClient.connect(server.port)
        hello_at = trio.current_time()
        closed_at: list[float] = []

        async def watch_silent() -> None:
            await silent.wait_closed()
            closed_at.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_silent)
            for _ in range(8):  # beat every 15 s for 120 s
                await trio.sleep(15)
                assert await beating.json_command("BEAT", {"wid": "beating-worker"}) == b"OK"
            nursery.cancel_scope.cancel()  # stop watching (fail below rather than hang)

        assert closed_at, "the silent worker was never disconnected"
        silent_for = closed_at[0] - hello_at
        assert 60 < silent_for <= 75 + SLACK, silent_for
        assert (closed_at[0] - started) % 15 < SLACK  # on a reaper tick

        with pytest.raises(ReplyError, match="^ERR unknown worker silent-worker$"):
            await producer.json_command("BEAT", {"wid": "silent-worker"})
        info = await producer.info()
        assert info["faktory"]["tasks"]["Workers"] == {"reaped": 1, "size": 1}
        assert await beating.json_command("BEAT", {"wid": "beating-worker"}) == b"OK"
        for client in (silent, beating, producer):
            await client.aclose()


async def test_dead_jobs_are_purged_after_180_days(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    # The worker reaper would wake a million times in 180 mock days at its 15 s period;
    # it has nothing to do here, so it ticks hourly to keep the test fast.
    async with timed_server(tmp_path, Timers(worker_reap_every=3600)) as server:
        client = await AsyncClient.connect(server.port)
        assert await client.push(job("dead-000001", retry=-1)) == b"OK"
        assert await client.fetch("default") is not None
        assert await client.json_command("FAIL", {"jid": "dead-000001", "errtype": "E"}) == b"OK"
        died_at = trio.current_time()
        info = await client.info()
        assert info["faktory"]["sets"]["dead"] == 1
        assert info["faktory"]["sets"]["retries"] == 0

        await trio.sleep_until(died_at + 180 * DAY - 1)
        assert (await client.info())["faktory"]["sets"]["dead"] == 1
        await trio.sleep_until(died_at + 180 * DAY + SLACK)
        await assert_timer_emptied(client, "dead", "Dead")  # Faktory counts purges as "enqueued"
        await client.aclose()


async def test_shutdown_returns_and_refuses_commands(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    grace = Timers().shutdown_grace
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(serve, make_config(tmp_path))
        active = await AsyncClient.connect(server.port)
        idle = await AsyncClient.connect(server.port)
        assert await active.push(job("shutdown-01")) == b"OK"
        stopped_at = trio.current_time()
        server.shutdown()
        await trio.sleep(0)  # let serve notice
        try:
            reply: Any = await active.command("INFO")
        except ReplyError as exc:
            reply = str(exc)
        except (PeerClosed, trio.BrokenResourceError):
            reply = "EOF"
        assert reply in ("ERR shutdown in progress", "EOF"), reply
    # the nursery exited: serve returned, within the grace period for idle connections
    assert trio.current_time() - stopped_at <= grace + 0.1
    with pytest.raises((PeerClosed, trio.BrokenResourceError)):
        await idle.command("INFO")
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", server.port)
    await active.aclose()
    await idle.aclose()


# --- Enterprise TTLs: just before and just after the boundary ------------------------------

async def push_reply(client: AsyncClient, payload: dict[str, Any]) -> str:
    """`OK`, or the error a refused PUSH gets."""
    try:
        return (await client.push(payload)).decode()
    except ReplyError as exc:
        return str(exc)


async def test_unique_lock_lasts_exactly_unique_for(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with timed_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        pushed_at = trio.current_time()
        assert await push_reply(client, job("uniq-000001", custom={"unique_for": 1.5})) == "OK"
        await trio.sleep_until(pushed_at + 1.5 - SLACK)
        assert await push_reply(client, job("uniq-000002", custom={"unique_for": 1.5})) == \
            "NOTUNIQUE Job not unique"
        await trio.sleep_until(pushed_at + 1.5 + SLACK)
        assert await push_reply(client, job("uniq-000003", custom={"unique_for": 1.5})) == "OK"
        await client.aclose()


async def test_scheduled_jobs_unique_lock_counts_from_its_at(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """TTL = delay until `at` + unique_for: here 2 s + 1 s (not 1 s from the PUSH)."""
    async with timed_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        at_unix = math.floor(unix_now(server)) + 2
        at = trio_time_of(server, at_unix)
        assert await push_reply(client, job("uniq-000011", at=rfc3339(at_unix), custom={"unique_for": 1})) == "OK"
        await trio.sleep_until(at + 1 - SLACK)  # long past unique_for from the PUSH; queued since `at`
        assert await push_reply(client, job("uniq-000012", custom={"unique_for": 1})) == "NOTUNIQUE Job not unique"
        await trio.sleep_until(at + 1 + SLACK)
        assert await push_reply(client, job("uniq-000013", custom={"unique_for": 1})) == "OK"
        await client.aclose()


async def test_expiring_job_is_fetched_until_expires_in_passes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with timed_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        pushed_at = trio.current_time()
        for jid in ("expire-0001", "expire-0002"):
            assert await client.push(job(jid, custom={"expires_in": 1})) == b"OK"
        await trio.sleep_until(pushed_at + 1 - SLACK)
        got = await client.fetch("default")
        assert got is not None and got["jid"] == "expire-0001"
        await trio.sleep_until(pushed_at + 1 + SLACK)
        assert (await client.info())["faktory"]["queues"]["default"] == 1  # dropped at FETCH only
        assert await client.fetch("default") is None  # skipped (and counted), nothing else queued
        info = (await client.info())["faktory"]
        assert info["queues"]["default"] == 0 and info["total_expired"] == 1
        await client.aclose()


async def test_uncommitted_batch_lasts_exactly_uncommitted_ttl(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with timed_server(tmp_path, batches=BatchesConfig(uncommitted_ttl=1)) as server:
        client = await AsyncClient.connect(server.port)
        created_at = trio.current_time()
        bid = (await client.json_command("BATCH NEW", {"success": {"jobtype": "Ok", "args": [], "queue": "cb"}})).decode()
        assert await client.push(job("member-0001", queue="ttl", custom={"bid": bid})) == b"OK"
        await trio.sleep_until(created_at + 1 - SLACK)
        assert json.loads(await client.command(f"BATCH STATUS {bid}"))["bid"] == bid
        await trio.sleep_until(created_at + 1 + SLACK)
        for line in (f"BATCH STATUS {bid}", f"BATCH COMMIT {bid}"):
            with pytest.raises(ReplyError, match=f"^ERR No such batch {bid}$"):
                await client.command(line)
        got = await client.fetch("cb", "ttl")  # the member still runs, and no callback was queued
        assert got is not None and got["custom"] == {"bid": bid}
        assert (await client.info())["faktory"]["queues"].get("cb", 0) == 0
        await client.aclose()


async def test_done_batch_is_forgotten_exactly_retention_after(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The due timer wakes for a batch that just became done (its ACK set the time), with
    nothing else due, and forgets it on time."""
    async with timed_server(tmp_path, batches=BatchesConfig(retention=60)) as server:
        client = await AsyncClient.connect(server.port)
        bid = (await client.json_command("BATCH NEW", {"complete": {"jobtype": "Done", "args": [], "queue": "cb"}})).decode()
        assert await client.command(f"BATCH COMMIT {bid}") == b"OK"
        callback = await client.fetch("cb")
        assert callback is not None
        assert await client.json_command("ACK", {"jid": callback["jid"]}) == b"OK"
        done_at = trio.current_time()
        assert json.loads(await client.command(f"BATCH STATUS {bid}"))["complete_st"] == "2"
        await trio.sleep_until(done_at + 60 - SLACK)
        assert json.loads(await client.command(f"BATCH STATUS {bid}"))["bid"] == bid
        await trio.sleep_until(done_at + 60 + SLACK)
        assert server.dispatcher.manager.features.find(Batches).batches == {}  # type: ignore[union-attr]
        with pytest.raises(ReplyError, match=f"^ERR No such batch {bid}$"):
            await client.command(f"BATCH STATUS {bid}")
        await client.aclose()
