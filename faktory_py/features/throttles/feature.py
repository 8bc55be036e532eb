"""Throttles as a feature: FETCH's gate, the slot and rate-window timers, INFO and THROTTLE
STATUS's data.

A throttled queue at its limit (slots, or grants in its rate window) acts as if empty for a
FETCH, which goes straight on to its next queue (strict queue order, protocol/spec.md §11.3);
the check is dictionary lookups and counters, never a scan of the queue. A job dropped at
FETCH (expired) takes no slot and no grant, since only a reservation does (`occupancy`, `rate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...core.registry import Feature, WebPage
from ...store.api import Op, Store
from ...util.timefmt import format_time
from .occupancy import Limit, Occupancy
from .rate import RateWindows


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
        self.rate = RateWindows({queue: limit.rate for queue, limit in limits.items()
                                  if limit.rate is not None})
        store.observe_reservations(self.occupancy)
        store.observe_reservations(self.rate)
        store.register_state(self.rate)

    @property
    def limits(self) -> dict[str, Limit]:
        return self.occupancy.limits

    def feature(self) -> Feature:
        """How it plugs in: a gate at FETCH (only when throttles are configured, so an
        unthrottled server's FETCH asks nothing more), the web UI's Throttles tab (always
        routed, since a reload may configure throttles, but listed only while `tab_shown`,
        so an unthrottled server's menu has no empty tab), a timer for slots that time out,
        INFO fields and the THROTTLE command."""
        return Feature("throttles", self, gate=self if self.limits else None, timed=self, info=self,
                       pages=(WebPage("throttles", "Throttles", listed=self.tab_shown),),
                       commands=("THROTTLE",))

    @property
    def tab_shown(self) -> bool:
        """The Throttles tab is there when throttles are configured or the last reload was
        rejected (its error must be seen, even on a server that has no throttle yet)."""
        return bool(self.limits) or self.reload_error is not None

    def reconfigure(self, limits: Mapping[str, Limit], warnings: Iterable[str], now: float) -> Feature:
        """Put `limits` in force (a configuration reload), with the new configuration's
        `warnings`: the slots are recounted from the live reservations under them, and the
        rate windows keep the grants that happened (`RateWindows.reconfigure`). Returns the
        feature's new record, whose FETCH gate is there only if some throttle is now
        configured (`Registry.replace` puts it in)."""
        self.occupancy.recount(limits, self.store.reservations(), now)
        self.rate.reconfigure({queue: limit.rate for queue, limit in limits.items() if limit.rate is not None},
                              self.store.reservations())
        self.warnings = tuple(warnings)
        return self.feature()

    # --- hooks ------------------------------------------------------------------------

    def admits(self, queue: str, wid: str, now: float) -> bool:
        if queue not in self.occupancy.limits:
            return True
        self.occupancy.release_due(now)
        return self.occupancy.admits(queue, wid) and self.rate.room(queue, now) != 0

    def room(self, queue: str, now: float) -> int | None:
        """Free `concurrency` slots, or grants left in the rate window if fewer; None without
        either limit (whether a `worker` slot is free depends on the fetcher)."""
        limit = self.limits.get(queue)
        if limit is None:
            return None
        rooms = [] if limit.rate is None else [self.rate.room(queue, now)]
        if limit.concurrency is not None:
            self.occupancy.release_due(now)
            rooms.append(max(0, limit.concurrency - self.occupancy.in_use(queue)))
        return min(rooms, default=None)

    def next_due(self) -> float | None:
        dues = [due for due in (self.occupancy.next_due(), self.rate.next_due()) if due is not None]
        return min(dues, default=None)

    def run_due(self, now: float) -> list[Op]:
        """Slots whose `timeout` passed end now and full rate windows open now (each waking a
        waiting FETCH); nothing is journaled, both being derived from the reservations and
        the clock."""
        self.occupancy.release_due(now)
        self.rate.run_due(now)
        return []

    def lost(self, wid: str) -> list[str]:
        """The jids `wid` holds under a throttle with `on_worker_lost = "fail"`: what fails
        when that worker process is reaped for missing heartbeats (protocol/spec.md §11.7).
        A scan of the reservations, once per reaped worker, never on FETCH."""
        limits = self.limits
        return [res.job["jid"] for res in self.store.reservations()
                if res.wid == wid and (limit := limits.get(res.job["queue"])) is not None
                and limit.on_worker_lost == "fail"]

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
        many queued jobs wait because its `concurrency` is reached or its rate window is full;
        `rate` is its rate limit (the grants in window need the clock: THROTTLE STATUS shows
        them)."""
        limit = self.limits[queue]
        in_use = self.occupancy.in_use(queue)
        full = limit.concurrency is not None and in_use >= limit.concurrency or self.rate.full(queue)
        rate = None if limit.rate is None else {"limit": limit.rate.limit, "period": limit.rate.period}
        return {"concurrency": limit.concurrency, "worker": limit.worker, "timeout": limit.timeout,
                "in_use": in_use, "waiting": self.store.queue_size(queue) if full else 0,
                "rate": rate, "partitions": 1, "slot_release": limit.slot_release,
                "overdue": self.occupancy.overdue[queue]}

    def status(self, queues: Iterable[str], now: float) -> dict[str, Any]:
        """THROTTLE STATUS: the INFO entries of `queues` (all when none are named) with their
        slots per worker process and the last rejected reload's error (in every entry: the
        reply maps queue names to entries, so a key of its own could clash with a queue, and
        a typed decoder of the map would choke on a value that is not an entry); raises
        NoSuchThrottle for a queue without one."""
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
                                      **self._grants(queue, now)}]
            entry["reload_error"] = self.reload_error
            status[queue] = entry
        return status

    def slot_holders(self, now: float) -> frozenset[str]:
        """The jids whose reservation holds a slot at `now` (the Busy page marks them)."""
        self.occupancy.release_due(now)
        return frozenset(self.occupancy.holders())

    def _grants(self, queue: str, now: float) -> dict[str, Any]:
        """`grants_in_window` and `next_grant_at` (RFC 3339, when the window is full) of a
        rate-limited queue; null for one without a rate limit."""
        if self.limits[queue].rate is None:
            return {"grants_in_window": None, "next_grant_at": None}
        next_at = self.rate.next_grant_at(queue, now)
        return {"grants_in_window": self.rate.in_window(queue, now),
                "next_grant_at": None if next_at is None else format_time(next_at)}
