"""The trio adapter: listeners, connections, timers, and the server's life from start to stop.

Everything is started by one `serve(config, task_status=...)`; it reports a `Server`
handle (bound addresses, `shutdown()`) through `task_status.started`, so tests run it in
their own nursery on port 0. A connection task only moves bytes: it feeds the sans-io
`LineReader`, runs the handshake, hands commands to the `Dispatcher`, and writes each
reply whole. Sends are not wrapped in a scope each (for a client that waits for every
reply, a shielded timeout scope per send cost as much as the PUSH itself): a connection
is only ever cancelled to be closed, so a reply cut short is followed by the close, never
by another reply; one watchdog task closes connections whose sends stall.

Background tasks (timers, compaction, the reaper, the watchdog, the web UI) run under
`supervised`: a failure is logged and the task restarted, never the end of the server.
The server ends in two ways only: a requested stop (`Server.shutdown`, graceful: see
protocol/spec.md §8), after which serve() returns, or a journal that failed, after which
it raises JournalFailed (the CLI's exit status 1).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from . import wire
from .admission import Admission
from .batches import Batches
from .clock import Clock
from .commands import WOULD_BLOCK, Dispatcher, ServerStats, Session
from .config import Config, split_binding
from .handshake import Handshake, HandshakeFailed, Hello
from .expiry import ExpiringJobs
from .fdlimit import socket_budget
from .manager import Extension, Manager
from .store.durability import DurableJournal, JournalFailed
from .store.journal import Journal
from .store.memory import MemoryStore
from .tracking import JobTracking
from .unique import UniqueJobs
from .waiters import QueueWaiters
from .workers import WorkerRegistry

log = logging.getLogger("faktory_py.server")

_RECV_CHUNK = 65536
_SEND_TIMEOUT = 10.0
#: INFO's server.description: Ruby's and Go's client tests run their Enterprise tests only
#: when it says so. `[faktory] description = "..."` in conf.d/*.toml overrides it.
ENTERPRISE_DESCRIPTION = "Faktory Enterprise"
_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)
#: password checks run at once (each in steps, see `_Connections._verify`)
_CONCURRENT_PASSWORD_CHECKS = 2
#: a background task that keeps failing is restarted after 1, 2, 4 … at most this many seconds
_MAX_RESTART_DELAY = 30.0


@dataclass(eq=False)
class Server:
    """Handle on a running server."""

    addresses: list[tuple[str, int]]
    dispatcher: Dispatcher
    durable: DurableJournal
    #: where the web UI answers (e.g. `http://127.0.0.1:7420`); empty when it is off
    web_urls: list[str] = field(default_factory=list)
    _stop: trio.Event = field(default_factory=trio.Event)

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def shutdown(self) -> None:
        """Stop accepting, refuse further commands, flush the journal and return from serve."""
        self._stop.set()


class DueTimer:
    """Sleeps until the earliest scheduled/retry/dead/reservation entry is due.

    The store pokes it whenever an entry is added, so a new earlier entry cuts the sleep
    short; scheduled jobs fire on time instead of on Faktory's 5-second poll.

    It never ends the server: a job it cannot move is quarantined by the manager, and any
    other failure is logged and retried after a pause that doubles up to `MAX_BACKOFF`
    (no busy loop on something that keeps failing).
    """

    FIRST_BACKOFF = 0.1
    MAX_BACKOFF = 30.0

    def __init__(self, manager: Manager, clock: Clock,
                 writable: Callable[[], Awaitable[None]] | None = None) -> None:
        self.manager = manager
        self.clock = clock
        #: awaited before moving anything: while the journal cannot be written, timers wait
        self.writable = writable
        self._target = math.inf
        self._wake = trio.Event()

    def poke(self, score: float) -> None:
        if score < self._target:
            self._wake.set()

    async def run(self) -> None:
        backoff = self.FIRST_BACKOFF
        while True:
            try:
                await self._step()
            except Exception:
                log.exception("the due timer failed; trying again in %.1f s", backoff)
                await trio.sleep(backoff)
                backoff = min(2 * backoff, self.MAX_BACKOFF)
            else:
                backoff = self.FIRST_BACKOFF

    async def _step(self) -> None:
        """Wait until something is due (or a poke), or run what is due."""
        due = self.manager.next_due()
        self._target = math.inf if due is None else due
        self._wake = trio.Event()
        if due is None or due > self.clock.now():
            # 1 ms late so float rounding can never leave "now" just short of "due"
            deadline = math.inf if due is None else self.clock.trio_time(due) + 0.001
            with trio.move_on_at(deadline):
                await self._wake.wait()
            return
        if self.writable is not None:
            await self.writable()
        self.manager.run_due(self.clock.now())


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    files = config.tls_files
    if files is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(files[1]), keyfile=str(files[0]))
    return context


async def open_listeners(binding: str, default_port: int) -> list[trio.SocketListener]:
    """Listen like Faktory: `localhost` means both loopbacks, `:port` every interface."""
    host, port = split_binding(binding, default_port)
    if host == "localhost":
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        try:
            bound = listeners[0].socket.getsockname()[1]
            listeners += await trio.open_tcp_listeners(bound, host="::1")
        except OSError:
            log.debug("no IPv6 loopback; listening on 127.0.0.1 only")
        return listeners
    return await trio.open_tcp_listeners(port, host=host or None)


def enterprise_extensions(store: MemoryStore, toml: dict[str, Any] | None = None) -> list[Extension]:
    """Faktory Enterprise's features, built into faktory_py (faktory-protocol.md §0, §6).

    They attach their own ops to the store, so they must exist before its journal is
    replayed. Order matters only for FETCH: expiry comes first, so an expired job is dropped
    before the others see it (they get `on_drop` instead). `toml` is the parsed conf.d
    (`[batches]` settings).
    """
    return [ExpiringJobs(store), UniqueJobs(store), JobTracking(store),
            Batches.from_config(store, toml or {})]


def load_store(config: Config, store: MemoryStore | None = None) -> tuple[MemoryStore, Journal]:
    """Open the data directory and rebuild the store by replaying its journal.

    `store` is an empty store with the extensions already attached; by default a new one
    with `enterprise_extensions`.
    """
    journal = Journal.open(config.data_dir, fsync=config.fsync)
    if store is None:
        store = MemoryStore()
        enterprise_extensions(store, config.toml)
    replayed = 0
    for record in journal.replay():
        for op in record:
            store.apply(op)
        replayed += 1
    log.info("replayed %d journal records from %s", replayed, config.data_dir)
    return store, journal


class _Connections:
    """Accepts and runs client connections for one server.

    Which sockets it keeps is admission.py's rule. A HELLO's password check is SHA-256
    run thousands of times (~3.5 ms of CPU, which no thread can take off the event loop):
    it runs in steps of a few hundred rounds with a checkpoint between them, and at most
    `_CONCURRENT_PASSWORD_CHECKS` at once (others wait their turn, in order), so a flood of
    wrong passwords adds well under a millisecond to any other connection's turn, however
    many arrive; it can only slow down other handshakes, which the handshake budget bounds.
    """

    def __init__(self, config: Config, dispatcher: Dispatcher, durable: DurableJournal) -> None:
        self.config = config
        self.dispatcher = dispatcher
        #: written before any reply is sent (see store/durability.py)
        self.durable = durable
        #: set by a requested stop: every command from then on is refused
        self.stopping = trio.Event()
        self.admission = Admission(config.max_connections, config.max_handshakes, socket_budget())
        self._password_checks = trio.CapacityLimiter(_CONCURRENT_PASSWORD_CHECKS)
        self._refused = 0
        self._refusal_logged_at = -math.inf
        #: set when the last connection has closed
        self._none_open = trio.Event()
        self._ids = itertools.count(1)
        #: each open connection's stream → its cancel scope
        self._scopes: dict[trio.abc.Stream, trio.CancelScope] = {}
        #: the sends in progress: stream → when it must have finished
        self._sending: dict[trio.abc.Stream, float] = {}
        self._some_sending = trio.Event()

    async def _send(self, stream: trio.abc.Stream, data: bytes) -> None:
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
                reader = wire.LineReader(self.config.max_line)
                session = await self._handshake(stream, reader, scope)
                if session is not None:
                    await self._serve_commands(stream, reader, session)
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

    async def _verify(self, handshake: Handshake, line: bytes) -> Hello:
        """`Handshake.receive_hello`, with the password hash run in steps (see the class doc)."""
        hello = handshake.parse_hello(line)
        hashed = handshake.password_hash(hello)
        if hashed is not None:
            async with self._password_checks:
                while not hashed.done:
                    hashed.step()
                    await trio.sleep(0)
            handshake.authenticate(hello, hashed)
        return hello

    async def _handshake(
        self, stream: trio.abc.Stream, reader: wire.LineReader, scope: trio.CancelScope
    ) -> Session | None:
        """Greet, read HELLO within the deadline, register a worker; None ⇒ close."""
        handshake = Handshake(self.config.password)
        hello = None
        with trio.move_on_after(self.config.timers.handshake_timeout):
            await self._send(stream, handshake.greeting)
            try:
                line = await _read(stream, reader, reader.next_line)
            except wire.ProtocolError:  # an endless first line: nothing to answer
                return None
            if line is None:
                return None
            try:
                hello = await self._verify(handshake, line)
            except HandshakeFailed as failed:
                if failed.reply is not None:
                    await self._send(stream, failed.reply)
                return None
        if hello is None:
            return None
        session = Session(next(self._ids), hello.wid)
        workers = self.dispatcher.workers
        if hello.is_worker:
            # Before the +OK: a client that has read it may BEAT or read INFO's Workers.size
            # on another connection at once, and must find the process registered.
            now = self.dispatcher.clock.now()
            session.worker = workers.register(hello, session.conn_id, scope.cancel, now)
        accepted = False
        try:
            await self._send(stream, wire.OK)
            if not self.admission.identify(stream):
                count = self.admission.identified + 1
                await self._send(stream, wire.error(f"too many connections: {count}"))
                return None
            accepted = True
            return session
        finally:
            if not accepted and session.worker is not None:
                workers.unregister(session.wid, session.conn_id)

    async def _serve_commands(self, stream: trio.abc.Stream, reader: wire.LineReader, session: Session) -> None:
        """Answer commands in order until END, EOF or a protocol error.

        Replies to pipelined commands (already buffered when the previous one is done) are
        collected and written together: one send for many replies.
        """
        replies = _ReplyBuffer(functools.partial(self._send, stream),
                               functools.partial(self._write_journal, stream, reader))
        try:
            while True:
                try:
                    command = reader.next_command()
                except wire.ProtocolError as exc:
                    replies.add(wire.error(str(exc)))
                    return
                if command is None:
                    await replies.flush()
                    if reader.at_eof:
                        return
                    reader.receive_data(await stream.receive_some(_RECV_CHUNK))
                    continue
                if self.stopping.is_set():
                    replies.add(wire.error("shutdown in progress"))
                    return
                before = self.durable.appended
                reply = await self.dispatcher.handle(session, command, may_block=False)
                if reply is WOULD_BLOCK:  # a FETCH must wait: answer what came before it first
                    await replies.flush()
                    reply = await _unless_peer_leaves(stream, reader, self.dispatcher.handle(session, command),
                                                      self.stopping)
                if reply is None:
                    return
                replies.add(reply, self.durable.appended if self.durable.appended != before else 0)
                if replies.full:
                    await replies.flush()
        finally:
            # Shielded, so a closing connection still gets the replies it has earned, but
            # bounded by its own deadline: the watchdog's cancel cannot reach in here.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + _SEND_TIMEOUT):
                await replies.flush()

    async def _write_journal(self, stream: trio.abc.Stream, reader: wire.LineReader, needs: int) -> bool:
        """Write the journal before a send; False if the replies must be dropped instead.

        While the journal cannot be written, replies that depend on commit `needs` wait
        for it, or until the peer leaves (then they are never sent).
        """
        if self.durable.write_through(needs):
            return True
        await _unless_peer_leaves(stream, reader, self.durable.wait_written(needs))
        return self.durable.write_through(needs)


class _ReplyBuffer:
    """Replies waiting to be written in one send (bounded, flushed before any blocking).

    The journal is written first: the ops behind these replies (and anything else
    committed meanwhile) reach the file before anyone can see an answer that relies on them.
    While the journal cannot be written, replies that depend on a commit not in the file
    (`needs`: the last commit queued while their command ran) wait for it.
    """

    LIMIT = 64 * 1024

    def __init__(self, send: Callable[[bytes], Awaitable[None]],
                 write_journal: Callable[[int], Awaitable[bool]]) -> None:
        self.send = send
        self.write_journal = write_journal
        self.parts: list[bytes] = []
        self.size = 0
        self.needs = 0

    @property
    def full(self) -> bool:
        return self.size >= self.LIMIT

    def add(self, reply: bytes, needs: int = 0) -> None:
        self.parts.append(reply)
        self.size += len(reply)
        self.needs = max(self.needs, needs)

    async def flush(self) -> None:
        if self.parts:
            data = b"".join(self.parts)
            needs, self.needs = self.needs, 0
            self.parts.clear()
            self.size = 0
            if await self.write_journal(needs):
                await self.send(data)


async def _read(stream: trio.abc.Stream, reader: wire.LineReader, parse):  # type: ignore[no-untyped-def]
    """Receive until `parse()` yields something; None at end of stream."""
    while True:
        item = parse()
        if item is not None:
            return item
        if reader.at_eof:
            return None
        reader.receive_data(await stream.receive_some(_RECV_CHUNK))


async def _unless_peer_leaves(
    stream: trio.abc.Stream, reader: wire.LineReader, work: Awaitable[Any],
    stopping: trio.Event | None = None,
) -> Any:
    """Run a blocking command, abandoning it (None: close) if the peer disconnects meanwhile,
    or, given `stopping`, answering `$-1` (no job) if the server is asked to stop.

    Without this a FETCH waiting for work would reserve the next job for a client that
    is gone, and that job would only come back when its reservation expired. Bytes the
    peer pipelines meanwhile are buffered in `reader` for the next command.
    """
    reply: Any = None

    async def watch() -> None:
        try:
            while data := await stream.receive_some(_RECV_CHUNK):
                reader.receive_data(data)
            reader.receive_data(b"")
        except (*_PEER_GONE, wire.ProtocolError):
            return  # a broken peer, or a too-long next line the next read reports
        if reader.at_eof:  # gone, and no pipelined command left to answer
            nursery.cancel_scope.cancel()

    async def stop() -> None:
        nonlocal reply
        await stopping.wait()
        reply = wire.NULL
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        if stopping is not None:
            nursery.start_soon(stop)
        reply = await work
        nursery.cancel_scope.cancel()
    return reply


async def supervised(name: str, run: Callable[..., Awaitable[None]], *args: Any,
                     task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a background task for the server's lifetime: a failure is logged and the task
    restarted, never the end of the server (house rule: no timer or task may stop it).

    The pause before a restart doubles while the task keeps failing (1 s … 30 s), so a bug
    that fails at once cannot spin the CPU; a run that lasted longer than the pause
    starts the count again. A task that reports `task_status` (the web UI) must get that far
    the first time: failing earlier is a start-up failure and is raised.
    """
    status = _StartedOnce(task_status) if task_status is not trio.TASK_STATUS_IGNORED else None
    delay = 1.0
    while True:
        began = trio.current_time()
        try:
            await (run(*args) if status is None else run(*args, task_status=status))
            return
        except Exception:
            if status is not None and status.waiting:
                raise
            log.exception("background task %s failed; restarting it in %.0f s", name, delay)
        if trio.current_time() - began > delay:
            delay = 1.0
        await trio.sleep(delay)
        delay = min(2 * delay, _MAX_RESTART_DELAY)


class _StartedOnce:
    """Passes a task's first `started()` on; after that the task is running and reports nothing."""

    def __init__(self, inner: trio.TaskStatus[Any]) -> None:
        self.inner = inner
        self.waiting = True

    def started(self, value: Any = None) -> None:
        if self.waiting:
            self.waiting = False
            self.inner.started(value)


async def serve(config: Config, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a server until `Server.shutdown()`; reports the Server once listening."""
    store = MemoryStore()
    extensions = enterprise_extensions(store, config.toml)
    store, journal = load_store(config, store)
    durable = DurableJournal(journal, config.fsync, store.snapshot, config.compact_min_bytes)
    clock = Clock()
    manager = Manager(store, extensions=extensions)
    waiters = QueueWaiters()
    timer = DueTimer(manager, clock, durable.wait_writable)
    store.sink, store.on_enqueue, store.on_due = durable.append, waiters.notify, timer.poke
    workers = WorkerRegistry(config.timers.heartbeat_timeout)
    dispatcher = Dispatcher(manager, workers, clock, durable.synced, waiters,
                            ServerStats(started_at=clock.now()), config.timers.fetch_timeout)
    dispatcher.refusal = durable.refusal
    dispatcher.description = str(config.toml.get("faktory", {}).get("description", ENTERPRISE_DESCRIPTION))
    for extension in extensions:
        extension.register(dispatcher)
    connections = _Connections(config, dispatcher, durable)
    try:
        async with trio.open_nursery() as background:
            # run_fsync ends only when the journal failed for good, which stops the server
            background.start_soon(durable.run_fsync)
            background.start_soon(supervised, "compaction", durable.run_compaction)
            background.start_soon(supervised, "journal retry", durable.run_retry)
            background.start_soon(supervised, "due timer", timer.run)
            background.start_soon(supervised, "worker reaper", _reap_workers, workers, clock,
                                  config.timers.worker_reap_every)
            background.start_soon(supervised, "send watchdog", connections.watch_sends)
            web_urls: list[str] = []
            if config.web_enabled:
                # Imported here: Starlette and Hypercorn cost ~0.3 s of start-up, which a
                # server without a web UI (most test servers, benchmarks) should not pay.
                # Started before the command port listens: once that accepts, the UI answers.
                from .web.app import WebContext
                from .web.serve import serve_web

                web_urls = await background.start(supervised, "web UI", serve_web, WebContext(dispatcher, config, {
                    "Command port": config.binding, "Web UI": config.web_binding}, durable.durable))
                log.info("web UI on %s", ", ".join(web_urls))
            listeners = await open_listeners(config.binding, 7419)
            context = _ssl_context(config)
            if context is not None:
                listeners = [trio.SSLListener(l, context, https_compatible=False) for l in listeners]
            addresses = [_address(l) for l in listeners]
            server = Server(addresses, dispatcher, durable, web_urls)
            background.start_soon(_stop_when_failed, durable, server)
            async with trio.open_nursery() as conn_nursery:
                accept_scope = trio.CancelScope()

                async def accept() -> None:
                    with accept_scope:
                        await trio.serve_listeners(connections.handle, listeners, handler_nursery=conn_nursery)

                conn_nursery.start_soon(accept)
                log.info("listening on %s", ", ".join(f"{h}:{p}" for h, p in addresses))
                task_status.started(server)
                await server._stop.wait()
                log.info("shutting down: refusing further commands for up to %g s", config.timers.shutdown_grace)
                connections.stopping.set()
                accept_scope.cancel()
                for listener in listeners:
                    await listener.aclose()
                with trio.move_on_after(config.timers.shutdown_grace):
                    await connections.wait_closed()
                conn_nursery.cancel_scope.cancel()
            background.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await durable.aclose()
    if durable.failed.is_set():
        raise JournalFailed(f"stopped: the journal in {config.data_dir} could not be written (see the log)")


async def _stop_when_failed(durable: DurableJournal, server: Server) -> None:
    await durable.failed.wait()
    server.shutdown()


def _address(listener: trio.abc.Listener) -> tuple[str, int]:
    inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
    host, port = inner.socket.getsockname()[:2]
    return host, port


async def _reap_workers(workers: WorkerRegistry, clock: Clock, every: float) -> None:
    """Drop workers that stopped beating (and close their connections)."""
    while True:
        await trio.sleep(every)
        for worker in workers.reap(clock.now()):
            log.info("worker %s missed its heartbeat; closed %d connections", worker.wid, len(worker.connections))
