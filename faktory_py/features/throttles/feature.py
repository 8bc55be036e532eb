"""Throttles as a feature: FETCH's gate, the slot timer, INFO and THROTTLE STATUS's data.

A throttled queue at its limit acts as if empty for a FETCH, which goes straight on to its
next queue (strict queue order, protocol/spec.md §11.3); the check is a dictionary lookup
and two counters, never a scan of the queue. A job dropped at FETCH (expired) takes no slot,
since only a reservation does (`occupancy`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...core.registry import Feature, WebPage
from ...store.api import Op, Store
from .occupancy import Limit, Occupancy


class NoSuchThrottle(LookupError):
    """THROTTLE STATUS named a queue that has no throttle."""


class Throttles:
    """The configured throttles over their occupancy index (one per server)."""

    def __init__(self, store: Store, limits: Mapping[str, Limit], warnings: Sequence[str] = ()) -> None:
        self.store = store
        self.occupancy = Occupancy(limits)
        #: what the configuration's throttles gave warnings about (unknown keys, protocol/spec.md
        #: §11.1), as logged at boot: the web UI's Throttles tab shows them beside their entries
        self.warnings = tuple(warnings)
        #: why the last configuration reload was rejected, None after a good one: the old
        #: configuration is still in force, and an operator looking at throttles must see why
        self.reload_error: str | None = None
        store.observe_reservations(self.occupancy)

    @property
    def limits(self) -> dict[str, Limit]:
        return self.occupancy.limits

    def feature(self) -> Feature:
        """How it plugs in: a gate at FETCH and the web UI's Throttles tab (both only when
        throttles are configured, so an unthrottled server's FETCH asks nothing more and its
        menu has no empty tab), a timer for slots that time out, INFO fields and the THROTTLE
        command."""
        configured = bool(self.limits)
        return Feature("throttles", self, gate=self if configured else None, timed=self, info=self,
                       pages=(WebPage("throttles", "Throttles"),) if configured else (),
                       commands=("THROTTLE",))

    def reconfigure(self, limits: Mapping[str, Limit], warnings: Iterable[str], now: float) -> Feature:
        """Put `limits` in force (a configuration reload), with the new configuration's
        `warnings`: the slots are recounted from the live reservations under them. Returns the feature's new record, whose FETCH gate is
        there only if some throttle is now configured (`Registry.replace` puts it in)."""
        self.occupancy.recount(limits, self.store.reservations(), now)
        self.warnings = tuple(warnings)
        return self.feature()

    # --- hooks ------------------------------------------------------------------------

    def admits(self, queue: str, wid: str, now: float) -> bool:
        if queue not in self.occupancy.limits:
            return True
        self.occupancy.release_due(now)
        return self.occupancy.admits(queue, wid)

    def room(self, queue: str, now: float) -> int | None:
        """Free `concurrency` slots; None without that limit (whether a `worker` slot is
        free depends on the fetcher)."""
        limit = self.limits.get(queue)
        if limit is None or limit.concurrency is None:
            return None
        self.occupancy.release_due(now)
        return max(0, limit.concurrency - self.occupancy.in_use(queue))

    def next_due(self) -> float | None:
        return self.occupancy.next_due()

    def run_due(self, now: float) -> list[Op]:
        """Slots whose `timeout` passed end now (waking a waiting FETCH); nothing is journaled,
        the slots being derived from the reservations and the clock."""
        self.occupancy.release_due(now)
        return []

    def info_fields(self) -> dict[str, Any]:
        """`throttles` in INFO's `faktory` block, only when some are configured (an extra key
        under `faktory`: the clients' INFO decoders ignore it)."""
        if not self.limits:
            return {}
        return {"throttles": {queue: self.entry(queue) for queue in self.limits}}

    # --- reading ----------------------------------------------------------------------

    def warnings_about(self, queue: str) -> list[str]:
        """The configuration warnings about `queue`'s entry: their text starts with its key
        (§11.1), and a queue name has no `:`, so no entry gets another's."""
        prefix = f"config: throttles.{queue}:"
        return [warning for warning in self.warnings if warning.startswith(prefix)]

    def entry(self, queue: str) -> dict[str, Any]:
        """One throttle's state (protocol/spec.md §11.4): its limits, slots in use, and how
        many queued jobs wait because its `concurrency` is reached."""
        limit = self.limits[queue]
        in_use = self.occupancy.in_use(queue)
        full = limit.concurrency is not None and in_use >= limit.concurrency
        return {"concurrency": limit.concurrency, "worker": limit.worker, "timeout": limit.timeout,
                "in_use": in_use, "waiting": self.store.queue_size(queue) if full else 0,
                "rate": None, "partitions": 1, "slot_release": "timeout",
                "overdue": self.occupancy.overdue[queue]}

    def status(self, queues: Iterable[str], now: float) -> dict[str, Any]:
        """THROTTLE STATUS: the INFO entries of `queues` (all when none are named) with their
        slots per worker process; raises NoSuchThrottle for a queue without one."""
        self.occupancy.release_due(now)
        names = list(queues) or list(self.limits)
        for queue in names:
            if queue not in self.limits:
                raise NoSuchThrottle(queue)
        status = {}
        for queue in names:
            entry = self.entry(queue)
            entry["by_worker"] = self.occupancy.by_worker(queue)
            entry["by_partition"] = [{"key": None, "in_use": entry["in_use"], "waiting": entry["waiting"],
                                           "grants_in_window": None, "next_grant_at": None}]
            status[queue] = entry
        return status
