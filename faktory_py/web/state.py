"""The web UI's one way into the running server: what its pages read and the actions they take.

`server/app.py` builds a `WebState` from the server's own objects (the manager, the worker
registry, the feature registry, the clock, the journal's durability) and hands it to the web
app, so the web never sees the dispatcher or anything else of `server` or `commands`. Reads
return `views`' page data; every action goes through the one `core.lifecycle.Manager`
method MUTATE uses too, so it is journaled the same way, and returns only once what it
committed is durable (like a `+OK` on the command port).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.lifecycle import Manager
from ..core.registry import Registry, WebPage
from ..core.timings import CommandTimes, Timings
from ..core.workers import WorkerRegistry
from ..features.throttles.feature import Throttles
from ..store.api import AnyOp
from . import views


class Clock(Protocol):
    """Unix time as the server sees it (the command port's clock, so tests can jump it)."""

    def now(self) -> float: ...


@dataclass(eq=False)
class WebState:
    """The server's state as the web pages see it (see module doc)."""

    manager: Manager
    workers: WorkerRegistry
    #: the server's features: the pages they add (`pages`) and the objects those pages show
    features: Registry
    clock: Clock
    #: the INFO document at a time, exactly as the command port answers it (the server passes
    #: the dispatcher's, so the two cannot differ)
    info: Callable[[float], dict[str, Any]]
    #: why actions are refused right now (the journal cannot be written), or None
    refusal: Callable[[], str | None]
    #: writes the journal up to a position and waits for the fsync policy: an action's
    #: answer does not go out through the command port's send, which writes it there
    durable: Callable[[int], Awaitable[None]]
    #: the durations the server observes (`/metrics`)
    timings: Timings = field(default_factory=lambda: Timings(CommandTimes(())))
    #: this node's role with the op log in Redis (primary, standby, fenced); `/health/primary`
    role: Callable[[], str] = lambda: "primary"

    def now(self) -> float:
        return self.clock.now()

    # --- reads ----------------------------------------------------------------------------

    def history(self, days: int, now: float) -> list[tuple[str, int, int]]:
        return views.history(self.manager.store.daily_counts(), days, now)

    def busy(self, number: int) -> views.Busy:
        throttles = self.features.find(Throttles)
        slots = frozenset() if throttles is None else throttles.slot_holders(self.now())
        return views.busy(self.workers.workers, self.manager.store, number, slots)

    def queue_rows(self, now: float) -> list[views.QueueRow]:
        state = self.manager.store.statistics()
        return views.queue_rows(state, self.manager.latency(list(state.queues), now))

    def has_queue(self, name: str) -> bool:
        return self.manager.store.has_queue(name)

    def is_paused(self, name: str) -> bool:
        return self.manager.store.is_paused(name)

    def queue_page(self, name: str, number: int) -> views.Page[Mapping[str, Any]]:
        return views.queue_page(self.manager.store, name, number)

    def set_page(self, set_name: str, number: int) -> views.Page[views.Entry]:
        return views.set_page(self.manager.store, set_name, number)

    def set_entry(self, set_name: str, key: str) -> views.Entry | None:
        return views.set_entry(self.manager.store, set_name, key)

    @property
    def feature_pages(self) -> list[WebPage]:
        """The menu's feature entries, from the records in force (a reload may change them)."""
        return [page for feature in self.features for page in feature.pages if page.listed]

    # --- actions --------------------------------------------------------------------------

    def signal_workers(self, signal: str, wid: str) -> None:
        """Tell one worker process (or, for `all`, every one) to go quiet or terminate on
        its next BEAT; nothing journaled."""
        workers = self.workers.workers
        for worker in list(workers.values()) if wid == "all" else [workers.get(wid)]:
            if worker is not None:
                worker.signal(signal)

    async def pause(self, name: str) -> None:
        await self.durable(self.manager.pause([name]))

    async def resume(self, name: str) -> None:
        await self.durable(self.manager.resume([name]))

    async def remove_queue(self, name: str) -> None:
        await self.durable(self.manager.remove([name], self.now()))

    async def delete_queued(self, name: str, jids: Sequence[str]) -> None:
        await self.durable(self.manager.delete_queued(name, jids, self.now()))

    async def end_reservations(self, action: str, jids: Sequence[str]) -> None:
        """Requeue, kill or discard the reservations of `jids` (MUTATE on `working`); jids
        no longer reserved are skipped."""
        await self.durable(self.manager.end_reservations(action, jids, self.now()))

    async def commit(self, ops: Sequence[AnyOp]) -> None:
        """A feature's action (cron's "enqueue now"): its ops, committed and durable."""
        await self.durable(self.manager.store.commit(ops))

    async def change_set(self, set_name: str, action: str, keys: Sequence[str]) -> None:
        """Retry / add to queue, kill or delete the entries `keys` name (`["all"]`: every
        entry). Keys whose entry moved on meanwhile are skipped; ClientError when the
        action does not apply to the set (killing the dead)."""
        jids = None if list(keys) == ["all"] else views.resolve_keys(self.manager.store, set_name, keys)
        now = self.now()
        if action in ("retry", "add_to_queue"):
            position = self.manager.enqueue_entries(set_name, jids, now)
        elif action == "kill":
            position = self.manager.kill_entries(set_name, jids, now)
        else:
            position = self.manager.delete_entries(set_name, jids, now)
        await self.durable(position)
