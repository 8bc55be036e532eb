"""A throttle's `slot_release = "job_end"` and `on_worker_lost` (protocol/spec.md §11.7) on an
in-process server driven by trio's MockClock: A-T4's job_end half (the timeout only flags a
slot overdue) and A-T5 (a worker process reaped for missing heartbeats fails its throttled
jobs, which free their slots; with "keep" nothing changes)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import trio
import trio.testing

from faktory_py.config import Throttle, ThrottlesConfig
from helpers.async_client import AsyncClient
from test_throttles_tcp import jid, job, named, throttled_server, status, workers


async def test_a_job_end_slot_outlives_its_timeout_flagged_overdue(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T4, job_end mode: FETCH at t, no ACK; at t + timeout no second slot, overdue = 1;
    the ACK frees the slot and clears the flag."""
    async with throttled_server(tmp_path, Throttle("slow", timeout=60, concurrency=1, slot_release="job_end")) as server:
        producer, first, second = await workers(server, 3)
        for i in range(2):
            assert await producer.push(job(f"slow-{i}", "slow")) == b"OK"
        assert named(await first.fetch("slow")) == "slow-0"
        await trio.sleep(61)
        assert await second.fetch("slow") is None
        state = (await status(producer, "slow"))["slow"]
        assert (state["in_use"], state["overdue"], state["slot_release"]) == (1, 1, "job_end")
        await second.send("FETCH slow")
        assert await first.json_command("ACK", {"jid": "jid-slow-0"}) == b"OK"
        assert named(json.loads(await second.reply())) == "slow-1"
        state = (await status(producer, "slow"))["slow"]
        assert (state["in_use"], state["overdue"]) == (1, 0)
        for client in (producer, first, second):
            await client.aclose()


async def lose_a_worker(tmp_path: Path, on_worker_lost: str) -> tuple[dict[str, int], list[str], list[str]]:
    """A wid holds 4/4 slots of `instagram` then never BEATs; after the 60 s cutoff and the
    reaper's tick: the throttle's state, the jids in retries (with their errtypes), and what
    another worker's 4 FETCHes get."""
    throttle = Throttle("instagram", timeout=600, concurrency=4, slot_release="job_end", on_worker_lost=on_worker_lost)
    async with throttled_server(tmp_path, throttle) as server:
        producer = await AsyncClient.connect(server.port)
        for i in range(8):
            assert await producer.push(job(f"ig-{i}", "instagram", retry=3)) == b"OK"
        (lost,) = await workers(server, 1, prefix="lost")
        for _ in range(4):
            assert (await lost.fetch("instagram"))["queue"] == "instagram"
        await trio.sleep(80)  # past the 60 s cutoff and a 15 s reaper tick
        state = (await status(producer, "instagram"))["instagram"]
        store = server.dispatcher.manager.store
        retries = sorted(f'{named(job)} {job["failure"]["errtype"]}: {job["failure"]["message"]}'
                         for _, _, job in store.set_entries("retries"))
        others = await workers(server, 4, prefix="other")
        got = [named(got) if (got := await w.fetch("instagram")) else "-" for w in others]
        for client in (producer, lost, *others):
            await client.aclose()
        return {"in_use": state["in_use"], "overdue": state["overdue"]}, retries, got


async def test_a_lost_worker_fails_its_throttled_jobs_and_frees_their_slots(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T5, on_worker_lost = "fail": the silent worker's 4 jobs are in retries with errtype
    WorkerLost, their slots free (job_end mode, so only their end frees them) and 4 new
    jobs go out."""
    state, retries, got = await lose_a_worker(tmp_path, "fail")
    assert state == {"in_use": 0, "overdue": 0}
    assert retries == [f"ig-{i} WorkerLost: Faktory worker lost0 stopped sending heartbeats" for i in range(4)]
    assert sorted(got) == [f"ig-{i}" for i in range(4, 8)]


async def test_a_lost_worker_keeps_its_jobs_with_keep(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T5, on_worker_lost = "keep": nothing changes; the slots stay held."""
    state, retries, got = await lose_a_worker(tmp_path, "keep")
    assert state == {"in_use": 4, "overdue": 0}
    assert retries == []
    assert got == ["-"] * 4


async def test_a_worker_whose_connections_close_is_not_lost(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Only heartbeat expiry counts: a worker process that closed its last connection (Ruby
    reconnects after each read timeout) keeps its reservations and their slots."""
    async with throttled_server(tmp_path, Throttle("q", timeout=600, concurrency=1, slot_release="job_end")) as server:
        producer = await AsyncClient.connect(server.port)
        assert await producer.push(job("q-0", "q")) == b"OK"
        (worker,) = await workers(server, 1)
        assert named(await worker.fetch("q")) == "q-0"
        await worker.aclose()
        await trio.sleep(80)
        assert [res.job["jid"] for res in server.dispatcher.manager.store.reservations()] == [jid("q-0")]
        assert (await status(producer, "q"))["q"]["in_use"] == 1
        await producer.aclose()


async def test_a_reload_to_job_end_keeps_an_overdue_slot_held(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A reload recounts the slots under the new mode (protocol/spec.md §11.6): a slot whose
    timeout passed is free in timeout mode and held, overdue, in job_end mode."""
    async with throttled_server(tmp_path, Throttle("q", timeout=10, concurrency=1)) as server:
        producer, first = await workers(server, 2)
        assert await producer.push(job("q-0", "q")) == b"OK"
        assert named(await first.fetch("q")) == "q-0"
        await trio.sleep(11)
        assert ((await status(producer, "q"))["q"]["in_use"]) == 0
        config = replace(server.config_reload.config,
                         throttles=ThrottlesConfig((Throttle("q", timeout=10, concurrency=1, slot_release="job_end"),)))
        assert server.reload(lambda: config)
        state = (await status(producer, "q"))["q"]
        assert (state["in_use"], state["overdue"], state["slot_release"]) == (1, 1, "job_end")
        for client in (producer, first):
            await client.aclose()
