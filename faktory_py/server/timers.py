"""The server's timed work: the due timer, the worker reaper, and `supervised`, which keeps
every background task alive (a failure is logged and the task restarted, never the end of
the server)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..core.lifecycle import Manager
from ..core.workers import WorkerRegistry
from .clock import Clock

log = logging.getLogger("faktory_py.server")

#: a background task that keeps failing is restarted after 1, 2, 4 … at most this many seconds
_MAX_RESTART_DELAY = 30.0


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

    def __init__(self, clock: Clock, writable: Callable[[], Awaitable[None]] | None = None) -> None:
        self.clock = clock
        #: awaited before moving anything: while the journal cannot be written, timers wait
        self.writable = writable
        self._target = math.inf
        self._wake = trio.Event()

    def poke(self, score: float) -> None:
        if score < self._target:
            self._wake.set()

    async def run(self, manager: Manager) -> None:
        """Move what falls due in `manager`'s store, for good. (The manager comes here, not
        to the constructor: the store it runs on is built with this timer's `poke`.)"""
        backoff = self.FIRST_BACKOFF
        while True:
            try:
                await self._step(manager)
            except Exception:
                log.exception("the due timer failed; trying again in %.1f s", backoff)
                await trio.sleep(backoff)
                backoff = min(2 * backoff, self.MAX_BACKOFF)
            else:
                backoff = self.FIRST_BACKOFF

    async def _step(self, manager: Manager) -> None:
        """Wait until something is due (or a poke), or run what is due."""
        due = manager.next_due()
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
        manager.run_due(self.clock.now())


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


async def reap_workers(workers: WorkerRegistry, clock: Clock, every: float,
                       lost: Callable[[str, float], object] | None = None,
                       writable: Callable[[], Awaitable[None]] | None = None) -> None:
    """Drop workers that stopped beating (and close their connections); `lost` is then told
    of each (wid, now), to end what must not outlive the worker (the throttles' `on_worker_lost`,
    protocol/spec.md §11.7), once the journal is `writable`."""
    while True:
        await trio.sleep(every)
        for worker in workers.reap(clock.now()):
            log.info("worker %s missed its heartbeat; closed %d connections", worker.wid, len(worker.connections))
            if lost is not None:
                if writable is not None:
                    await writable()
                lost(worker.wid, clock.now())
