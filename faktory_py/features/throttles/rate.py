"""Rate limits of throttles: at most `limit` FETCH grants of a queue in any `period` seconds.

A sliding-window log, exact (protocol/spec.md §11.5): a grant at `t` is allowed iff fewer
than `limit` grants of the same throttle happened in `(t − period, t]`. A grant is a
reservation beginning, at its `reserved_at`: the store calls `reserved` where it creates
one, live and in journal replay alike (`store.api.ReservationObserver`), so the window needs
no record of its own in the journal and a restart rebuilds it. Grants are never refunded
(`ended` does nothing): starts are counted, not running jobs; each retry attempt is a new
grant.

The one thing the reservations cannot tell is a grant whose reservation ended before a
snapshot (journal compaction keeps only live reservations). So the window is also state in
the store's care (`store.api.StateOwner`): a snapshot holds each throttle's grants, as
`throttle_grants` ops. Those include the grants of reservations still live, which the
snapshot restores too; a grant is kept once per (reserved_at, jid), whatever the order the
two arrive in.

Only the last `limit` grants matter (the oldest of them decides whether the window is
full), so a throttle keeps at most that many, oldest first. When a grant fills the window,
its next opening (oldest grant + period) is timed work: the due timer runs `run_due` exactly
then, which wakes a waiting FETCH (`on_open`) — a timer, never a poll.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from ...store.api import Op, Reservation

GRANTS_OP = "throttle_grants"


class Rate(NamedTuple):
    """`rate = { limit = L, period = P }` of a throttle."""

    limit: int
    #: seconds
    period: float


class RateWindows:
    """The grants in window per rate-limited queue (a `ReservationObserver` and a `StateOwner`)."""

    op_names = (GRANTS_OP,)

    def __init__(self, rates: Mapping[str, Rate]) -> None:
        self.rates = dict(rates)
        #: called with a queue when its full window opens (the server wakes a waiting FETCH)
        self.on_open: Callable[[str], None] | None = None
        #: queue → its last `limit` grants as (reserved_at, jid), oldest first
        self._grants: dict[str, deque[tuple[float, str]]] = {queue: deque() for queue in self.rates}
        #: queue → when its full window next opens (only queues whose window is full)
        self._openings: dict[str, float] = {}

    def reconfigure(self, rates: Mapping[str, Rate], live: Iterable[Reservation]) -> None:
        """Put `rates` in force (a configuration reload, protocol/spec.md §11.6). A queue
        that keeps a rate keeps its grants, which happened, down to its new limit; a queue
        that gains one counts the grants of its reservations still live, as it would after
        a restart; a queue that loses its rate forgets its window."""
        kept = self._grants
        self.rates = dict(rates)
        self._grants = {queue: kept.get(queue, deque()) for queue in self.rates}
        self._openings.clear()
        for res in live:
            if res.job["queue"] in self.rates and res.job["queue"] not in kept:
                self._grant(res.job["queue"], res.reserved_at, res.job["jid"])
        for queue, grants in self._grants.items():
            rate = self.rates[queue]
            while len(grants) > rate.limit:
                grants.popleft()
            if grants and len(grants) == rate.limit:
                self._openings[queue] = grants[0][0] + rate.period

    # --- grants: reservations beginning (the store calls these) -------------------------

    def reserved(self, res: Reservation) -> float | None:
        return self._grant(res.job["queue"], res.reserved_at, res.job["jid"])

    def ended(self, jid: str) -> None:
        """Nothing: a grant is never refunded."""

    def cleared(self) -> None:
        self.flush()

    def _grant(self, queue: str, at: float, jid: str) -> float | None:
        """Record a grant; returns when the window it filled opens, if it filled it."""
        rate = self.rates.get(queue)
        if rate is None:
            return None
        grants = self._grants[queue]
        grant = (at, jid)
        if not grants or grant > grants[-1]:
            grants.append(grant)
        else:  # a snapshot's grant, or one of a reservation it restores: out of order
            index = bisect.bisect_left(grants, grant)
            if index < len(grants) and grants[index] == grant:
                return None
            grants.insert(index, grant)
        self._forget_before(queue, grants[-1][0])
        while len(grants) > rate.limit:
            grants.popleft()
        if len(grants) < rate.limit:
            self._openings.pop(queue, None)
            return None
        opening = grants[0][0] + rate.period
        self._openings[queue] = opening
        return opening

    def _forget_before(self, queue: str, now: float) -> None:
        """Drop the grants out of the window at `now` (they count for no later grant)."""
        grants = self._grants[queue]
        period = self.rates[queue].period
        while grants and grants[0][0] + period <= now:
            grants.popleft()

    # --- FETCH and the due timer --------------------------------------------------------

    def room(self, queue: str, now: float) -> int | None:
        """How many more grants `queue` may have at `now` (None: no rate limit)."""
        rate = self.rates.get(queue)
        if rate is None:
            return None
        self._forget_before(queue, now)
        return rate.limit - len(self._grants[queue])

    def next_due(self) -> float | None:
        """When the next full window opens."""
        return min(self._openings.values(), default=None)

    def run_due(self, now: float) -> None:
        """Windows opening at `now` wake a waiting FETCH of their queue."""
        for queue, opening in list(self._openings.items()):
            if opening <= now:
                del self._openings[queue]
                if self.on_open is not None:
                    self.on_open(queue)

    # --- reading --------------------------------------------------------------------------

    def full(self, queue: str) -> bool:
        """Is `queue`'s window full, as of its last grant and the due timer's last run (no
        clock needed: a full window is one whose opening is still to come)?"""
        return queue in self._openings

    def in_window(self, queue: str, now: float) -> int:
        """Grants of `queue` in the window ending at `now`."""
        self._forget_before(queue, now)
        return len(self._grants[queue])

    def next_grant_at(self, queue: str, now: float) -> float | None:
        """When `queue` may have its next grant if its window is full at `now`, else None."""
        if self.room(queue, now):
            return None
        return self._grants[queue][0][0] + self.rates[queue].period

    # --- state in the store's care (snapshots) -------------------------------------------

    def apply(self, op: Op) -> float | None:
        """A snapshot's grants of one throttle (ignored if it has no rate limit now)."""
        queue = op["queue"]
        for at, jid in op["grants"]:
            self._grant(queue, at, jid)
        return self._openings.get(queue)

    def snapshot(self) -> Iterator[Op]:
        ops: list[dict[str, Any]] = [
            {"op": GRANTS_OP, "queue": queue, "grants": [[at, jid] for at, jid in grants]}
            for queue, grants in self._grants.items() if grants]
        return iter(ops)

    def flush(self) -> None:
        """FLUSH empties every window."""
        for grants in self._grants.values():
            grants.clear()
        self._openings.clear()
