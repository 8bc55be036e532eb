"""Connection processes (`--io-processes N`, protocol/spec.md §8): the state process's side.

Why: one Python process is one core. With N ≥ 1 the process that owns the state (this one)
stops accepting on the command port; N connection processes (server/connproc.py) accept on
the same listening sockets (the kernel spreads the accepts), do the socket syscalls and TLS,
and exchange every client's bytes with this process over one Unix socket each, batched: what
either side has for the other in a loop turn goes in one write (server/link.py's frames).

Here each client is a `VirtualStream`, a trio stream over the link, handed to the same handler
trio.serve_listeners would call (server/gate.py, then server/tcp.py's `Connections.handle`).
So every guarantee is the in-process code's — per-connection order, no reply before the
journal, FETCH blocking and wake-up, worker state, quiet/terminate, the connection limit,
graceful stop — and only the bytes travel one hop further. Such a stream has no socket, so it
takes tcp.py's per-connection task path, not the epoll I/O loop.

Faults: a connection process that dies (kill -9) ends its link; its clients' streams read as
closed (a waiting FETCH is abandoned, as when a client leaves) and a new process is started,
with a growing pause when they die at once repeatedly. A connection process exits when its
link ends, or when it finds this process gone (server/connproc.py).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from ..config import TlsFiles
from .link import CLOSE, DATA, EOF, OPEN, STOP, WINDOW, FrameReader, LinkError, credit, frame

log = logging.getLogger("faktory_py.server")

Handler = Callable[[trio.abc.Stream], Awaitable[None]]

#: bytes queued for one link past which a reply waits (tcp.py's send watchdog then closes a
#: connection whose replies cannot go out)
_OUTBOX_HIGH = 8 << 20
#: how long a stopping connection process may take to send its clients' last replies
_CHILD_EXIT_TIMEOUT = 5.0
#: a connection process that lived shorter than this counts as dying at once
_QUICK_DEATH = 1.0
_MAX_RESTART_PAUSE = 10.0
_RECV_CHUNK = 1 << 18
#: a client's consumed bytes are credited to its connection process in steps of this many
_CREDIT_STEP = WINDOW // 4


def tls_context(tls: TlsFiles) -> ssl.SSLContext:
    """The command port's TLS context (here or in a connection process)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
    return context


class Outbox:
    """One side's frames for the link: many puts per turn, one write."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._pending = bytearray()
        self._ready = trio.Event()
        self._room = trio.Event()
        self._room.set()
        self._drained = trio.Event()
        self._drained.set()

    def put(self, data: bytes) -> None:
        self._pending += data
        self._ready.set()
        if self._drained.is_set():
            self._drained = trio.Event()
        if len(self._pending) > _OUTBOX_HIGH and self._room.is_set():
            self._room = trio.Event()

    async def wait_room(self) -> None:
        """Return once the link is not far behind (a put may still follow); no checkpoint
        when it is not."""
        if not self._room.is_set():
            await self._room.wait()

    async def drained(self) -> None:
        """Return once everything put so far was written."""
        await self._drained.wait()

    async def run(self) -> None:
        """Write whatever is pending; ends (raising) when the link breaks."""
        while True:
            await self._ready.wait()
            # one more turn: every task woken with this one puts its frames first
            await trio.lowlevel.cancel_shielded_checkpoint()
            self._ready = trio.Event()
            data = bytes(self._pending)
            self._pending.clear()
            await self.stream.send_all(data)
            if not self._pending:
                self._room.set()
                self._drained.set()


class VirtualStream(trio.abc.Stream):
    """One client of a connection process, as a trio stream (see module doc).

    receive_some returns what the client sent (and gives the connection process credit to
    read on); send_all queues the bytes on the link; aclose asks the connection process to
    send what is queued and close. When the client is gone, or the link broke, receive_some
    returns b"" (so a waiting FETCH is abandoned); after a broken link send_all raises
    BrokenResourceError.
    """

    def __init__(self, outbox: Outbox, conn_id: int, peer: str, forget: Callable[[int], None]) -> None:
        #: the client's address (server/refusals.py `peer_host`)
        self.peer_host = peer
        self._outbox = outbox
        self._id = conn_id
        self._forget = forget
        self._buffer = bytearray()
        #: bytes read since the last credit
        self._consumed = 0
        self._eof = False
        self._broken = False
        self._closed = False
        self._readable = trio.Event()

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self._readable.set()

    def feed_eof(self) -> None:
        self._eof = True
        self._readable.set()

    def broken(self) -> None:
        """The link is gone: the client with it."""
        self._broken = True
        self.feed_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while not (self._buffer or self._eof or self._closed):
            self._readable = trio.Event()
            await self._readable.wait()
            waited = True
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")
        if max_bytes is None or max_bytes >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
        self._consumed += len(data)
        # Credit in steps, not per read: one frame less per command, at the price of a
        # window up to `_CREDIT_STEP` smaller.
        if self._consumed >= _CREDIT_STEP and not self._broken:
            self._outbox.put(credit(self._id, self._consumed))
            self._consumed = 0
        if not waited:  # a schedule point in every call, as trio's own streams have
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._outbox.wait_room()
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")
        if self._broken:
            raise trio.BrokenResourceError("the connection process is gone")
        if data:
            self._outbox.put(frame(DATA, self._id, data))
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await self._outbox.wait_room()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._forget(self._id)
            if not self._broken:
                self._outbox.put(frame(CLOSE, self._id))
            self._readable.set()
        await trio.lowlevel.checkpoint()


class ConnectionProcesses:
    """N connection processes on the command port's listening sockets, kept running."""

    def __init__(self, count: int, listeners: list[trio.socket.SocketType], tls: TlsFiles | None) -> None:
        self.count = count
        self.listeners = listeners
        self.tls = tls
        #: the running processes (a test kills one)
        self.processes: list[trio.Process] = []
        #: processes started, respawns included
        self.started = 0
        self._outboxes: set[Outbox] = set()
        self._stopping = False

    async def run(self, handler: Handler, conn_nursery: trio.Nursery,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep `count` connection processes running; each client they accept runs
        `handler(stream)` in `conn_nursery`. Reports started once all are spawned; returns
        after `aclose`."""
        async with trio.open_nursery() as nursery:
            for index in range(self.count):
                await nursery.start(self._keep, index, handler, conn_nursery)
            task_status.started()

    def stop_accepting(self) -> None:
        """A graceful stop began: the connection processes accept no more clients, and one
        that ends is not replaced (the listening sockets are about to close here)."""
        self._stopping = True
        for outbox in self._outboxes:
            outbox.put(frame(STOP, 0))

    async def aclose(self) -> None:
        """Once the clients' streams are closed: send the links what is queued, end them, and
        wait for the processes (killed after `_CHILD_EXIT_TIMEOUT`)."""
        self._stopping = True
        with trio.move_on_after(_CHILD_EXIT_TIMEOUT):
            for outbox in list(self._outboxes):
                await outbox.drained()
        for outbox in list(self._outboxes):
            try:
                outbox.stream.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # already gone
        with trio.move_on_after(_CHILD_EXIT_TIMEOUT):
            for process in list(self.processes):
                await process.wait()
        for process in list(self.processes):
            if process.returncode is None:
                log.warning("connection process %d did not exit; killing it", process.pid)
                process.kill()

    async def _keep(self, index: int, handler: Handler, conn_nursery: trio.Nursery,
                    task_status: trio.TaskStatus[None]) -> None:
        """Run connection process `index`, and a new one whenever it ends, until a stop begins.
        The first must start (else the server does not); a later one that cannot is retried."""
        quick_deaths = 0
        first = True
        while not self._stopping:
            began = trio.current_time()
            try:
                ended = f"ended (status {await self._run_one(handler, conn_nursery, task_status)})"
            except OSError as exc:
                if first:
                    raise
                ended = f"could not be started ({exc})"
            first, task_status = False, trio.TASK_STATUS_IGNORED
            if self._stopping:
                return
            quick_deaths = quick_deaths + 1 if trio.current_time() - began < _QUICK_DEATH else 0
            pause = min(_MAX_RESTART_PAUSE, 0.1 * 2 ** (quick_deaths - 1)) if quick_deaths else 0.0
            log.warning("connection process %d %s; its clients' connections are closed; starting another%s",
                        index, ended, f" in {pause:g} s" if pause else "")
            await trio.sleep(pause)

    async def _run_one(self, handler: Handler, conn_nursery: trio.Nursery,
                       task_status: trio.TaskStatus[None]) -> int | None:
        """Run one connection process until its link ends (reporting started once it is
        spawned); its exit status."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = [theirs.fileno(), *(s.fileno() for s in self.listeners)]
        command = [sys.executable, "-m", "faktory_py.server.connproc", "--parent", str(os.getpid()),
                   "--link", str(theirs.fileno()),
                   *(a for s in self.listeners for a in ("--listen", str(s.fileno())))]
        if self.tls is not None:
            command += ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)]
        try:
            process = await trio.lowlevel.open_process(command, pass_fds=fds, env=_child_env())
        finally:
            theirs.close()
        self.processes.append(process)
        self.started += 1
        task_status.started()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        outbox = Outbox(stream)
        self._outboxes.add(outbox)
        streams: dict[int, VirtualStream] = {}
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_broken, outbox.run, nursery.cancel_scope)
                await _read_link(stream, outbox, streams, handler, conn_nursery, lambda: not self._stopping)
                nursery.cancel_scope.cancel()
        finally:
            self._outboxes.discard(outbox)
            for virtual in list(streams.values()):
                virtual.broken()
            streams.clear()
            with trio.CancelScope(shield=True):
                await stream.aclose()
                with trio.move_on_after(_CHILD_EXIT_TIMEOUT):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                self.processes.remove(process)
        return process.returncode


def _child_env() -> dict[str, str]:
    """This environment, with this very checkout first on the path: a connection process runs
    the same code as the state process, whatever else is installed."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}


async def _until_broken(run: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
    """Run `run` (a link's writer); a broken link ends the link's other tasks too."""
    try:
        await run()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        scope.cancel()


async def _read_link(stream: trio.SocketStream, outbox: Outbox, streams: dict[int, VirtualStream],
                     handler: Handler, conn_nursery: trio.Nursery, accepting: Callable[[], bool]) -> None:
    """Turn a connection process's frames into client streams until the link ends.

    A client the process accepted before it read STOP may arrive once a graceful stop began
    (`accepting()` false), when the connection nursery may be closed already: it is closed at
    once, as the closed listening socket refuses clients without connection processes."""
    reader = FrameReader()
    forget = streams.pop
    try:
        while data := await stream.receive_some(_RECV_CHUNK):
            for kind, conn_id, payload in reader.feed(data):
                if kind == OPEN and not accepting():
                    outbox.put(frame(CLOSE, conn_id))
                elif kind == OPEN:
                    virtual = VirtualStream(outbox, conn_id, payload.decode(errors="replace"),
                                            lambda i: forget(i, None))
                    streams[conn_id] = virtual
                    conn_nursery.start_soon(handler, virtual)
                elif (virtual := streams.get(conn_id)) is not None:  # else: closed here already
                    if kind == DATA:
                        virtual.feed(payload)
                    elif kind == EOF:
                        virtual.feed_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    except LinkError as exc:  # a bug on one side: end this process's clients, not the server
        log.error("a connection process sent a malformed frame (%s); restarting it", exc)
