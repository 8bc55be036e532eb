"""A whole server in the test's own trio run, its connections over in-memory streams.

`serve()` runs as in production — store, journal, features, dispatcher, timers, reaper — and
listens on a loopback port that nobody uses. Clients connect through
`trio.testing.memory_stream_pair` (or `lockstep_stream_pair`, whose sends wait until the peer
reads) into a server/tcp.py `Connections` built over that server's dispatcher, journal and
fetch waiters, with its own send watchdog running. No byte crosses the kernel, so under
pytest-trio's `autojump_clock` the mock clock jumps only when every task, client and server,
is waiting for time: a timing rule can be asserted at its deadline, not a margin around it.

(`serve()` keeps its `Connections` to itself; a second one over the same parts needs no
change to the server, and differs only in not being closed by `Server.shutdown`, which the
context manager does itself.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio
import trio.testing

from faktory_py.config import Config, Timers
from faktory_py.server.app import Server, serve
from faktory_py.server.clock import Clock
from faktory_py.server.tcp import Connections
from helpers.async_client import AsyncClient


def inprocess_config(tmp_path: Path, timers: Timers | None = None, **fields: Any) -> Config:
    """No fsync: its worker thread would look idle to the mock clock, which would jump.
    `fields` are further `Config` fields (`throttles=`, `batches=`, ...)."""
    return Config(binding="127.0.0.1:0", data_dir=tmp_path / "data", conf_dir=tmp_path / "conf",
                  fsync="no", timers=timers or Timers(), **fields)


@asynccontextmanager
async def running_server(config: Config) -> AsyncIterator[Server]:
    """`serve(config)` in the test's own trio run (clients connect over TCP), stopped on exit."""
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(serve, config)
        try:
            yield server
        finally:
            server.shutdown()


@dataclass(eq=False)
class InProcessServer:
    server: Server
    connections: Connections
    _nursery: trio.Nursery

    def open_stream(self, *, lockstep: bool = False) -> trio.abc.Stream:
        """A client end whose server end `Connections.handle` serves from now on."""
        pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
        client, server_end = pair()
        self._nursery.start_soon(self.connections.handle, server_end)
        return client

    async def connect(self, *, lockstep: bool = False, **hello: Any) -> AsyncClient:
        """An identified client (a worker if `wid` is given)."""
        return await AsyncClient.handshake(self.open_stream(lockstep=lockstep), **hello)

    def unix_to_trio(self, unix: float) -> float:
        """The trio time at which the server's clock reads `unix`."""
        return self.server.dispatcher.clock.trio_time(unix)


@asynccontextmanager
async def inprocess_server(config: Config, clock: Clock | None = None) -> AsyncIterator[InProcessServer]:
    """`clock`: the server's wall clock (e.g. `Clock(start=…)` for a chosen date)."""
    async with trio.open_nursery() as outer:
        server: Server = await outer.start(partial(serve, config, clock=clock))
        try:
            async with trio.open_nursery() as inner:
                connections = Connections(config, server.dispatcher, server.durable, server.dispatcher.waiters,
                                          server.timings)
                inner.start_soon(connections.watch_sends)
                try:
                    yield InProcessServer(server, connections, inner)
                finally:
                    inner.cancel_scope.cancel()
        finally:
            server.shutdown()
