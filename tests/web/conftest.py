"""The fixture the web tests share: servers started in the test's own trio run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

from faktory_py.config import Config
from faktory_py.server.app import Server, serve


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Config], Awaitable[Server]]]:
    """`await running(config)` → a started Server (a test may start several, e.g. a restart on
    the same data directory); all are shut down after the test."""
    async with trio.open_nursery() as nursery:
        servers: list[Server] = []

        async def start(cfg: Config) -> Server:
            server = await nursery.start(serve, cfg)
            servers.append(server)
            return server

        yield start
        for server in servers:
            server.shutdown()
