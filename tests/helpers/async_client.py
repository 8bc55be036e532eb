"""The trio variant of the one client, for in-process tests (MockClock-driven servers).

Over a trio stream, with the blocking client's reply parser (faktory_py/tools/client.py
`ReplyReader`): lines out, `-ERR …` raised as its `ReplyError`. Only what the timer tests need.
"""

from __future__ import annotations

import json
from typing import Any

import trio

from faktory_py.tools.client import ReplyError, ReplyReader


class PeerClosed(Exception):
    """The server closed the connection before (or instead of) replying."""


class AsyncClient:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = ReplyReader()

    @classmethod
    async def connect(cls, port: int, **hello: Any) -> AsyncClient:
        """Open a connection and complete the handshake (a worker if `wid` is given)."""
        return await cls.handshake(await trio.open_tcp_stream("127.0.0.1", port), **hello)

    @classmethod
    async def handshake(cls, stream: trio.abc.Stream, **hello: Any) -> AsyncClient:
        """Complete the handshake on a stream already connected to a server."""
        client = cls(stream)
        greeting = await client.reply()
        assert isinstance(greeting, bytes) and greeting.startswith(b"HI "), greeting
        hello.setdefault("v", 2)
        if hello.get("wid"):
            hello.setdefault("hostname", "testhost")
            hello.setdefault("pid", 4242)
            hello.setdefault("labels", [])
        assert await client.json_command("HELLO", hello) == b"OK"
        return client

    async def send(self, line: str) -> None:
        await self.stream.send_all(line.encode() + b"\r\n")

    async def reply(self) -> Any:
        """Next reply (bytes, or None for `$-1`); raises ReplyError / PeerClosed."""
        while True:
            item = self.reader.gets()
            if item is not False:
                break
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise PeerClosed(str(exc)) from exc
            if not data:
                raise PeerClosed("EOF")
            self.reader.feed(data)
        if isinstance(item, ReplyError):
            raise item
        return item

    async def command(self, line: str) -> Any:
        await self.send(line)
        return await self.reply()

    async def json_command(self, verb: str, payload: Any) -> Any:
        return await self.command(f"{verb} {json.dumps(payload, separators=(',', ':'))}")

    async def push(self, job: dict[str, Any]) -> Any:
        return await self.json_command("PUSH", job)

    async def fetch(self, *queues: str) -> dict[str, Any] | None:
        body = await self.command("FETCH " + " ".join(queues or ("default",)))
        return None if body is None else json.loads(body)

    async def info(self) -> dict[str, Any]:
        return json.loads(await self.command("INFO"))

    async def wait_fetches_waiting(self, count: int) -> None:
        """Until INFO says `count` FETCHes are blocked (`server.fetches_waiting`, ours:
        protocol/spec.md §3 INFO), instead of sleeping "long enough" for them to block.
        Polls without sleeping, so a mock clock does not move meanwhile."""
        for _ in range(1000):
            if (await self.info())["server"]["fetches_waiting"] == count:
                return
            await trio.sleep(0)
        raise AssertionError(f"never {count} blocked FETCH(es)")

    async def wait_closed(self) -> None:
        """Return once the server closes the connection (EOF or reset)."""
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
