"""Job dependencies and results over TCP on an in-process server under trio's MockClock
(protocol/spec.md §14): C-T1 (a chain pushed in reverse is released by each ACK, a FETCH
waiting on another connection gets the next job at once), C-T8 (a diamond through a
`concurrency = 1` throttle with synchronous ACKs completes; held jobs take no slot), C-T9's
server side (ACK with a result, the size limit, RESULT GET, `custom._after`), C-T11 in
process (a restart from the journal between every step keeps held jobs, edges and results),
INFO `faktory.workflows` and JOB DEPS."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from faktory_py.config import Throttle, ThrottlesConfig
from faktory_py.server.app import Server
from helpers.async_client import AsyncClient
from helpers.inprocess import inprocess_config, running_server
from helpers.rawclient import ReplyError

SLACK = 0.01


def throttled_server(tmp_path: Path, *throttles: Throttle) -> AbstractAsyncContextManager[Server]:
    return running_server(inprocess_config(tmp_path, throttles=ThrottlesConfig(throttles)))


def jid(name: str) -> str:
    return f"jid-{name:0>6}"


def job(name: str, *after: str, queue: str = "default", **custom: Any) -> dict[str, Any]:
    if after:
        custom["after"] = [jid(a) for a in after]
    return {"jid": jid(name), "jobtype": "Step", "args": [name], "queue": queue,
            **({"custom": custom} if custom else {})}


async def held(client: AsyncClient) -> int:
    return (await client.info())["faktory"]["workflows"]["held"]


async def test_a_chain_pushed_in_reverse_runs_in_order_and_each_ack_wakes_the_next(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """C-T1 in process: c after b, b after a, then a: c and b are held; after each ACK on A
    the waiting FETCH on B gets the next job at once; INFO workflows.held goes 2 → 1 → 0."""
    async with throttled_server(tmp_path) as server:
        a_conn = await AsyncClient.connect(server.port, wid="A")
        b_conn = await AsyncClient.connect(server.port, wid="B")
        for pushed in (job("c", "b"), job("b", "a"), job("a")):
            assert await a_conn.push(pushed) == b"OK"
        info = await a_conn.info()
        assert info["faktory"]["queues"] == {"default": 1} and info["faktory"]["workflows"]["held"] == 2
        assert (await a_conn.fetch("default"))["jid"] == jid("a")
        for name, after, remaining in (("a", "b", 1), ("b", "c", 0)):
            await b_conn.send("FETCH default")
            await a_conn.wait_fetches_waiting(1)
            acked_at = trio.current_time()
            assert await a_conn.json_command("ACK", {"jid": jid(name)}) == b"OK"
            got = json.loads(await b_conn.reply())
            assert got["jid"] == jid(after) and trio.current_time() - acked_at < SLACK
            assert got["custom"]["_after"] == {jid(name): {"outcome": "success"}}
            assert await held(a_conn) == remaining
            a_conn, b_conn = b_conn, a_conn
        for client in (a_conn, b_conn):
            await client.aclose()


async def test_a_diamond_through_a_concurrency_one_throttle_completes(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """C-T8 (the Oban Pro 1.3.1 incident): a → {b, c} → d in a queue limited to one job at a
    time, synchronous ACKs: every job runs, in dependency order; held jobs never take the slot."""
    async with throttled_server(tmp_path, Throttle("lim", timeout=60, concurrency=1)) as server:
        client = await AsyncClient.connect(server.port, wid="w")
        for pushed in (job("d", "b", "c", queue="lim"), job("b", "a", queue="lim"), job("c", "a", queue="lim"),
                       job("a", queue="lim")):
            assert await client.push(pushed) == b"OK"
        ran = []
        while (got := await client.fetch("lim")) is not None:
            info = (await client.info())["faktory"]
            status = json.loads(await client.command("THROTTLE STATUS lim"))["lim"]
            # the slot is taken: `waiting` counts the queued jobs only, never the held ones
            assert (status["in_use"], status["waiting"]) == (1, info["queues"]["lim"])
            ran.append(got["jid"])
            assert await client.json_command("ACK", {"jid": got["jid"]}) == b"OK"
            assert (await client.info())["faktory"]["throttles"]["lim"]["in_use"] == 0
        assert ran == [jid("a"), jid("b"), jid("c"), jid("d")]
        assert await held(client) == 0
        await client.aclose()


async def test_results_are_kept_injected_and_limited(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """C-T9 server side: ACK {"jid","result"} ⇒ +OK, the dependent's custom._after carries it,
    RESULT GET returns it; a 70 000-byte result gets the exact error and the job stays reserved."""
    async with throttled_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port, wid="w")
        assert await client.push(job("up")) == b"OK"
        assert await client.push(job("down", "up")) == b"OK"
        assert (await client.fetch())["jid"] == jid("up")
        with pytest.raises(ReplyError) as err:
            await client.json_command("ACK", {"jid": jid("up"), "result": "x" * 70_000})
        assert str(err.value) == "ERR result too large (70002 bytes > 65536)"
        assert (await client.info())["faktory"]["sets"]["working"] == 1
        assert await client.json_command("ACK", {"jid": jid("up"), "result": {"n": 3}}) == b"OK"
        down = await client.fetch()
        assert down["custom"]["_after"] == {jid("up"): {"outcome": "success", "result": {"n": 3}}}
        got = json.loads(await client.command(f"RESULT GET {jid('up')}"))
        assert (got["jid"], got["outcome"], got["result"]) == (jid("up"), "success", {"n": 3})
        assert json.loads(await client.command("RESULT GET nobody-at-all")) == {
            "jid": "nobody-at-all", "outcome": "unknown"}
        with pytest.raises(ReplyError) as err:
            await client.command("RESULT FOO x")
        assert str(err.value) == "ERR RESULT needs GET <jid>"
        await client.aclose()


async def test_job_deps_shows_edges_and_states(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with throttled_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        assert await client.push(job("a")) == b"OK"
        assert await client.push(job("c", "a", "never-pushed")) == b"OK"
        deps = json.loads(await client.command(f"JOB DEPS {jid('c')}"))
        assert deps == {"jid": jid("c"), "state": "held", "dependents": [],
                        "after": [{"jid": jid("a"), "state": "enqueued"},
                                  {"jid": jid("never-pushed"), "state": "unknown"}]}
        up = json.loads(await client.command(f"JOB DEPS {jid('a')}"))
        assert (up["state"], up["dependents"]) == ("enqueued", [jid("c")])
        await client.aclose()


async def test_a_restart_between_every_step_loses_no_dependent_and_runs_none_early(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """C-T11 in process: a fan-in x, y → z and a chain z → w, the server restarted from its
    journal after every command: held jobs, edges and results survive; each runs only after
    its dependencies succeeded."""
    steps: list[tuple[str, Any]] = [("push", job("w", "z")), ("push", job("z", "x", "y")), ("push", job("x")),
                                    ("push", job("y")), ("run", "x"), ("run", "y"), ("run", "z"), ("run", "w")]
    for kind, arg in steps:
        async with throttled_server(tmp_path) as server:
            client = await AsyncClient.connect(server.port, wid="w")
            if kind == "push":
                assert await client.push(arg) == b"OK"
            else:
                got = await client.fetch()
                assert got["jid"] == jid(arg)
                if arg == "z":
                    assert got["custom"]["_after"] == {jid("x"): {"outcome": "success", "result": "x"},
                                                       jid("y"): {"outcome": "success", "result": "y"}}
                assert await client.json_command("ACK", {"jid": jid(arg), "result": arg}) == b"OK"
            await client.aclose()
    async with throttled_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        info = (await client.info())["faktory"]
        assert info["workflows"] == {"held": 0, "released": 2, "killed": 0, "missing": 0}
        assert info["queues"] == {"default": 0}
        await client.aclose()
