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

Turns follow each other without yielding to trio for up to `_YIELD_EVERY` (a millisecond):
with few connections a turn is small, and a yield per turn (trio's scheduler and its own
epoll poll) cost more than the turn's own syscalls. When a turn finds nothing ready, the
loop polls again for a while before it sleeps (*spins*, `spin_deadline`): clients that wait
for every reply send their next command a few dozen µs after it, and a sleep through trio
(its scheduler, re-arming its epoll, the wake-up) cost more CPU per job than the polls that
catch the command — R1 at 10 threads went from 5.3–6.4k to 6.2–7.5k jobs/s with it, at
less server CPU per job. A spin lasts at most twice as long as the turn before it took, so
its CPU stays below twice the work's (an idle server does not spin at all), and never past
`_YIELD_EVERY` since the last yield. Nor does the loop spin when what comes next is up to
another task — replies queued for the sender (which waits for an fsync or the op log), a
task the turn handed a connection back to — as no other task runs while it spins.

Otherwise (`fsync always`, an op log in Redis that appends in a task of its own) the batch
queues for the *sender*, a second task that awaits the durability of each queued batch in
order (`wait_written`, `synced`) and then sends its replies, while the loop goes on reading
and running the next batches: a batch's fsync runs in a thread as the next batch is read,
run and written, and the next fsync covers everything written before it started (group
commit). Queued batches go out in order, so a connection's replies keep their order across
batches, and a reply queued behind a batch that waits waits too — unless it waits for
nothing (a FETCH's reply under `fsync always`, durability.py's `fetch_position`) and its
connection has no reply queued: it goes out at once, as other connections' replies may
overtake each other, never a connection's own earlier ones. A connection whose next
step belongs to its task (the end) is not read from while its replies are queued.

A FETCH that must wait (`Block`) stays in the loop, *parked*: a waiter without a task in the
fetch waiters' FIFOs (server/waiters.py `park`, shared with the task path's waiters, so the
longest waiting FETCH gets the next job whichever path serves it). Its socket stays in the
epoll: bytes the peer pipelines meanwhile are buffered in its `Connection` and run once the
FETCH is answered, in order, until they fill more than a line may take
(`Connection.backlogged`): then the socket leaves the epoll (*held*: the peer's sends wait
in the kernel) until the FETCH is answered and the buffered commands ran. An EOF with
nothing left to answer ends the wait without a job (the peer is gone: a job reserved for
it would only come back when its reservation expired). While a turn runs its commands
the wakes are held (`QueueWaiters.hold`): a job that a FETCH of the same turn takes wakes no
one, and the jobs left when the commands ran wake as many parked FETCHes (`Dispatcher.wake`).
A wake only takes note (it runs inside whatever enqueued the job); the turn that caused it,
or the next one, tries the FETCH again (`Dispatcher.retry_fetch`), so a job pushed by a
connection in the loop goes out in the same batch as the PUSH's `+OK` — unless a FETCH run
after the wake took the job: then the woken one waits on in its place, first for the next
job (`QueueWaiters.rewait`).
Its time is kept in a deadline heap on trio's clock (the loop's idle wait ends at the
earliest: `fetch_timed_out`, `$-1`), and a stop ends every wait with `$-1`. The reply is
one of the connection's replies like any other: it waits for the journal as they do.

So a reply still goes out only once the commits it depends on are in the journal (and
synced as the policy says), and a connection's replies in its own order. Whatever needs
waiting of another kind is left to the connection's own task (server/tcp.py), which
attached the socket after its handshake and sleeps until the loop *hands it back*: a reply
the kernel did not take whole (the rest, and replies queued after it, in
`Handback.unsent`), replies whose commits the journal could not write (degraded: `unsent`
with `needs`), the end of the connection (END, EOF, a too-long line, a server that stops:
`done`) or an error reading or sending (raised in the task, which closes the connection; an
unexpected exception closes that connection only, logged by the task). The task does what
its own path does and attaches again when it waits for a command next; a FETCH parked when
its connection is handed back waits in the task for the rest of its time (`block`).

A task cancelled while attached (worker terminate, the send watchdog, a stop) detaches
first, in trio's abort callback, so the loop never touches a socket its task closes (and a
parked FETCH leaves the waiters, passing on a wake it got); replies queued for it but not
sent yet (waiting for their batch's fsync) are dropped, as any close cuts a send short. If
the loop itself ends, every task is handed back (with its queued replies and parked FETCH)
and serves on its own path until the loop runs again.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import select
import socket
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import outcome
import trio

from .. import wire
from ..commands.dispatch import Block, Dispatcher, Reply, Session
from ..core.timings import Timings
from ..store.oplog import OpLog
from ..wire.connection import NEED_DATA, Connection
from .durability import JournalFailed
from .refusals import RefusalLog
from .waiters import Parked, QueueWaiters

_RECV_CHUNK = 65536
#: how long the loop may run turns back to back before it yields to trio (seconds): a yield
#: is a run of trio's scheduler and a poll of its epoll, which with few connections (small
#: turns) cost more per job than the turn's own poll; other tasks wait at most this long
_YIELD_EVERY = 0.001
#: how long the loop may spin, at most, as a multiple of the turn before it (module doc)
_SPIN_PER_TURN = 2.0


class Step(enum.Enum):
    """Where `IOLoop.run_commands` stopped (unless at a FETCH that must wait)."""

    NEED_DATA = "no complete command is left"
    ENDED = "the connection is over"
    FULL = "the queued replies fill a write"


class Handback:
    """One attached connection, and what its task must do when the loop hands it back."""

    __slots__ = ("sock", "fd", "connection", "session", "task", "attached", "listening",
                 "unsent", "needs", "block", "done", "parked", "fetch", "blocked_at", "deadline",
                 "wait", "woken_by", "queued", "held")

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
        #: a FETCH the task must wait for (parked when the loop handed the connection back):
        #: (when it began, for the fetch wait timings; the Block, with the time it has left)
        self.block: tuple[float, Block] | None = None
        #: the connection is over: send `unsent` and close
        self.done = False
        #: its FETCH waits in the loop (module doc): the waiter, the Block to retry, when it
        #: began (perf_counter, for the timings), when its time is up (trio's clock), which
        #: wait this is (its deadline heap entry's key) and the queue that last woke it
        self.parked: Parked | None = None
        self.fetch: Block | None = None
        self.blocked_at = 0.0
        self.deadline = 0.0
        self.wait = 0
        self.woken_by: str | None = None
        #: how many of the sender's queued batches hold replies of this connection
        self.queued = 0
        #: not read from while its parked FETCH waits: too much is buffered behind it
        self.held = False


def stdlib_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The stdlib socket under a plain trio `SocketStream` (None for TLS or memory streams):
    what the loop reads and writes with its own non-blocking calls."""
    if type(stream) is not trio.SocketStream:
        return None
    sock = getattr(stream.socket, "_sock", None)  # trio's socket wraps a stdlib one
    return sock if isinstance(sock, socket.socket) else None


def spin_deadline(began: float, ended: float, yielded: float) -> float:
    """Until when the loop may poll for more after a turn from `began` to `ended` (monotonic
    seconds; 0: not at all) when nothing is ready: `_SPIN_PER_TURN` times the turn, and not
    past `_YIELD_EVERY` since the loop last yielded at `yielded` (module doc)."""
    until = min(ended + _SPIN_PER_TURN * (ended - began), yielded + _YIELD_EVERY)
    return until if until > ended else 0.0


def spin(epoll: select.epoll, until: float) -> list[tuple[int, int]]:
    """Poll `epoll` without blocking until something is ready or `until` (monotonic) passes:
    what is ready, or [] (module doc)."""
    monotonic = time.monotonic
    while monotonic() < until:
        ready = epoll.poll(0)
        if ready:
            return ready
    return []


class IOLoop:
    """The batched loop over attached connections (see module doc)."""

    def __init__(self, dispatcher: Dispatcher, durable: OpLog, stopping: trio.Event, timings: Timings,
                 refusals: RefusalLog, max_line: int, waiters: QueueWaiters) -> None:
        self.dispatcher = dispatcher
        self.waiters = waiters
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
        #: parked FETCHes woken (by a job or the stop) and not tried again yet, in wake order
        self._fired: deque[Parked] = deque()
        #: (when its time is up, its `Handback.wait`, the connection) per parked FETCH; an
        #: entry whose wait has ended is dropped when it comes up
        self._deadlines: list[tuple[float, int, Handback]] = []
        self._waits = itertools.count(1)
        #: the idle wait's scope, while the loop sleeps: a wake from outside the loop ends it
        self._sleep: trio.CancelScope | None = None
        self._on_wake = self._woke
        #: the turn handed a connection back to its task (which runs only once the loop
        #: yields, so the loop does not spin after that turn)
        self._handed_back = False

    @property
    def attached(self) -> int:
        """How many connections the loop serves (waiting for their next command or parked)."""
        return len(self._attached)

    @property
    def parked(self) -> int:
        """How many of them have a FETCH parked (a test's server-side observable)."""
        return sum(back.parked is not None for back in self._attached.values())

    @property
    def held(self) -> int:
        """How many of them are not read from behind a parked FETCH (a test's observable)."""
        return sum(back.held for back in self._attached.values())

    async def attach(self, sock: socket.socket, connection: Connection, session: Session) -> Handback:
        """Let the loop serve the connection until it hands it back (see module doc)."""
        back = Handback(sock, connection, session)
        back.task = trio.lowlevel.current_task()
        self._listen(back)
        self._attached[back.fd] = back
        back.attached = True

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
            if back.parked is not None:  # it will not fetch here: a wake it got passes on
                self.waiters.unpark(back.parked)
                back.parked = None
                if not back.done:  # its task waits for the rest of the FETCH's time
                    assert back.fetch is not None
                    left = max(0.0, back.deadline - trio.current_time())
                    back.block = (back.blocked_at, back.fetch._replace(timeout=left))

    def _listen(self, back: Handback) -> None:
        """Read from the connection whenever it sends (attached, or no longer held)."""
        back.listening = True
        assert self._epoll is not None
        self._epoll.register(back.fd, select.EPOLLIN)

    def _mute(self, back: Handback) -> None:
        """Read nothing more from the connection (its task takes over once its replies are
        sent; or, held, until its parked FETCH is answered)."""
        if back.listening:
            back.listening = False
            assert self._epoll is not None
            self._epoll.unregister(back.fd)

    def _hand_back(self, back: Handback) -> None:
        self._detach(back)
        self._handed_back = True
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
        self._handed_back = True
        trio.lowlevel.reschedule(back.task, outcome.Error(exc))

    async def run(self) -> None:
        """Background task: serve attached connections, a batch per turn, until cancelled."""
        epoll = self._epoll = select.epoll()
        self.running = True
        fired, deadlines = self._fired, self._deadlines
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_when_durable)
                monotonic = time.monotonic
                yielded = monotonic()
                spin_until = 0.0  # no turn yet: nothing to spin for
                while True:
                    ready = epoll.poll(0)
                    if not ready and not fired and spin_until:
                        ready = spin(epoll, spin_until)
                    if ready or fired or deadlines and deadlines[0][0] <= trio.current_time():
                        began = monotonic()
                        self._turn(ready)
                        ended = monotonic()
                        # The next turn at once while `_YIELD_EVERY` has not passed (its poll
                        # finds the sockets ready by then, or the loop spins, then waits,
                        # yielding); then a yield, not a wait: under load the next sockets
                        # are ready by now, and trio's own epoll need not re-arm the loop's
                        # fd every turn.
                        if ended - yielded >= _YIELD_EVERY:
                            await trio.lowlevel.checkpoint()
                            yielded = monotonic()
                        spin_until = self._spin_until(began, ended, yielded)
                    else:
                        spin_until = 0.0
                        with trio.move_on_at(deadlines[0][0] if deadlines else math.inf) as self._sleep:
                            await trio.lowlevel.wait_readable(epoll.fileno())
                        self._sleep = None
                        yielded = monotonic()
        finally:
            self.running = False
            self._sleep = None
            self._return_queued()
            for back in list(self._attached.values()):
                self._hand_back(back)
            fired.clear()
            deadlines.clear()
            self._epoll = None
            epoll.close()

    def _spin_until(self, began: float, ended: float, yielded: float) -> float:
        """Until when to spin after a turn from `began` to `ended` (`spin_deadline`); 0 when
        what comes next is up to another task (module doc)."""
        if self._queued or self._handed_back:
            self._handed_back = False
            return 0.0
        return spin_deadline(began, ended, yielded)

    def _woke(self, parked: Parked) -> None:
        """A parked FETCH was woken (waiters' `on_wake`, inside whatever enqueued the job):
        note it for the loop's next step (`_settle`), and end the loop's idle wait."""
        self._fired.append(parked)
        if self._sleep is not None:
            self._sleep.cancel()

    def _return_queued(self) -> None:
        """Hand every queued batch's replies back to their tasks (which wait for the op log
        themselves, or fail as it did)."""
        while self._queued:
            entries, _ = self._queued.popleft()
            for back, data, position in entries:
                back.queued -= 1
                self._return(back, data, position)

    def _turn(self, ready: list[tuple[int, int]]) -> None:
        attached = self._attached
        #: the connections with replies in this batch, in order (a dict: a parked FETCH
        #: answered in `_settle` may belong to a connection served already)
        served: dict[Handback, None] = {}
        waiters = self.waiters
        waiters.hold()  # a job a FETCH of this turn takes wakes no one (waiters.py)
        try:
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
                    if back.parked is None:
                        self._serve(back, data)
                        served[back] = None
                    else:
                        self._buffer(back, data)
                except Exception as exc:  # one connection's failure closes that connection only
                    self._fail(back, exc)
        finally:
            self.dispatcher.wake(waiters.release())
        if self._fired or self._deadlines:
            self._settle(served)
        if not served:
            return
        self.batches += 1
        self._answer(served)

    def _serve(self, back: Handback, data: bytes) -> None:
        """Run the complete commands `data` finishes, queueing their replies in the connection."""
        back.connection.receive_data(data)
        self._run_commands(back)

    def _run_commands(self, back: Handback) -> None:
        """Run the complete commands buffered in the connection (`run_commands`); park a
        FETCH that must wait."""
        step = self.run_commands(back.connection, back.session)
        if step is Step.ENDED:
            back.done = True
        elif type(step) is Block:  # it waits for a job; the commands after it wait for it
            self._park(back, step, time.perf_counter() if self.timings.enabled else 0.0)

    def run_commands(self, connection: Connection, session: Session, until_full: bool = False) -> Step | Block:
        """Run the complete commands buffered in `connection`, queueing their replies in it:
        the one step of both paths (the loop's, and a task's of its own, server/tcp.py).

        Returns NEED_DATA once none is left, ENDED when the connection ends (END, EOF, a
        too-long line, a server that stops), the `Block` of a FETCH that must wait (the
        commands after it wait for it), or, with `until_full`, FULL once the queued replies
        fill a write (the task sends them before it goes on).
        """
        dispatcher, timings = self.dispatcher, self.timings
        timed, perf_counter = timings.enabled, time.perf_counter
        while (event := connection.next_event()) is not NEED_DATA:
            if type(event) is not wire.Command:  # closed: EOF, or a line too long (its -ERR is queued)
                if not connection.at_eof:
                    self.refusals.refused(session.peer, f"line too long (max {self.max_line} bytes)")
                return Step.ENDED
            if self.stopping.is_set():
                connection.close("shutdown in progress")
                return Step.ENDED
            started = perf_counter() if timed else 0.0
            reply = dispatcher.handle(session, event)
            if timed:
                timings.commands.observe(event.verb, perf_counter() - started)
            if type(reply) is Block:
                return reply
            if reply.data is not None:
                connection.reply(reply.data, reply.position)
            if reply.close:
                connection.close()
                return Step.ENDED
            if until_full and connection.full:
                return Step.FULL
        return Step.NEED_DATA

    def _park(self, back: Handback, block: Block, blocked_at: float) -> None:
        """Park a FETCH that must wait (module doc)."""
        back.fetch, back.blocked_at, back.woken_by = block, blocked_at, None
        back.wait = wait = next(self._waits)
        back.deadline = deadline = trio.current_time() + block.timeout
        heapq.heappush(self._deadlines, (deadline, wait, back))
        back.parked = self.waiters.park(block.wait_on, back, self._on_wake)

    def _buffer(self, back: Handback, data: bytes) -> None:
        """Bytes from a connection whose FETCH is parked: kept for after its reply. At EOF
        with nothing left to answer the peer is gone: the wait ends, without a job."""
        connection = back.connection
        connection.receive_data(data)
        if data:
            if connection.backlogged:  # read on once the FETCH is answered (`_answered`)
                self._mute(back)
                back.held = True
            return
        if connection.at_eof:
            back.done = True
            self._return(back, b"", 0)  # replies still queued go out before the close
        else:  # pipelined commands to answer after the FETCH; the EOF ends it after them
            self._mute(back)

    def _settle(self, served: dict[Handback, None]) -> None:
        """Try again the parked FETCHes woken meanwhile (in this turn, too: a job pushed in
        it goes out with the `+OK`), and answer `$-1` to those whose time is up."""
        fired, deadlines = self._fired, self._deadlines
        while True:
            while fired:
                parked = fired.popleft()
                back = parked.owner
                if parked is back.parked:  # not over meanwhile (peer gone, handed back)
                    try:
                        self._retry(back, served)
                    except Exception as exc:  # one connection's failure closes that connection only
                        self._fail(back, exc)
            now = trio.current_time()
            if not deadlines or deadlines[0][0] > now:
                return
            while deadlines and deadlines[0][0] <= now:
                _, wait, back = heapq.heappop(deadlines)
                if back.parked is not None and back.wait == wait:
                    self.waiters.unpark(back.parked)
                    back.parked = None
                    assert back.fetch is not None
                    try:
                        self._answered(back, self.dispatcher.fetch_timed_out(back.fetch, back.woken_by), served)
                    except Exception as exc:
                        self._fail(back, exc)

    def _retry(self, back: Handback, served: dict[Handback, None]) -> None:
        """A parked FETCH was woken: its job, or it waits on — in its place in its FIFOs,
        ahead of every FETCH that began to wait after it, when nothing is left that it could
        take (another FETCH was quicker, a throttle holds the job back), else parked anew
        (its worker went quiet, a per-worker throttle's queue) — or `$-1` if the server
        stops."""
        assert back.parked is not None and back.fetch is not None
        waiters, dispatcher = self.waiters, self.dispatcher
        if dispatcher.waits_on(back.session, back.fetch) and waiters.rewait(back.parked):
            return  # nothing it could take is left (a quicker FETCH took the job): it waits on
        woken_by = waiters.claim(back.parked)
        back.parked = None
        if woken_by is None:  # the server stops
            reply = dispatcher.fetch_timed_out(back.fetch, None)
        else:
            back.woken_by = woken_by
            result = dispatcher.retry_fetch(back.session, back.fetch, woken_by)
            if type(result) is Block:  # the same wait goes on (its deadline entry stays)
                back.fetch = result
                back.parked = waiters.park(result.wait_on, back, self._on_wake)
                return
            reply = result
        self._answered(back, reply, served)

    def _answered(self, back: Handback, reply: Reply, served: dict[Handback, None]) -> None:
        """Queue a parked FETCH's reply in this batch and run what the peer pipelined after it."""
        if self.timings.enabled:
            self.timings.fetch_wait.observe(time.perf_counter() - back.blocked_at)
        back.fetch = back.woken_by = None
        if reply.data is not None:
            back.connection.reply(reply.data, reply.position)
        served[back] = None
        self._run_commands(back)
        if back.held and not back.done and not back.connection.backlogged:
            back.held = False
            self._listen(back)

    def _answer(self, served: Iterable[Handback]) -> None:
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
        # Replies that wait for nothing (a FETCH's, durability.py `fetch_position`) go out
        # now, unless replies of their connection are queued before them (or the write
        # failed: then everything goes the sender's way, as before).
        now: list[tuple[Handback, bytes, int]] = []
        later: list[tuple[Handback, bytes, int]] = []
        needs = 0
        for entry in outgoing:
            back, _data, position = entry
            if written and not back.queued and (not position or durable.is_synced(position)):
                now.append(entry)
                continue
            later.append(entry)
            back.queued += 1
            if position > needs:
                needs = position
            if back.block is not None or back.done:
                self._mute(back)
        if now:
            self._deliver(now, True)
        if later:
            self._queued.append((later, needs))
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
            for back, _data, _position in outgoing:
                back.queued -= 1
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
