"""Batch dependencies over TCP on an in-process server under trio's MockClock (protocol/spec.md
§14.2; the reference's C-T13 on our side): the ACK of a batch's last member releases the job
waiting on `{"bid": …}` inside that step (a FETCH waiting on another connection gets it at
once), an unknown bid is refused with the batches' own text, and a restart from the journal
between every command keeps the edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from helpers.async_client import AsyncClient
from helpers.inprocess import inprocess_config, running_server
from helpers.rawclient import ReplyError
from test_workflows_tcp import SLACK


def member(name: str, bid: str) -> dict[str, Any]:
    return {"jid": f"member-{name}", "jobtype": "Part", "args": [name], "custom": {"bid": bid}}


def dependent(bid: str) -> dict[str, Any]:
    return {"jid": "dependent-1", "jobtype": "Merge", "args": [], "queue": "after", "custom": {"after": [{"bid": bid}]}}


async def new_batch(client: AsyncClient) -> str:
    payload = {"success": {"jid": "success-cb", "jobtype": "Done", "args": [], "queue": "callbacks"}}
    return (await client.json_command("BATCH NEW", payload)).decode()


async def test_the_last_members_ack_wakes_the_dependent_at_once(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(inprocess_config(tmp_path)) as server:
        a_conn = await AsyncClient.connect(server.port, wid="A")
        b_conn = await AsyncClient.connect(server.port, wid="B")
        with pytest.raises(ReplyError, match="No such batch b-nope"):
            await a_conn.push(dependent("b-nope"))
        bid = await new_batch(a_conn)
        for pushed in (member("1", bid), member("2", bid), dependent(bid)):
            assert await a_conn.push(pushed) == b"OK"
        assert await a_conn.command(f"BATCH COMMIT {bid}") == b"OK"
        deps = json.loads(await a_conn.command("JOB DEPS dependent-1"))
        assert deps["state"] == "held" and deps["after"] == [{"bid": bid, "state": "pending"}]
        for _ in range(2):
            assert (await a_conn.fetch())["custom"]["bid"] == bid
        assert await a_conn.json_command("ACK", {"jid": "member-1"}) == b"OK"
        await b_conn.send("FETCH after")
        await a_conn.wait_fetches_waiting(1)
        acked_at = trio.current_time()
        assert await a_conn.json_command("ACK", {"jid": "member-2"}) == b"OK"
        got = json.loads(await b_conn.reply())
        assert got["jid"] == "dependent-1" and trio.current_time() - acked_at < SLACK
        assert got["custom"]["_after"] == {bid: {"bid": bid, "outcome": "success"}}
        info = (await a_conn.info())["faktory"]
        assert info["queues"]["callbacks"] == 1 and info["workflows"]["held"] == 0
        for client in (a_conn, b_conn):
            await client.aclose()


async def test_a_restart_between_every_command_keeps_the_batch_edge(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    bid = ""

    async def step(kind: str) -> None:
        nonlocal bid
        async with running_server(inprocess_config(tmp_path)) as server:
            client = await AsyncClient.connect(server.port, wid="w")
            if kind == "new":
                bid = await new_batch(client)
            elif kind == "member":
                assert await client.push(member("1", bid)) == b"OK"
            elif kind == "dependent":
                assert await client.push(dependent(bid)) == b"OK"
            elif kind == "commit":
                assert await client.command(f"BATCH COMMIT {bid}") == b"OK"
            elif kind == "run":
                assert (await client.fetch())["jid"] == "member-1"
                assert (await client.info())["faktory"]["workflows"]["held"] == 1
                assert await client.json_command("ACK", {"jid": "member-1"}) == b"OK"
            else:
                info = (await client.info())["faktory"]
                assert info["workflows"]["held"] == 0 and info["queues"]["callbacks"] == 1
                got = await client.fetch("after")
                assert got["custom"]["_after"] == {bid: {"bid": bid, "outcome": "success"}}
            await client.aclose()

    for kind in ("new", "member", "dependent", "commit", "run", "check"):
        await step(kind)
