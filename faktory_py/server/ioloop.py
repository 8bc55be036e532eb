"""One task serving every idle plain-TCP connection: read what is ready, run it, one journal
write, send every reply.

With a trio task per connection, each request/reply exchange of a client that waits for
every reply costs that task's scheduling, a readiness wait in trio's epoll and a journal
write of its own. Here one task owns an `epoll` over the sockets of the identified plain
TCP connections that are waiting for their next command (*attached*), and trio waits only
on that epoll's fd. Each turn it

1. reads from every ready socket and runs the complete commands through the connection's
   sans-io `Connection` and the synchronous `Dispatcher`, in each connection's order;
2. writes the journal once for the whole batch (`write_through`, group commit across
   connections);
3. sends every connection's replies with one non-blocking `send` each, at once when the
   commits they depend on are as durable as the policy says already (`is_synced`).

Otherwise (`fsync always`, an op log in Redis that appends in a task of its own) the batch
queues for the *sender*, a second task that awaits the durability of each queued batch in
order (`wait_written`, `synced`) and then sends its replies, while the loop goes on reading
and running the next batches: a batch's fsync runs in a thread as the next batch is read,
run and written, and the next fsync covers everything written before it started (group
commit). Queued batches go out in order, so a connection's replies keep their order across
batches, and a reply queued behind a batch that waits waits too. A connection whose next
step belongs to its task (a FETCH that must wait, the end) is not read from while its
replies are queued.

So a reply still goes out only once the commits it depends on are in the journal (and
synced as the policy says), and a connection's replies in its own order. Whatever needs
waiting is left to the connection's own task (server/tcp.py), which attached the socket
after its handshake and sleeps until the loop *hands it back*: a FETCH that must wait
(`Block`), a reply the kernel did not take whole (the rest, and replies queued after it, in
`Handback.unsent`), replies whose commits the journal could not write (degraded: `unsent`
with `needs`), the end of the connection (END, EOF, a too-long line, a server that stops:
`done`) or an error reading or sending (raised in the task, which closes the connection; an
unexpected exception closes that connection only, logged by the task). The task does what
its own path does and attaches again when it waits for a command next.

A task cancelled while attached (worker terminate, the send watchdog, a stop) detaches
first, in trio's abort callback, so the loop never touches a socket its task closes; replies
queued for it but not sent yet (waiting for their batch's fsync) are dropped, as any close
cuts a send short. If the loop itself ends, every task is handed back (with its queued
replies) and serves on its own path until the loop runs again.
"""

from __future__ import annotations

import select
import socket
import time
from collections import deque
from typing import Any

import outcome
import trio

from .. import wire
from ..commands.dispatch import Block, Dispatcher, Session
from ..core.timings import Timings
from ..store.oplog import OpLog
from ..wire.connection import NEED_DATA, Connection
from .durability import JournalFailed
from .refusals import RefusalLog

_RECV_CHUNK = 65536


class Handback:
    """One attached connection, and what its task must do when the loop hands it back."""

    __slots__ = ("sock", "fd", "connection", "session", "task", "attached", "listening",
                 "unsent", "needs", "block", "done")

    def __init__(self, sock: socket.socket, connection: Connection, session: Session) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.connection = connection
        self.session = session
        self.task: Any = None
        self.attached = False
        #: its socket is in the loop's epoll (attached and not waiting to be handed back)
        self.listening = False
        #: replies to send first (the part a full socket buffer left, or replies waiting for
        #: the journal) and the journal position they wait for (0: none)
        self.unsent: bytes | memoryview = b""
        self.needs = 0
        #: a FETCH that must wait: (its verb's start time for the command timings, the Block)
        self.block: tuple[float, Block] | None = None
        #: the connection is over: send `unsent` and close
        self.done = False


def stdlib_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The stdlib socket under a plain trio `SocketStream` (None for TLS or memory streams):
    what the loop reads and writes with its own non-blocking calls."""
    if type(stream) is not trio.SocketStream:
        return None
    sock = getattr(stream.socket, "_sock", None)  # trio's socket wraps a stdlib one
    return sock if isinstance(sock, socket.socket) else None


class IOLoop:
    """The batched loop over attached connections (see module doc)."""

    def __init__(self, dispatcher: Dispatcher, durable: OpLog, stopping: trio.Event, timings: Timings,
                 refusals: RefusalLog, max_line: int) -> None:
        self.dispatcher = dispatcher
        self.durable = durable
        self.stopping = stopping
        self.timings = timings
        self.refusals = refusals
        self.max_line = max_line
        #: True while `run` serves: only then do connections attach
        self.running = False
        #: turns that served at least one connection (a test's server-side observable)
        self.batches = 0
        self._epoll: select.epoll | None = None
        self._attached: dict[int, Handback] = {}
        #: batches waiting for the op log, oldest first: each connection's replies and the
        #: commit they depend on, and the last commit the batch depends on
        self._queued: deque[tuple[list[tuple[Handback, bytes, int]], int]] = deque()
        self._more = trio.Event()  # set when a batch is queued for the sender

    @property
    def attached(self) -> int:
        """How many connections wait for their next command in the loop."""
        return len(self._attached)

    async def attach(self, sock: socket.socket, connection: Connection, session: Session) -> Handback:
        """Let the loop serve the connection until it hands it back (see module doc)."""
        back = Handback(sock, connection, session)
        back.task = trio.lowlevel.current_task()
        assert self._epoll is not None
        self._epoll.register(back.fd, select.EPOLLIN)
        self._attached[back.fd] = back
        back.attached = back.listening = True

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._detach(back)
            connection.data_to_send()  # not yet durable, never to be sent: the close cuts them
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)  # type: ignore[no-any-return]

    def _detach(self, back: Handback) -> None:
        if back.attached:
            back.attached = False
            del self._attached[back.fd]
            self._mute(back)

    def _mute(self, back: Handback) -> None:
        """Read nothing more from the connection (its task takes over once its replies are sent)."""
        if back.listening:
            back.listening = False
            assert self._epoll is not None
            self._epoll.unregister(back.fd)

    def _hand_back(self, back: Handback) -> None:
        self._detach(back)
        trio.lowlevel.reschedule(back.task, outcome.Value(back))

    def _return(self, back: Handback, unsent: bytes | memoryview, needs: int) -> None:
        """Hand back with replies for the task to send once commit `needs` is durable, followed
        by the connection's replies in batches still queued (which then skip it)."""
        if not back.attached:
            return
        later = [(data, position) for entries, _ in self._queued for other, data, position in entries
                 if other is back]
        if later:
            unsent = b"".join([unsent, *(data for data, _ in later)])
            needs = max(needs, *(position for _, position in later))
        back.unsent, back.needs = unsent, needs
        self._hand_back(back)

    def _fail(self, back: Handback, exc: BaseException) -> None:
        """Hand back by raising `exc` in the task (which then closes the connection)."""
        self._detach(back)
        trio.lowlevel.reschedule(back.task, outcome.Error(exc))

    async def run(self) -> None:
        """Background task: serve attached connections, a batch per turn, until cancelled."""
        epoll = self._epoll = select.epoll()
        self.running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_when_durable)
                while True:
                    ready = epoll.poll(0)
                    if ready:
                        self._turn(ready)
                        # A yield, not a wait: under load the next sockets are ready by now, and
                        # trio's own epoll need not re-arm the loop's fd every turn.
                        await trio.lowlevel.checkpoint()
                    else:
                        await trio.lowlevel.wait_readable(epoll.fileno())
        finally:
            self.running = False
            self._return_queued()
            for back in list(self._attached.values()):
                self._hand_back(back)
            self._epoll = None
            epoll.close()

    def _return_queued(self) -> None:
        """Hand every queued batch's replies back to their tasks (which wait for the op log
        themselves, or fail as it did)."""
        while self._queued:
            entries, _ = self._queued.popleft()
            for back, data, position in entries:
                self._return(back, data, position)

    def _turn(self, ready: list[tuple[int, int]]) -> None:
        attached = self._attached
        served: list[Handback] = []
        for fd, _events in ready:
            back = attached.get(fd)
            if back is None:
                continue
            try:
                data = back.sock.recv(_RECV_CHUNK)
            except BlockingIOError:
                continue
            except OSError as exc:  # the peer is gone
                self._fail(back, exc)
                continue
            try:
                self._serve(back, data)
            except Exception as exc:  # one connection's failure closes that connection only
                self._fail(back, exc)
                continue
            served.append(back)
        if not served:
            return
        self.batches += 1
        self._answer(served)

    def _serve(self, back: Handback, data: bytes) -> None:
        """Run the complete commands `data` finishes, queueing their replies in the connection."""
        connection, session, dispatcher = back.connection, back.session, self.dispatcher
        timings = self.timings
        timed, perf_counter = timings.enabled, time.perf_counter
        connection.receive_data(data)
        while (event := connection.next_event()) is not NEED_DATA:
            if type(event) is not wire.Command:  # closed: EOF, or a line too long (its -ERR is queued)
                if not connection.at_eof:
                    self.refusals.refused(session.peer, f"line too long (max {self.max_line} bytes)")
                back.done = True
                return
            if self.stopping.is_set():
                connection.close("shutdown in progress")
                back.done = True
                return
            started = perf_counter() if timed else 0.0
            reply = dispatcher.handle(session, event)
            if timed:
                timings.commands.observe(event.verb, perf_counter() - started)
            if type(reply) is Block:  # the task waits for a job; what came before goes out first
                back.block = (perf_counter() if timed else 0.0, reply)
                return
            if reply.data is not None:
                connection.reply(reply.data, reply.position)
            if reply.close:
                connection.close()
                back.done = True
                return

    def _answer(self, served: list[Handback]) -> None:
        """One journal write for the batch, then every send, or the batch queued for the
        sender when its replies must wait for the op log (module doc)."""
        durable = self.durable
        outgoing: list[tuple[Handback, bytes, int]] = []
        needs = 0
        for back in served:
            data, position = back.connection.data_to_send()
            outgoing.append((back, data, position))
            if position > needs:
                needs = position
        try:
            written = durable.write_through(needs)
        except JournalFailed:
            written = False
            if not self._queued:  # each task fails as the journal did
                for back, data, position in outgoing:
                    self._return(back, data, position)
                return
        if not self._queued and (not needs or durable.is_synced(needs)
                                 or not written and durable.refusal() is not None):
            self._deliver(outgoing, written)
            return
        for back, _data, _position in outgoing:
            if back.block is not None or back.done:
                self._mute(back)
        self._queued.append((outgoing, needs))
        self._more.set()

    async def _send_when_durable(self) -> None:
        """The sender (module doc): each queued batch's replies, in order, once durable."""
        durable, queued = self.durable, self._queued
        while True:
            while not queued:
                self._more = trio.Event()
                await self._more.wait()
            outgoing, needs = queued[0]
            try:
                written = durable.write_through(needs)
                if not written and durable.refusal() is None:  # appending in a task of its own
                    await durable.wait_written(needs)
                    written = True
                if written:
                    await durable.synced(needs)
            except JournalFailed:
                self._return_queued()
                continue
            queued.popleft()
            self._deliver(outgoing, written)

    def _deliver(self, outgoing: list[tuple[Handback, bytes, int]], written: bool) -> None:
        """Send a batch's replies (`written`: the commits they depend on are durable)."""
        for back, data, position in outgoing:
            if not back.attached:  # cancelled while the batch waited for the journal
                continue
            if position and not written:  # the task waits for the journal (and its fsync)
                self._return(back, data, position)
                continue
            if data:
                try:
                    sent = back.sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    self._fail(back, exc)
                    continue
                if sent < len(data):  # a full socket buffer: the task waits for it
                    self._return(back, memoryview(data)[sent:], 0)
                    continue
            if back.block is not None or back.done:
                self._hand_back(back)
