"""MUTATE on the `working` target [EXT] over TCP with a throttle (protocol/spec.md §3 MUTATE,
§11.2): an operator's requeue of a zombie reservation frees its slot and wakes a waiting
FETCH at once, kill and discard are journaled and a restart rebuilds the same state, and
the texts of the refusals. The semantics in detail: tests/core/test_mutate_working.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from faktory_py.config import Throttle
from helpers.async_client import AsyncClient
from helpers.rawclient import ReplyError
from test_throttles_tcp import SLACK, jid, job, named, throttled_server, status, workers


async def mutate(client: AsyncClient, cmd: str, *names: str, **request: Any) -> Any:
    return await client.json_command("MUTATE", {"cmd": cmd, "target": "working",
                                                "filter": {"jids": [jid(n) for n in names]}, **request})


async def test_a_requeued_zombie_frees_its_slot_and_a_waiting_fetch_gets_it_at_once(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    throttle = Throttle("q", timeout=600, concurrency=1, slot_release="job_end")
    async with throttled_server(tmp_path, throttle) as server:
        producer, zombie, waiting = await workers(server, 3)
        assert await producer.push(job("z", "q")) == b"OK"
        assert named(await zombie.fetch("q")) == "z"
        await waiting.send("FETCH q")
        await producer.wait_fetches_waiting(1)  # the one slot is held by the zombie
        mutated_at = trio.current_time()
        assert await mutate(producer, "requeue", "z") == b"OK"
        got = json.loads(await waiting.reply())
        assert trio.current_time() - mutated_at < SLACK
        assert named(got) == "z" and got["args"] == [] and "failure" not in got
        assert (await status(producer, "q"))["q"]["by_worker"] == {"w2": 1}
        for client in (producer, zombie, waiting):
            await client.aclose()


async def test_kill_and_discard_are_journaled_and_a_restart_rebuilds_them(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    throttle = Throttle("q", timeout=600, concurrency=3)
    async with throttled_server(tmp_path, throttle) as server:
        client = await AsyncClient.connect(server.port, wid="w")
        for name in ("k", "d", "stay"):
            assert await client.push(job(name, "q")) == b"OK"
            await client.fetch("q")
        assert await mutate(client, "kill", "k") == b"OK"
        assert await mutate(client, "discard", "d", "not-reserved") == b"OK"
        before = (await client.info())["faktory"]["sets"], await status(client)
        await client.aclose()
    assert before[0] == {"dead": 1, "retries": 0, "scheduled": 0, "working": 1}
    assert before[1]["q"]["in_use"] == 1
    async with throttled_server(tmp_path, throttle) as server:
        client = await AsyncClient.connect(server.port, wid="w")
        assert ((await client.info())["faktory"]["sets"], await status(client)) == before
        (dead,) = [job for _, _, job in server.dispatcher.manager.store.set_entries("dead")]
        assert (named(dead), dead["failure"]["errtype"]) == ("k", "Killed")
        await client.aclose()


@pytest.mark.parametrize(("request_", "error"), [
    ({"cmd": "clear", "target": "working"},
     "ERR clear does not apply to target working: requeue, kill or discard filter.jids"),
    ({"cmd": "requeue", "target": "working", "filter": {"jobtype": "ThrottleTest"}},
     "ERR target working needs filter.jids, the jids of the reservations to end"),
    ({"cmd": "requeue", "target": "busy", "filter": {"jids": ["jid-000001"]}},
     "ERR invalid target for mutation command"),
])
async def test_refusals_keep_the_connection_serving(
        tmp_path: Path, autojump_clock: trio.testing.MockClock, request_: dict[str, Any], error: str) -> None:
    async with throttled_server(tmp_path, Throttle("q", timeout=600, concurrency=1)) as server:
        (client,) = await workers(server, 1)
        with pytest.raises(ReplyError) as refused:
            await client.json_command("MUTATE", request_)
        assert str(refused.value) == error
        assert await client.push(job("after", "q")) == b"OK"
        await client.aclose()
