"""A plain TCP connection's bytes, moved with the socket's own non-blocking calls.

trio's `SocketStream` yields to the scheduler twice per request/reply exchange: after a
`send` that the kernel took at once and after a `recv` that found data (each a checkpoint,
so that every socket call looks like it blocked). One yield per exchange is what a server
needs: it lets the other connections run, and by the time this connection runs again a
client that waits for each reply has usually sent its next command, so the `recv` finds it
without registering with epoll (measured with strace under Faktory's load tool: ~2% of
`recv`s hit EAGAIN). `RawSocketStream` therefore sends without yielding (waiting for
writability only while the socket buffer is full) and yields once before each `recv`,
waiting for readability only if nothing has arrived — unless the connection has just
waited anyway (its replies went out in a reply round, server/replyround.py, which is such
a yield: `just_yielded`). Cancellation still reaches a connection at every read.

Errors are the socket's own `OSError`s, which the connection code treats as a peer that is
gone, like trio's `BrokenResourceError`. TLS connections keep trio's `SSLStream`.
"""

from __future__ import annotations

import socket

import trio


class RawSocketStream:
    """The `receive_some` / `send_all` / `aclose` a connection task uses, over the stdlib
    socket inside a trio `SocketStream` (which keeps owning and closing it)."""

    __slots__ = ("_stream", "_sock", "just_yielded")

    def __init__(self, stream: trio.SocketStream, sock: socket.socket) -> None:
        self._stream = stream
        self._sock = sock
        #: set by the connection when it has just waited (a reply round): the next read
        #: then does not yield again, only checks for cancellation
        self.just_yielded = False

    @classmethod
    def wrap(cls, stream: trio.abc.Stream) -> trio.abc.Stream | RawSocketStream:
        """`stream` itself unless it is a plain trio `SocketStream` whose socket we can reach."""
        if type(stream) is not trio.SocketStream:
            return stream
        sock = getattr(stream.socket, "_sock", None)  # trio's socket wraps a stdlib one
        return cls(stream, sock) if isinstance(sock, socket.socket) else stream

    @property
    def socket(self) -> socket.socket:
        """The stdlib socket (server/replyround.py sends on it directly)."""
        return self._sock

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` bytes; b"" at EOF."""
        sock = self._sock
        if self.just_yielded:
            self.just_yielded = False
            await trio.lowlevel.checkpoint_if_cancelled()
        else:
            await trio.lowlevel.checkpoint()
        while True:
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte, waiting for writability only while the socket buffer is full."""
        sock = self._sock
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            try:
                sent += sock.send(view[sent:] if sent else view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)

    async def aclose(self) -> None:
        await self._stream.aclose()


#: what a connection task reads and writes: trio's stream (TLS) or a `RawSocketStream`
ByteStream = trio.abc.Stream | RawSocketStream
