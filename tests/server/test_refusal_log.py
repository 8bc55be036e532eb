"""Every refusal to a client is logged with its address, and a flood of them is not a flood of
INFO lines (server/refusals.py): bad commands, a wrong password, a line too long, over the
connection limit, over real loopback TCP (the peer address is the socket's)."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from faktory_py.server.app import Server
from faktory_py.server.refusals import WINDOW, RefusalLog
from helpers.async_client import AsyncClient, PeerClosed
from helpers.inprocess import inprocess_config, running_server
from helpers.rawclient import ReplyError

LOGGER = "faktory_py.refusals"


def running(tmp_path: Path, **settings: Any) -> AbstractAsyncContextManager[Server]:
    return running_server(inprocess_config(tmp_path, **settings))


def refusals(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_a_bad_command_is_logged_once_with_the_peer_address(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with running(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        with pytest.raises(ReplyError, match="unknown command BOGUS"):
            await client.command("BOGUS")
        assert refusals(caplog) == ["refused 127.0.0.1: -ERR unknown command BOGUS"]
        for _ in range(1000):
            with pytest.raises(ReplyError):
                await client.command('PUSH {"jobtype": ""}')
        assert await client.command("INFO")  # still served
        await client.aclose()
    assert len(refusals(caplog)) == 1
    assert len(refusals(caplog, logging.DEBUG)) == 1000


async def test_handshake_and_limit_refusals_name_the_peer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with running(tmp_path / "a", password="s3cret") as server:
        with pytest.raises((ReplyError, PeerClosed)):
            await AsyncClient.connect(server.port, pwdhash="not-the-hash")
    async with running(tmp_path / "b", max_connections=1) as server:
        first = await AsyncClient.connect(server.port)
        second = await AsyncClient.connect(server.port)  # +OK, then -ERR too many connections
        with pytest.raises(ReplyError, match="too many connections"):
            await second.reply()
        await first.aclose()
        await second.aclose()
    assert refusals(caplog) == ["refused 127.0.0.1: -ERR Invalid password",
                                "refused 127.0.0.1: too many connections (max_connections 1)"]


async def test_a_line_too_long_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with running(tmp_path, max_line=1024) as server:
        client = await AsyncClient.connect(server.port)
        await client.send("PUSH " + "x" * 2048)
        with pytest.raises((ReplyError, PeerClosed)):
            await client.reply()
        await client.aclose()
    assert refusals(caplog) == ["refused 127.0.0.1: line too long (max 1024 bytes)"]


def test_info_once_per_host_per_window_then_the_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    now = [0.0]
    log = RefusalLog(clock=lambda: now[0])
    for _ in range(5):
        log.refused("10.0.0.1", "-ERR bad")
    log.refused("10.0.0.2", "-ERR bad")
    now[0] = WINDOW
    log.refused("10.0.0.1", "-ERR bad")
    assert refusals(caplog) == [
        "refused 10.0.0.1: -ERR bad", "refused 10.0.0.2: -ERR bad",
        "refused 10.0.0.1: -ERR bad (and 4 more from it since its last such line, logged at debug level)"]
