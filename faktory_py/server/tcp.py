"""Client connections over trio: accept, handshake, commands, replies.

A connection task only moves bytes and waits: it feeds the sans-io `Connection`
(wire/connection.py: greeting, HELLO, commands, reply batching) what it reads and writes
what it hands out, runs the password hash in steps, hands commands to the synchronous
`Dispatcher`, makes the journal position each `Reply` names durable, and waits on the fetch
waiters for a `Block`. Sends are not wrapped in a scope each (for a client that waits for
every reply, a shielded timeout scope per send cost as much as the PUSH itself): a
connection is only ever cancelled to be closed, so a reply cut short is followed by the
close, never by another reply; one watchdog task (`Connections.watch_sends`) closes
connections whose sends stall.

An identified plain TCP connection (not TLS) that waits for its next command is served by
the batched I/O loop (server/ioloop.py: one task, one epoll, one journal write per turn for
every connection; a FETCH that must wait stays there, parked): its task attaches the socket
and sleeps until the loop hands it back for what only the task does — waiting (a full
socket buffer, a degraded journal, and a parked FETCH's rest of time then), closing,
failing. A TLS connection's task does all of it on its own path.
"""

from __future__ import annotations

import itertools
import logging
import math
import ssl
import time
from collections.abc import Awaitable
from functools import partial
from typing import Any

import trio

from .. import wire
from ..commands.dispatch import Block, Dispatcher, Reply, Session
from ..config import Config
from ..core.timings import Timings
from ..wire.connection import NEED_DATA, Connection, HelloReceived
from .admission import Admission
from ..store.oplog import OpLog
from .fdlimit import socket_budget
from .ioloop import IOLoop, Step, stdlib_socket
from .refusals import RefusalLog, peer_host
from .waiters import QueueWaiters

log = logging.getLogger("faktory_py.server")

_RECV_CHUNK = 65536
_SEND_TIMEOUT = 10.0
_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)
#: password checks run at once (each in steps, see `Connections._verify`)
_CONCURRENT_PASSWORD_CHECKS = 2


class Connections:
    """Accepts and runs client connections for one server.

    Which sockets it keeps is admission.py's rule. A HELLO's password check is SHA-256
    run thousands of times (~3.5 ms of CPU, which no thread can take off the event loop):
    it runs in steps of a few hundred rounds with a checkpoint between them, and at most
    `_CONCURRENT_PASSWORD_CHECKS` at once (others wait their turn, in order), so a flood of
    wrong passwords adds well under a millisecond to any other connection's turn, however
    many arrive; it can only slow down other handshakes, which the handshake budget bounds.
    """

    def __init__(self, config: Config, dispatcher: Dispatcher, durable: OpLog,
                 waiters: QueueWaiters, timings: Timings) -> None:
        self.config = config
        self.dispatcher = dispatcher
        #: each command's service time and each blocked FETCH's wait are observed here
        self.timings = timings
        #: written before any reply is sent (see server/durability.py)
        self.durable = durable
        #: where a FETCH the dispatcher answered with a `Block` waits (in its task, or
        #: parked in the I/O loop)
        self.waiters = waiters
        #: set by a requested stop: every command from then on is refused
        self.stopping = trio.Event()
        self.admission = Admission(config.max_connections, config.max_handshakes, socket_budget())
        self._password_checks = trio.CapacityLimiter(_CONCURRENT_PASSWORD_CHECKS)
        self._refused = 0
        self._refusal_logged_at = -math.inf
        #: what clients are refused, logged with their address (rate-limited per host)
        self.refusals = RefusalLog()
        dispatcher.refused = lambda session, reply: self.refusals.refused(session.peer, _text(reply))
        #: serves the identified plain TCP connections between their waits (its `run` is a
        #: background task of server/app.py)
        self.loop = IOLoop(dispatcher, durable, self.stopping, timings, self.refusals, config.max_line, waiters)
        #: set when the last connection has closed
        self._none_open = trio.Event()
        self._ids = itertools.count(1)
        #: each open connection's stream → its cancel scope
        self._scopes: dict[trio.abc.Stream, trio.CancelScope] = {}
        #: the sends in progress: stream → when it must have finished
        self._sending: dict[trio.abc.Stream, float] = {}
        self._some_sending = trio.Event()

    def stop(self) -> None:
        """A requested stop: every command from now on is refused, and every FETCH waiting
        for a job answers `$-1` (now, or as soon as it would wait)."""
        self.stopping.set()
        self.waiters.stop()

    async def _send(self, stream: trio.abc.Stream, data: bytes | memoryview) -> None:
        """Write one whole reply, watched by `watch_sends`."""
        if not self._sending:
            self._some_sending.set()
        self._sending[stream] = trio.current_time() + _SEND_TIMEOUT
        try:
            await stream.send_all(data)
        finally:
            del self._sending[stream]

    async def watch_sends(self) -> None:
        """Background task: close connections whose peer stopped reading its replies.

        It sleeps while nothing is being sent, so an idle server (or a test jumping a mock
        clock over months) does not wake it every second.
        """
        while True:
            if not self._sending:
                self._some_sending = trio.Event()
                await self._some_sending.wait()
            await trio.sleep(_SEND_TIMEOUT / 10)
            now = trio.current_time()
            for stream, deadline in list(self._sending.items()):
                if now > deadline:
                    log.info("closing a connection that stopped reading its replies")
                    self._scopes[stream].cancel()

    async def handle(self, stream: trio.abc.Stream) -> None:
        peer = peer_host(stream)
        scope = trio.CancelScope()
        if not self.admission.arrive(stream, scope.cancel):
            self._log_refusal()
            with trio.move_on_after(1):
                try:
                    await stream.send_all(wire.error("too many connections"))
                except _PEER_GONE:
                    pass
            await trio.aclose_forcefully(stream)
            return
        stats = self.dispatcher.stats
        stats.connections += 1
        session: Session | None = None
        self._scopes[stream] = scope
        if self._none_open.is_set():
            self._none_open = trio.Event()
        try:
            with scope:
                connection = Connection(self.config.password, self.config.max_line)
                session = await self._handshake(stream, connection, scope, peer)
                if session is not None:
                    await self._serve_commands(stream, connection, session)
        except _PEER_GONE:
            pass
        except Exception:
            # One connection's failure must never take the whole server down with it.
            log.exception("connection task failed; closing the connection")
        finally:
            stats.connections -= 1
            del self._scopes[stream]
            if not self._scopes:
                self._none_open.set()
            self.admission.leave(stream)
            if session is not None and session.wid:
                self.dispatcher.workers.unregister(session.wid, session.conn_id)
            await trio.aclose_forcefully(stream)

    def _log_refusal(self) -> None:
        """A warning for the first refusal, then at most one a minute with the count."""
        self._refused += 1
        now = trio.current_time()
        if now >= self._refusal_logged_at + 60:
            log.warning("refused %d connection(s): %d sockets open, the most the open-file limit allows "
                        "(raise the hard limit)", self._refused, self.admission.max_sockets)
            self._refused, self._refusal_logged_at = 0, now

    async def wait_closed(self) -> None:
        """Return once no connection is open."""
        if self._scopes:
            await self._none_open.wait()

    async def _handshake(self, stream: trio.abc.Stream, connection: Connection,
                         scope: trio.CancelScope, peer: str) -> Session | None:
        """Greet, read HELLO within the deadline, register a worker; None ⇒ close.

        A HELLO's password hash runs in steps (see the class doc).
        """
        hello = None
        with trio.move_on_after(self.config.timers.handshake_timeout):
            await self._send(stream, connection.greeting())
            event = await _next_event(stream, connection)
            if type(event) is HelloReceived:
                hashed = event.password
                if hashed is not None:
                    async with self._password_checks:
                        while not hashed.done:
                            hashed.step()
                            await trio.sleep(0)
                if connection.authenticate(event):
                    hello = event.hello
            data, _ = connection.data_to_send()
            if data:  # a wrong password's -ERR (nothing else in a handshake is answered)
                self.refusals.refused(peer, _text(data))
                await self._send(stream, data)
        if hello is None:
            connection.close()
            return None
        session = Session(next(self._ids), hello.wid, peer=peer)
        workers = self.dispatcher.workers
        if hello.is_worker:
            # Before the +OK: a client that has read it may BEAT or read INFO's Workers.size
            # on another connection at once, and must find the process registered.
            now = self.dispatcher.clock.now()
            session.worker = workers.register(hello, session.conn_id, scope.cancel, now)
        accepted = False
        try:
            await self._send(stream, connection.accept())
            if not self.admission.identify(stream):
                connection.close(f"too many connections: {self.admission.identified + 1}")
                self.refusals.refused(peer, f"too many connections (max_connections {self.admission.max_connections})")
                await self._send(stream, connection.data_to_send()[0])
                return None
            accepted = True
            return session
        finally:
            if not accepted and session.worker is not None:
                workers.unregister(session.wid, session.conn_id)

    async def _serve_commands(self, stream: trio.abc.Stream, connection: Connection, session: Session) -> None:
        """Answer commands in order until END, EOF or a protocol error.

        Each command runs through the I/O loop's step (`IOLoop.run_commands`), which both
        paths share. Replies to pipelined commands (already buffered when the previous one
        is done) are collected and written together: one send for many replies
        (wire/connection.py). Between commands a plain TCP connection is served by the I/O
        loop (module doc).
        """
        loop, sock = self.loop, stdlib_socket(stream)
        try:
            while True:
                step = loop.run_commands(connection, session, until_full=True)
                if step is Step.ENDED:
                    return
                if step is Step.NEED_DATA:
                    # A flush that waited for the op log read on meanwhile (to notice a peer
                    # that leaves): a pipelined command may be complete in the buffer now.
                    if await self._flush(stream, connection):
                        continue
                    if sock is None or not loop.running:
                        connection.receive_data(await stream.receive_some(_RECV_CHUNK))
                        continue
                    back = await loop.attach(sock, connection, session)
                    if back.unsent and not await self._send_durable(stream, connection, back.unsent, back.needs):
                        return
                    if back.done:
                        return
                    if back.block is None:
                        continue
                    blocked, step = back.block  # its FETCH was parked when the loop handed it back
                elif step is Step.FULL:
                    await self._flush(stream, connection)
                    continue
                else:  # a FETCH must wait: answer what came before it first
                    blocked = time.perf_counter() if self.timings.enabled else 0.0
                if not _queue(connection, await self._blocked(stream, connection, session, step, blocked)):
                    return
        finally:
            # Shielded, so a closing connection still gets the replies it has earned, but
            # bounded by its own deadline: the watchdog's cancel cannot reach in here.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + _SEND_TIMEOUT):
                await self._flush(stream, connection)

    async def _blocked(self, stream: trio.abc.Stream, connection: Connection, session: Session,
                       block: Block, blocked: float) -> Reply | None:
        """The reply to a FETCH that must wait (`block`), once the replies before it went
        out; None if the peer left meanwhile. `blocked`: when it began, for the timings."""
        await self._flush(stream, connection)
        reply = await _unless_peer_leaves(stream, connection, self._wait_for_job(session, block))
        if reply is not None and self.timings.enabled:
            self.timings.fetch_wait.observe(time.perf_counter() - blocked)
        return reply

    async def _wait_for_job(self, session: Session, block: Block) -> Reply:
        """Wait as `block` says, trying the FETCH again after every wake, until it gets a
        job (whose reply then waits for the fsync policy, shielded: the job is reserved,
        the reply must go out) or its time is up, or the server stops (`$-1`: the waiters
        end every wait then, `QueueWaiters.stop`)."""
        dispatcher = self.dispatcher
        woken_by: str | None = None
        result: Reply | Block = block
        with trio.move_on_after(block.timeout):
            while True:
                result = dispatcher.retry_fetch(session, result, woken_by)
                if type(result) is not Block:
                    break
                woken = await self.waiters.wait(result.wait_on, partial(dispatcher.waits_on, session, result))
                if woken is None:  # the server stops
                    return dispatcher.fetch_timed_out(result, None)
                woken_by = woken
        if type(result) is Block:
            return dispatcher.fetch_timed_out(result, woken_by)
        if result.position:
            with trio.CancelScope(shield=True):
                await self.durable.synced(result.position)
        return result

    async def _flush(self, stream: trio.abc.Stream, connection: Connection) -> bool:
        """Send the queued replies in one write (`_send_durable`); False if none were queued."""
        data, needs = connection.data_to_send()
        if not data:
            return False
        await self._send_durable(stream, connection, data, needs)
        return True

    async def _send_durable(self, stream: trio.abc.Stream, connection: Connection,
                            data: bytes | memoryview, needs: int) -> bool:
        """Send replies once commit `needs` is in the journal (and the ops behind them, and
        anything else committed meanwhile, reach the file before anyone can see an answer
        that relies on them) and synced as the fsync policy says: one fsync for every
        command they answer. False if the peer left while the journal could not be written
        (the replies are dropped)."""
        if not await self._write_journal(stream, connection, needs):
            return False
        if needs:
            await self.durable.synced(needs)
        await self._send(stream, data)
        return True

    async def _write_journal(self, stream: trio.abc.Stream, connection: Connection, needs: int) -> bool:
        """Write the journal before a send; False if the replies must be dropped instead.

        While the journal cannot be written, replies that depend on commit `needs` (the
        last commit queued while their commands ran) wait for it, or until the peer
        leaves (then they are never sent).
        """
        if self.durable.write_through(needs):
            return True
        await _unless_peer_leaves(stream, connection, self.durable.wait_written(needs))
        return self.durable.write_through(needs)


def _queue(connection: Connection, reply: Reply | None) -> bool:
    """Queue a command's reply; False when the connection ends with it (END), or without it
    (None: the peer left while its FETCH waited)."""
    if reply is None:
        return False
    if reply.data is not None:
        connection.reply(reply.data, reply.position)
    if reply.close:
        connection.close()
        return False
    return True


def _text(reply: bytes) -> str:
    """A `-ERR …` reply as a log line shows it."""
    return reply.decode(errors="replace").rstrip()


async def _next_event(stream: trio.abc.Stream, connection: Connection) -> Any:
    """The connection's next event, receiving as long as it needs data."""
    while (event := connection.next_event()) is NEED_DATA:
        connection.receive_data(await stream.receive_some(_RECV_CHUNK))
    return event


async def _unless_peer_leaves(stream: trio.abc.Stream, connection: Connection, work: Awaitable[Any]) -> Any:
    """Run a blocking command, abandoning it (None: close) if the peer disconnects meanwhile.

    Without this a FETCH waiting for work would reserve the next job for a client that
    is gone, and that job would only come back when its reservation expired. Bytes the
    peer pipelines meanwhile are buffered in `connection` for the next command, until
    they fill more than a line may take (`Connection.backlogged`): then the watch stops
    reading, and the peer's sends wait in the kernel until the command is answered (a
    peer that leaves after that is noticed when its reply is sent).
    """
    reply: Any = None

    async def watch() -> None:
        try:
            while data := await stream.receive_some(_RECV_CHUNK):
                connection.receive_data(data)
                if connection.backlogged:
                    return
            connection.receive_data(b"")
        except (*_PEER_GONE, wire.ProtocolError):
            return  # a broken peer, or a too-long next line the next read reports
        if connection.at_eof:  # gone, and no pipelined command left to answer
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        reply = await work
        nursery.cancel_scope.cancel()
    return reply
