"""The APPEND script's own Redis connection: the op log's hot path without coredis's
per-call machinery (protocol/spec.md §7.1).

Every reply of a primary waits for an append, so an append's CPU cost is paid once per
batch of replies, and with few clients a batch is a few replies. Measured under Faktory's
load tool at 10 threads (bench/README.md, R1/R4), a call through coredis cost about 250 µs
of this process's CPU, where Redis spends about 30 µs running the script: its retry
policy, request objects, pool checkout, and a writer and a reader task per connection that
pass every command and reply along memory streams. Here the calling task writes the
command (with its `WAIT`) in one `send_all` and parses the replies with hiredis as they
arrive: about 40 µs.

The link dials what the coredis client dials: the same address (with a Sentinel pool, the
master the Sentinels name now), TLS context, credentials and database; it loads the
script when it connects. Anything that leaves the connection in doubt drops it, and the
next call dials again: a lost connection or a cancelled call (the caller sends the same
append again: its outcome is unknown, the script's DUP check makes it safe), and every
error reply (after a failover a stale master answers `-READONLY`, after `SCRIPT FLUSH`
the script is `-NOSCRIPT`: a fresh connection finds the new master or loads the script
again). Errors come as coredis's (`ResponseError` for an error reply, `ConnectionError`
for the rest), so the caller handles one set of exceptions whichever path a call took.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import coredis
import hiredis
import trio
from coredis.exceptions import ConnectionError as RedisConnectionError, ResponseError
from coredis.pool import SentinelConnectionPool

from .client import CONNECT_TIMEOUT

_RECV_CHUNK = 65536
#: the link's name in Redis's CLIENT LIST
CLIENT_NAME = "faktory_py-append"


class ScriptLink:
    """One Lua script run over a connection of this link's own (see module doc)."""

    def __init__(self, client: coredis.Redis[bytes], script: str) -> None:
        self._pool = client.connection_pool
        self._script = script
        self._sha = b""
        self._stream: trio.abc.Stream | None = None
        self._socket: trio.socket.SocketType | None = None
        self._reader = hiredis.Reader()
        #: connections dialled (a test's observable: a dropped link dials again)
        self.dials = 0

    async def call(self, keys: Sequence[str], args: Sequence[Any], replicas: int,
                   timeout_ms: int) -> tuple[Any, int]:
        """Run the script, then (with `replicas` > 0) `WAIT replicas timeout_ms` in the same
        write on the same connection (WAIT counts that connection's writes). Returns the
        script's reply and how many replicas have its writes (0 when none were asked for),
        as server/ha/client.py's `call_replicated` does."""
        try:
            if self._stream is None:
                await self._dial()
            command = [("EVALSHA", self._sha, len(keys), *keys, *args)]
            if replicas:
                command.append(("WAIT", replicas, timeout_ms))
            replies = await self._exchange(command)
        except BaseException as exc:
            self.drop()
            if isinstance(exc, (OSError, trio.BrokenResourceError, trio.ClosedResourceError, hiredis.ProtocolError)):
                raise RedisConnectionError(f"Redis connection: {exc!r}") from exc
            raise
        return replies[0], replies[1] if replicas else 0

    def drop(self) -> None:
        """Close the connection (if any); the next call dials a new one."""
        if self._socket is not None:
            self._socket.close()
        self._stream = self._socket = None
        self._reader = hiredis.Reader()

    async def _dial(self) -> None:
        """Connect where the coredis client connects, log in, select the database and load
        the script, within coredis's connect timeout."""
        pool, settings = self._pool, self._pool.connection_kwargs
        location = await pool.get_primary_location() if isinstance(pool, SentinelConnectionPool) else pool.location
        host, port = location.host, location.port  # type: ignore[union-attr]
        context: ssl.SSLContext | None = settings.get("ssl_context")
        password, username, db = settings.get("password"), settings.get("username"), settings.get("db")
        handshake: list[tuple[Any, ...]] = []
        if password is not None:
            handshake.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            handshake.append(("SELECT", db))
        handshake.append(("CLIENT", "SETNAME", CLIENT_NAME))
        handshake.append(("SCRIPT", "LOAD", self._script))
        self.dials += 1
        with trio.move_on_after(settings.get("connect_timeout") or CONNECT_TIMEOUT):
            tcp = await trio.open_tcp_stream(host, port)
            self._socket = tcp.socket
            self._stream = trio.SSLStream(tcp, context, server_hostname=host) if context is not None else tcp
            self._sha = (await self._exchange(handshake))[-1]
            return
        raise RedisConnectionError(f"connecting to Redis at {host}:{port} timed out")

    async def _exchange(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send `commands` in one write and read their replies; the first error reply among
        them is raised once all are read."""
        assert self._stream is not None
        await self._stream.send_all(b"".join(hiredis.pack_command(command) for command in commands))
        replies: list[Any] = []
        reader = self._reader
        while len(replies) < len(commands):
            reply = reader.gets()
            if reply is False:
                data = await self._stream.receive_some(_RECV_CHUNK)
                if not data:
                    raise RedisConnectionError("Redis closed the connection")
                reader.feed(data)
            else:
                replies.append(reply)
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))
        return replies
