"""A connection process (`--io-processes N`): `python -m faktory_py.server.connproc`, started by
the state process (server/connprocs.py) with the command port's listening sockets and its end of
a Unix socket pair (the link).

Why so little here: it accepts, speaks TLS when configured, and moves bytes — each client's to
the state process, the state process's replies to each client, batched per loop turn
(server/link.py) — so the protocol, and every guarantee, stays in the state process's code.

Bounds: a client is read only while fewer than `link.WINDOW` of its bytes wait unconsumed in the
state process and fewer than `link.WINDOW` of its replies wait here, so a client that sends
faster than it is served, or does not read its replies, is held back by TCP; one whose replies
cannot be sent for `SEND_TIMEOUT` seconds is closed. It exits when the link ends (the state
process stopped or died), or when it finds its parent gone.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

import trio

from ..config import TlsFiles
from .connprocs import Outbox, tls_context
from .link import CLOSE, CREDIT, DATA, EOF, OPEN, STOP, WINDOW, FrameReader, LinkError, credit_amount, frame
from .refusals import peer_host

log = logging.getLogger("faktory_py.connproc")

SEND_TIMEOUT = 10.0
#: after the link ends: how long clients may take to receive their last replies
_FLUSH_AT_EXIT = 1.0
_RECV_CHUNK = 65536
_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)
#: how often it checks that the state process still runs (seconds)
_PARENT_POLL = 1.0


class _Client:
    """One accepted client: its replies waiting here and its bytes unconsumed there."""

    def __init__(self, fd: int | None) -> None:
        #: the plain TCP socket's descriptor (None with TLS), which replies are written to at
        #: once when nothing is queued before them: a task switch less per reply
        self.fd = fd
        #: `_send` is writing (a direct write now would cut into its bytes)
        self.sending = False
        self.replies = bytearray()
        self.unconsumed = 0
        #: the state process closed it: send the replies, then close
        self.closing = False
        #: the client half-closed and the state process was told
        self.eof_sent = False
        #: set for `_send` (replies or closing), and for `_receive` (room in the window):
        #: each waits on a fresh one, after finding nothing to do
        self.more = trio.Event()
        self.room = trio.Event()


class ConnectionProcess:
    def __init__(self, link: trio.SocketStream, listeners: list[trio.abc.Listener[trio.abc.Stream]]) -> None:
        self.outbox = Outbox(link)
        self.link = link
        self.listeners = listeners
        self.clients: dict[int, _Client] = {}
        self._ids = itertools.count(1)
        self._accepting = trio.CancelScope()
        #: set when a client leaves (the exit waits on a fresh one until none is left)
        self._client_left = trio.Event()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_link, nursery.cancel_scope)
            nursery.start_soon(self._accept, nursery)
            await self._read_link()
            # The link ended: no more accepts; let the clients have their last replies.
            self._accepting.cancel()
            for client in self.clients.values():
                client.closing = True
                client.more.set()
            with trio.move_on_after(_FLUSH_AT_EXIT):
                while self.clients:
                    self._client_left = trio.Event()
                    await self._client_left.wait()
            nursery.cancel_scope.cancel()

    async def _write_link(self, scope: trio.CancelScope) -> None:
        try:
            await self.outbox.run()
        except _PEER_GONE:
            scope.cancel()  # the state process is gone: nothing left to do

    async def _accept(self, nursery: trio.Nursery) -> None:
        """Accept until a graceful stop (or the link's end), then close this process's copies
        of the listening sockets: once every process has, new clients are refused, as without
        connection processes."""
        with self._accepting:
            await trio.serve_listeners(self._serve, self.listeners, handler_nursery=nursery)
        for listener in self.listeners:
            await listener.aclose()

    async def _read_link(self) -> None:
        reader = FrameReader()
        try:
            while data := await self.link.receive_some(_RECV_CHUNK * 4):
                for kind, conn_id, payload in reader.feed(data):
                    if kind == STOP:
                        self._accepting.cancel()
                        continue
                    client = self.clients.get(conn_id)
                    if client is None:
                        continue  # closed here meanwhile (its EOF is on the way)
                    if kind == DATA:
                        if rest := _write_now(client, payload):
                            client.replies += rest
                            client.more.set()
                    elif kind == CREDIT:
                        client.unconsumed -= credit_amount(payload)
                        client.room.set()
                    elif kind == CLOSE:
                        client.closing = True
                        client.more.set()
        except _PEER_GONE:
            pass
        except LinkError as exc:
            log.error("the state process sent a malformed frame (%s); exiting", exc)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        conn_id = next(self._ids)
        client = self.clients[conn_id] = _Client(
            stream.socket.fileno() if type(stream) is trio.SocketStream else None)
        self.outbox.put(frame(OPEN, conn_id, peer_host(stream).encode()))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive, stream, conn_id, client, nursery.cancel_scope)
                await self._send(stream, client)
                nursery.cancel_scope.cancel()
        finally:
            del self.clients[conn_id]
            self._client_left.set()
            if not (client.closing or client.eof_sent):
                self.outbox.put(frame(EOF, conn_id))
            await trio.aclose_forcefully(stream)

    async def _receive(self, stream: trio.abc.Stream, conn_id: int, client: _Client, scope: trio.CancelScope) -> None:
        """The client's bytes to the state process, within the window (module doc)."""
        try:
            while True:
                while client.unconsumed >= WINDOW or len(client.replies) >= WINDOW:
                    client.room = trio.Event()
                    await client.room.wait()
                data = await stream.receive_some(_RECV_CHUNK)
                if not data:
                    break
                client.unconsumed += len(data)
                self.outbox.put(frame(DATA, conn_id, data))
        except _PEER_GONE:
            scope.cancel()  # it cannot read its replies either
            return
        # A half-close: its replies may still be read; the state process closes it once it
        # has answered.
        self.outbox.put(frame(EOF, conn_id))
        client.eof_sent = True

    async def _send(self, stream: trio.abc.Stream, client: _Client) -> None:
        """The state process's replies to the client, until it closes the connection."""
        while True:
            if client.replies:
                data = bytes(client.replies)
                client.replies.clear()
                client.room.set()
                client.sending = True
                with trio.move_on_after(SEND_TIMEOUT) as timer:
                    try:
                        await stream.send_all(data)
                    except _PEER_GONE:
                        return
                client.sending = False
                if timer.cancelled_caught:
                    log.info("closing a connection that stopped reading its replies")
                    return
            elif client.closing:
                return
            else:
                client.more = trio.Event()
                await client.more.wait()


def _write_now(client: _Client, data: bytes) -> bytes:
    """Write what the client's socket takes at once, when nothing is queued or being sent
    before it; the rest, for `_send`."""
    if client.fd is None or client.sending or client.replies:
        return data
    try:
        sent = os.write(client.fd, data)  # non-blocking, as trio set it
    except OSError:  # full (BlockingIOError), or broken: `_send` waits, or finds the error
        return data
    return data[sent:]


async def _exit_with_parent(parent: int, scope: trio.CancelScope) -> None:
    """End when the state process is gone (a second guard besides the link's end; the kernel's
    PR_SET_PDEATHSIG would not do: it fires when the *thread* that spawned this process ends,
    and trio spawns from a worker thread that ends when idle)."""
    while os.getppid() == parent:
        await trio.sleep(_PARENT_POLL)
    log.warning("the state process is gone; exiting")
    scope.cancel()


async def _main(parent: int, link_fd: int, listen_fds: list[int], tls: TlsFiles | None) -> None:
    link = trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=link_fd)))
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = [
        trio.SocketListener(trio.socket.from_stdlib_socket(socket.socket(fileno=fd))) for fd in listen_fds]
    if tls is not None:
        context = tls_context(tls)
        listeners = [trio.SSLListener(l, context, https_compatible=False) for l in listeners]  # type: ignore[misc]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_exit_with_parent, parent, nursery.cancel_scope)
        await ConnectionProcess(link, listeners).run()
        nursery.cancel_scope.cancel()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="faktory_py.server.connproc")
    p.add_argument("--link", type=int, required=True)
    p.add_argument("--listen", type=int, action="append", default=[])
    p.add_argument("--parent", type=int, required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args(argv)
    # A terminal's ^C, or a service manager's SIGTERM to the whole group (systemd's default), is the
    # state process's to handle: it stops gracefully, and ends this process once its clients have
    # their last replies.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
    tls = TlsFiles(key=Path(args.tls_key), cert=Path(args.tls_cert)) if args.tls_cert else None
    trio.run(_main, args.parent, args.link, args.listen, tls)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
