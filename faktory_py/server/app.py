"""The composition root: wires store, journal, features, dispatcher and listeners, and runs the
server's life from start to stop.

Everything is started by one `serve(config, task_status=...)`; it reports a `Server`
handle (bound addresses, `shutdown()`) through `task_status.started`, so tests run it in
their own nursery on port 0. Connections are `tcp.py`'s, timers `timers.py`'s.

Background tasks (timers, compaction, the reaper, the watchdog, the web UI) run under
`supervised`: a failure is logged and the task restarted, never the end of the server.
The server ends in two ways only: a requested stop (`Server.shutdown`, graceful: see
protocol/spec.md §8), after which serve() returns, or a journal that failed, after which
it raises JournalFailed (the CLI's exit status 1).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from ..commands.dispatch import Dispatcher
from ..commands.features import register_feature_commands
from ..config import (
    DEFAULT_PORT, BatchesConfig, Config, CronConfig, ResultsConfig, ThrottlesConfig, WorkflowsConfig, split_binding,
)
from ..core.hooks import InfoHook
from ..core.info import ServerStats
from ..core.lifecycle import Manager
from ..core.registry import Feature, Registry
from ..core.timings import CommandTimes, Histogram, Timings
from ..core.workers import WorkerRegistry
from ..features.batches.feature import Batches
from ..features.cron.feature import Cron
from ..features.expiry import ExpiringJobs
from ..features.statsd import StatsdMetrics
from ..features.throttles.feature import Throttles
from ..features.tracking import JobTracking
from ..features.unique import UniqueJobs
from ..features.workflows.feature import Settings, Workflows
from ..store.api import Op
from ..store.journal import Journal
from ..store.memory import MemoryStore
from ..store.oplog import OpLog
from .allocator import release_free_heap
from .clock import Clock
from .connprocs import ConnectionProcesses, tls_context
from .durability import DurableJournal, JournalFailed
from .gate import Gate, Lookup
from .ioloop import IOLoop
from .reload import ConfigReload, throttle_rules, wake_all_queues
from .statsd import UdpSender, run_statsd
from .tcp import Connections
from .timers import DueTimer, reap_workers, supervised
from .waiters import QueueWaiters

log = logging.getLogger("faktory_py.server")


@dataclass(eq=False)
class Server:
    """Handle on a running server."""

    addresses: list[tuple[str, int]]
    dispatcher: Dispatcher
    durable: OpLog
    #: SIGHUP's work: puts a re-read configuration's throttles and cron in force (server/reload.py)
    config_reload: ConfigReload
    #: the durations the server observes (`/metrics`)
    timings: Timings
    #: serves the plain TCP connections between their waits (server/ioloop.py)
    io_loop: IOLoop
    #: where the web UI answers (e.g. `http://127.0.0.1:7420`); empty when it is off
    web_urls: list[str] = field(default_factory=list)
    #: where `/metrics` alone answers, without auth (`[faktory_py.metrics] binding`); empty when unset
    metrics_urls: list[str] = field(default_factory=list)
    #: the connection processes (`--io-processes`); None: this process does the I/O
    io_processes: ConnectionProcesses | None = None
    _stop: trio.Event = field(default_factory=trio.Event)

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def shutdown(self) -> None:
        """Stop accepting, refuse further commands, flush the journal and return from serve."""
        self._stop.set()

    def reload(self, read: Callable[[], Config]) -> bool:
        """Re-read the configuration with `read` and put its throttles and cron entries in
        force; False (the error logged) when `read` raises ConfigError, and then nothing changes."""
        return self.config_reload(read)


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


def enterprise_features(store: MemoryStore, batches: BatchesConfig = BatchesConfig(),
                        throttles: ThrottlesConfig = ThrottlesConfig(), cron: CronConfig = CronConfig(),
                        workflows: WorkflowsConfig = WorkflowsConfig(),
                        results: ResultsConfig = ResultsConfig()) -> Registry:
    """Faktory Enterprise's features, built into faktory_py, and job dependencies
    (protocol/spec.md §9–§12, §14).

    They attach their own ops (and throttles their index of reservations) to the store, so
    they must exist before its journal is replayed. The order is behaviour: every hook runs
    in it. Expiry comes first, so an expired job is dropped at FETCH before the others see
    it (they get `on_drop` instead), and its `expires_in` is an `expires_at` before
    workflows looks at a job (a held job released after its deadline is dropped as
    expired). Workflows comes after unique (a duplicate is refused as NOTUNIQUE before its
    dependencies are looked at) and before batches: the dependents it kills are endings the
    batches' end hook is told of in the same step (`hooks.Ends`), and a held job is counted by
    every push hook like a queued one. Workflows reads the batches' moments (`hooks.BatchStates`)
    for `{"bid"}` dependencies and is told of new ones (`hooks.BatchHook`).
    """
    tracking = JobTracking(store, results.max_bytes)
    batch_records = Batches(store, batches.policy, batches.uncommitted_ttl, batches.retention)
    return Registry([ExpiringJobs(store).feature(), UniqueJobs(store).feature(), tracking.feature(),
                     Workflows(store, workflow_settings(workflows, results), tracking, batch_records).feature(),
                     batch_records.feature(),
                     Throttles(store, throttle_rules(throttles), throttles.warnings).feature(),
                     Cron(store, cron.entries, cron.warnings).feature()])


def workflow_settings(workflows: WorkflowsConfig, results: ResultsConfig) -> Settings:
    """The workflows feature's view of `[faktory_py.workflows]` and `[faktory_py.results]`."""
    return Settings(workflows.dependency_key, workflows.unknown_timeout, workflows.max_deps, results.ttl,
                    results.max_bytes, results.inject_max_bytes, results.from_track_desc)


def configured_features(store: MemoryStore, config: Config) -> Registry:
    """`enterprise_features` as `config` configures them."""
    return enterprise_features(store, config.batches, config.throttles, config.cron, config.workflows, config.results)


def replay_journal(journal: Journal, store: MemoryStore) -> None:
    """Rebuild `store` (empty, its features attached) from the journal."""
    replayed = 0
    for record in journal.replay():
        for op in record:
            store.apply(op)
        replayed += 1
    log.info("replayed %d journal records from %s", replayed, journal.directory)


def load_store(config: Config) -> tuple[MemoryStore, Journal]:
    """Open the data directory and rebuild a store, with `enterprise_features` and no
    observers, by replaying its journal (to look at a data directory without serving it)."""
    journal = Journal.open(config.data_dir, fsync=config.fsync)
    store = MemoryStore()
    configured_features(store, config)
    replay_journal(journal, store)
    return store, journal


@dataclass(eq=False)
class Backend:
    """Where the op log lives, as serve() drives it: the journal in the data directory or a
    stream in Redis (server/ha/). Everything else in the server sees only `log`."""

    log: OpLog
    #: rebuilds the (empty, features attached) store from the log
    load: Callable[[MemoryStore], Awaitable[None]]
    #: returns once this node may append (Redis: a standby until it holds the lease), having
    #: called its second argument, which wires the store's live sink and hooks
    take_over: Callable[[MemoryStore, Callable[[], None]], Awaitable[None]]
    #: the log's background tasks; the last ends only when the log failed for good
    tasks: Callable[[trio.Nursery, MemoryStore], None]
    #: a clean stop: flush (and compact, or give the lease up)
    aclose: Callable[[MemoryStore], Awaitable[None]]
    #: what failed, for the error serve() raises when `log.failed` stopped it
    what: str
    #: the log's durations for `/metrics`: writes (appends), fsyncs, compactions (snapshots)
    histograms: tuple[Histogram, Histogram, Histogram]
    #: primary, standby or fenced (`/health/primary`)
    role: Callable[[], str] = lambda: "primary"
    #: extra INFO fields (`faktory.ha` with Redis)
    info: InfoHook | None = None
    #: whether the command port listens before `take_over` returns (Redis: a standby
    #: forwards or parks clients, server/gate.py)
    standby_listens: bool = False
    #: the current primary's advertised `host:port`, for a standby to forward clients to
    primary: Lookup | None = None


@asynccontextmanager
async def open_backend(config: Config) -> AsyncIterator[Backend]:
    """The journal in `config.data_dir`, or with `--store redis://…` the op log in Redis."""
    if config.redis is not None:
        # Imported here: coredis is only needed (and only loaded) with --store redis://.
        from .ha.backend import open_redis_backend

        node_id = config.redis.node_id or f"{socket.gethostname()}:{_port_of(config.binding)}"
        async with open_redis_backend(config.redis, node_id, config.compact_min_bytes) as redis:
            oplog = redis.oplog
            yield Backend(oplog, redis.load, redis.take_over, redis.tasks, lambda store: oplog.aclose(),
                          f"the op log in {config.redis.safe_url} fenced this node",
                          (oplog.write_times, oplog.fsync_times, oplog.compaction_times),
                          lambda: oplog.role.role, redis, standby_listens=True, primary=redis.primary_address)
        return
    journal = Journal.open(config.data_dir, fsync=config.fsync)
    durable = DurableJournal(journal, config.fsync, config.compact_min_bytes)

    async def load(store: MemoryStore) -> None:
        replay_journal(journal, store)

    async def take_over(store: MemoryStore, wire: Callable[[], None]) -> None:
        wire()

    def tasks(background: trio.Nursery, store: MemoryStore) -> None:
        # run_fsync ends only when the journal failed for good, which stops the server
        background.start_soon(durable.run_fsync)
        background.start_soon(supervised, "compaction", durable.run_compaction, store.snapshot)
        background.start_soon(supervised, "journal retry", durable.run_retry)

    yield Backend(durable, load, take_over, tasks, lambda store: durable.aclose(store.snapshot),
                  f"the journal in {config.data_dir} could not be written",
                  (durable.write_times, durable.fsync_times, durable.compaction_times))


def _port_of(binding: str) -> int:
    return split_binding(binding, DEFAULT_PORT)[1]


async def serve(config: Config, *, clock: Clock | None = None,
                task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a server until `Server.shutdown()`; reports the Server once listening. `clock`
    is the wall clock's reading (a test's, set to a chosen date), by default the host's."""
    for warning in (*config.throttles.warnings, *config.cron.warnings, *config.statsd.warnings):
        log.warning("%s", warning)
    async with open_backend(config) as backend:
        await _serve(config, backend, clock or Clock(), task_status)


async def _serve(config: Config, backend: Backend, clock: Clock, task_status: trio.TaskStatus[Server]) -> None:
    durable = backend.log
    waiters = QueueWaiters(wake_all=wake_all_queues(config.throttles))
    timer = DueTimer(clock, durable.wait_writable)
    store = MemoryStore(sink=_refuse_commit)
    features = configured_features(store, config)
    statsd: tuple[StatsdMetrics, UdpSender] | None = None
    if config.statsd.location is not None:
        sender = UdpSender(config.statsd.buffer_size)
        statsd = StatsdMetrics(sender, config.statsd.namespace, config.statsd.tags, config.metrics.max_queues), sender
        features = Registry([*features, statsd[0].feature()])
    if backend.info is not None:
        features = Registry([*features, Feature("ha", backend.info, info=backend.info)])
    throttles, cron = features.find(Throttles), features.find(Cron)
    assert throttles is not None and cron is not None
    await backend.load(store)
    manager = Manager(store, features=features)
    workers = WorkerRegistry(config.timers.heartbeat_timeout)

    def worker_lost(wid: str, now: float) -> None:
        """A reaped worker's throttled jobs fail (`on_worker_lost`, protocol/spec.md §11.7)."""
        manager.worker_lost(wid, throttles.lost(wid), now)

    dispatcher = Dispatcher(manager, workers, clock, durable, waiters, ServerStats(started_at=clock.now()),
                            config.timers.fetch_timeout)
    dispatcher.refusal = durable.refusal
    dispatcher.fetch_position = durable.fetch_position
    dispatcher.description = config.description
    register_feature_commands(dispatcher, features)
    config_reload = ConfigReload(config, manager, features, throttles, cron, waiters, timer, clock)
    journal_write, journal_fsync, compaction = backend.histograms
    timings = Timings(CommandTimes(dispatcher.verbs()), journal_write=journal_write, journal_fsync=journal_fsync,
                      compaction=compaction, enabled=config.metrics.timings)
    connections = Connections(config, dispatcher, durable, waiters, timings)

    def wire() -> None:
        """The store's, cron's and throttles' live hooks: from here on this node commits."""
        store.wire(durable.append, waiters.notify, timer.poke)
        cron.wake = timer.poke
        throttles.wake = waiters.notify

    try:
        async with trio.open_nursery() as background:
            web_urls, metrics_urls = await _start_web(background, config, manager, workers, features, clock,
                                                      dispatcher, durable, timings, backend.role)
            gate = Gate(connections.handle, backend.primary if config.tls is None else None)
            async with trio.open_nursery() as link_nursery:
                processes: ConnectionProcesses | None = None
                async with trio.open_nursery() as conn_nursery:
                    accept_scope = trio.CancelScope()
                    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []

                    async def accept() -> None:
                        nonlocal listeners, processes
                        if config.io_processes:  # connection processes accept (server/connprocs.py)
                            sockets = await open_listeners(config.binding, DEFAULT_PORT)
                            listeners = list(sockets)
                            processes = ConnectionProcesses(config.io_processes, [s.socket for s in sockets],
                                                            config.tls)
                            await link_nursery.start(processes.run, gate.handle, conn_nursery)
                            return
                        listeners = await _listen(config)
                        conn_nursery.start_soon(_accept, accept_scope, gate.handle, listeners, conn_nursery)

                    if backend.standby_listens:  # clients are forwarded or parked meanwhile (server/gate.py)
                        await accept()
                    await backend.take_over(store, wire)
                    backend.tasks(background, store)
                    background.start_soon(supervised, "heap release", release_free_heap, durable)
                    background.start_soon(supervised, "due timer", timer.run, manager)
                    background.start_soon(supervised, "worker reaper", reap_workers, workers, clock,
                                          config.timers.worker_reap_every, worker_lost, durable.wait_writable)
                    background.start_soon(supervised, "send watchdog", connections.watch_sends)
                    background.start_soon(supervised, "I/O loop", connections.loop.run)
                    if statsd is not None:
                        background.start_soon(supervised, "statsd", run_statsd, config.statsd, statsd[1],
                                              _statsd_report(statsd[0], config, manager, dispatcher, clock))
                    gate.serving.set()
                    if not listeners:
                        await accept()
                    addresses = [_address(l) for l in listeners]
                    server = Server(addresses, dispatcher, durable, config_reload, timings, connections.loop,
                                    web_urls, metrics_urls, processes)
                    background.start_soon(_stop_when_failed, durable, server)
                    log.info("listening on %s%s", ", ".join(f"{h}:{p}" for h, p in addresses),
                             f" ({config.io_processes} connection processes)" if processes else "")
                    task_status.started(server)
                    await server._stop.wait()
                    log.info("shutting down: refusing further commands for up to %g s",
                             config.timers.shutdown_grace)
                    connections.stop()
                    accept_scope.cancel()
                    if processes is not None:
                        processes.stop_accepting()
                    for listener in listeners:
                        await listener.aclose()
                    with trio.move_on_after(config.timers.shutdown_grace):
                        await connections.wait_closed()
                    conn_nursery.cancel_scope.cancel()
                if processes is not None:  # the clients' last replies are on the links now
                    await processes.aclose()
                link_nursery.cancel_scope.cancel()
            background.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await backend.aclose(store)
    if durable.failed.is_set():
        raise JournalFailed(f"stopped: {backend.what} (see the log)")


async def _accept(scope: trio.CancelScope, handler: Callable[[trio.abc.Stream], Awaitable[None]],
                  listeners: list[trio.abc.Listener[trio.abc.Stream]], conn_nursery: trio.Nursery) -> None:
    """Accept on `listeners` in this process (no connection processes) until `scope` is cancelled."""
    with scope:
        await trio.serve_listeners(handler, listeners, handler_nursery=conn_nursery)


async def _listen(config: Config) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """The command port's listeners (TLS-wrapped when configured)."""
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(await open_listeners(config.binding, DEFAULT_PORT))
    if config.tls is not None:
        context = tls_context(config.tls)
        listeners = [trio.SSLListener(l, context, https_compatible=False) for l in listeners]  # type: ignore[misc]
    return listeners


async def _start_web(background: trio.Nursery, config: Config, manager: Manager, workers: WorkerRegistry,
                     features: Registry, clock: Clock, dispatcher: Dispatcher, durable: OpLog, timings: Timings,
                     role: Callable[[], str]) -> tuple[list[str], list[str]]:
    """Start the web UI and the `/metrics` listener when configured; returns their URLs.
    They start before the command port listens (once that accepts, the UI answers), and
    before a standby takes over: its UI shows the state it follows and refuses actions."""
    web_urls: list[str] = []
    metrics_urls: list[str] = []
    if not (config.web_enabled or config.metrics.binding is not None):
        return web_urls, metrics_urls
    # Imported here: Starlette and Hypercorn cost ~0.3 s of start-up, which a server
    # without a web UI (most test servers, benchmarks) should not pay.
    from ..web.serve import serve_metrics, serve_web
    from ..web.state import WebState

    state = WebState(manager, workers, features, clock, dispatcher.info, durable.refusal, durable.durable,
                     timings, role)
    if config.web_enabled:
        bindings = {"Command port": config.binding, "Web UI": config.web_binding}
        web_urls = await background.start(supervised, "web UI", serve_web, state, config, bindings)
        log.info("web UI on %s", ", ".join(web_urls))
    if config.metrics.binding is not None:
        metrics_urls = await background.start(supervised, "metrics", serve_metrics, state, config,
                                              config.metrics.binding)
        log.info("metrics (no auth) on %s", ", ".join(f"{url}/metrics" for url in metrics_urls))
    return web_urls, metrics_urls


def _refuse_commit(ops: list[Op]) -> int:
    """The store's sink until `Backend.take_over` wires the live one: a node that commits
    before then (a standby following the log) is a bug."""
    raise AssertionError(f"{len(ops)} ops committed before this node may append")


def _statsd_report(statsd: StatsdMetrics, config: Config, manager: Manager, dispatcher: Dispatcher,
                   clock: Clock) -> Callable[[], None]:
    """The periodic statsd report, read from what INFO reads."""
    latency_queues = None if config.statsd.queue_latency_all else config.statsd.queue_latency

    def report() -> None:
        now = clock.now()
        statsd.report(dispatcher.info(now), lambda names: manager.latency(names, now), latency_queues)
    return report


async def _stop_when_failed(durable: OpLog, server: Server) -> None:
    await durable.failed.wait()
    server.shutdown()


def _address(listener: trio.abc.Listener) -> tuple[str, int]:
    inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
    host, port = inner.socket.getsockname()[:2]
    return host, port
