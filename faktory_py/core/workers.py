"""The worker-process registry behind HELLO `wid`, BEAT and the Busy page.

A worker process may open many connections with one `wid`; they share one entry, so a
quiet/terminate state reaches every one of them (Faktory only blocks the first). The
registry lives in memory only: workers re-register by reconnecting after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

#: running → quiet → terminate; nothing goes backwards.
STATES = ("running", "quiet", "terminate")


class Identity(Protocol):
    """What a worker said about itself in its HELLO (`wire.handshake.Hello` is one)."""

    @property
    def wid(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def rss_kb(self) -> int: ...


@dataclass(eq=False)
class Worker:
    """One worker process (all connections sharing a wid)."""

    wid: str
    hostname: str
    pid: int
    labels: tuple[str, ...]
    started_at: float
    last_heartbeat: float
    rss_kb: int = 0
    state: str = "running"
    #: connection id → callable that closes that connection
    connections: dict[int, Callable[[], None]] = field(default_factory=dict)

    def signal(self, state: str) -> None:
        """Move the state forward (quiet/terminate); other values never go backwards."""
        if state in STATES and STATES.index(state) > STATES.index(self.state):
            self.state = state


class WorkerRegistry:
    """wid → Worker, with heartbeat expiry."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.workers: dict[str, Worker] = {}
        self.reaped = 0

    def __len__(self) -> int:
        return len(self.workers)

    def get(self, wid: str) -> Worker | None:
        return self.workers.get(wid)

    def register(self, hello: Identity, conn_id: int, close: Callable[[], None], now: float) -> Worker:
        """Add a connection to its wid's entry (creating it), counting as a heartbeat."""
        worker = self.workers.get(hello.wid)
        if worker is None:
            worker = Worker(hello.wid, hello.hostname, hello.pid, hello.labels, now, now, hello.rss_kb)
            self.workers[hello.wid] = worker
        worker.last_heartbeat = now
        worker.connections[conn_id] = close
        return worker

    def unregister(self, wid: str, conn_id: int) -> None:
        """A connection closed; the process is gone when its last connection is."""
        worker = self.workers.get(wid)
        if worker is None:
            return
        worker.connections.pop(conn_id, None)
        if not worker.connections:
            del self.workers[wid]

    def beat(self, wid: str, state: str, rss_kb: int | None, now: float) -> Worker | None:
        """Record a heartbeat; None if the wid is not registered."""
        worker = self.workers.get(wid)
        if worker is None:
            return None
        worker.last_heartbeat = now
        if rss_kb is not None:
            worker.rss_kb = rss_kb
        worker.signal(state)
        return worker

    def reap(self, now: float) -> list[Worker]:
        """Remove workers silent for longer than the timeout and close their connections."""
        cutoff = now - self.timeout
        dead = [w for w in self.workers.values() if w.last_heartbeat < cutoff]
        for worker in dead:
            del self.workers[worker.wid]
            for close in list(worker.connections.values()):
                close()
        self.reaped += len(dead)
        return dead
