"""Which reservations hold a throttle slot: an index derived from the reservations.

Why derived: a lock or counter kept beside the reservations is the classic way throttles
break (a path that forgets to release it leaks a slot for good; Faktory Enterprise keeps
its locks in memory only, and leaks one when it discards an expired job). Here a slot *is*
a live reservation of a throttled queue whose `timeout` has not passed (protocol/spec.md
§11.2) — or, with `slot_release = "job_end"`, any live reservation of it, `timeout` only
flagging the slot overdue (§11.7). The store calls `reserved` and `ended` exactly where a
reservation begins and ends (`store.api.ReservationObserver`), on live commits and replay
alike, so nothing else can change the count and a restart rebuilds it. The one other change
is time: in `timeout` mode a slot ends `timeout` seconds after its FETCH even if the job runs
on (`release_due`, run by the due timer and before every count is read, so a read never
depends on when the timer ran). A configuration reload counts the slots again from the
live reservations (`recount`).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ...store.api import Reservation
from .rate import Rate


@dataclass(frozen=True, slots=True)
class Limit:
    """One queue's throttle, as configured (`[throttles.<queue>]`)."""

    #: seconds after its FETCH at which a slot ends even if the job has not
    timeout: int
    #: at most this many slots across the server (None: no such limit)
    concurrency: int | None = None
    #: at most this many per worker process (HELLO `wid`)
    worker: int | None = None
    #: at most `rate.limit` FETCH grants in any `rate.period` seconds (None: no such limit)
    rate: Rate | None = None
    #: "timeout": a slot ends `timeout` seconds after its FETCH; "job_end": only with its
    #: reservation, `timeout` flagging it overdue
    slot_release: str = "timeout"
    #: "fail": the reservations of a worker process reaped for missing heartbeats are failed
    #: (`Throttles.lost`); "keep": they live on
    on_worker_lost: str = "fail"


@dataclass(frozen=True, slots=True)
class _Slot:
    queue: str
    wid: str
    ends_at: float


class Occupancy:
    """The slots held per throttled queue and per (queue, wid) (a `ReservationObserver`)."""

    def __init__(self, limits: Mapping[str, Limit]) -> None:
        self.limits = dict(limits)
        #: called with a queue each time one of its slots ends (the server wakes a waiting FETCH)
        self.on_release: Callable[[str], None] | None = None
        self._slots: dict[str, _Slot] = {}
        self._in_use: Counter[str] = Counter()
        self._by_worker: Counter[tuple[str, str]] = Counter()
        #: (ends_at, jid) of slots, earliest first; entries of slots already ended are skipped
        self._ends: list[tuple[float, str]] = []
        #: queue → reservations whose slot timed out while they live on, and their jids
        self.overdue: Counter[str] = Counter()
        self._overdue_jids: dict[str, str] = {}

    # --- where reservations begin and end (the store calls these) -------------------

    def reserved(self, res: Reservation) -> float | None:
        queue = res.job["queue"]
        limit = self.limits.get(queue)
        if limit is None:
            return None
        jid = res.job["jid"]
        slot = _Slot(queue, res.wid, res.reserved_at + limit.timeout)
        self._slots[jid] = slot
        self._in_use[queue] += 1
        self._by_worker[queue, res.wid] += 1
        heapq.heappush(self._ends, (slot.ends_at, jid))
        return slot.ends_at

    def ended(self, jid: str) -> None:
        queue = self._overdue_jids.pop(jid, None)
        if queue is not None:
            self.overdue[queue] -= 1
        slot = self._slots.get(jid)
        if slot is not None:
            self._release(jid, slot)

    def cleared(self) -> None:
        self._overdue_jids.clear()
        self.overdue.clear()
        for jid, slot in list(self._slots.items()):
            self._release(jid, slot)
        self._ends.clear()

    def recount(self, limits: Mapping[str, Limit], live: Iterable[Reservation], now: float) -> None:
        """A configuration reload: the slots under the new `limits`, counted again from the
        `live` reservations as a restart would (protocol/spec.md §11.6). So a lowered limit
        admits nobody until enough of its reservations end, a new throttle counts the jobs
        already in flight, a removed one frees nothing, and a slot the new `timeout` has
        already ended is overdue at once."""
        self.limits = dict(limits)
        self._slots.clear()
        self._in_use.clear()
        self._by_worker.clear()
        self._ends.clear()
        self._overdue_jids.clear()
        self.overdue.clear()
        for res in live:
            self.reserved(res)
        self.release_due(now)

    # --- time -------------------------------------------------------------------------

    def release_due(self, now: float) -> None:
        """End the slots whose `timeout` has passed at `now`, their reservations living on
        overdue; a `job_end` slot is only flagged overdue, and stays until its reservation ends."""
        ends = self._ends
        while ends and ends[0][0] <= now:
            ends_at, jid = heapq.heappop(ends)
            slot = self._slots.get(jid)
            if slot is not None and slot.ends_at == ends_at:
                self._overdue_jids[jid] = slot.queue
                self.overdue[slot.queue] += 1
                if self.limits[slot.queue].slot_release != "job_end":
                    self._release(jid, slot)

    def next_due(self) -> float | None:
        """When the next slot times out (None when no slot is held)."""
        ends = self._ends
        while ends:
            ends_at, jid = ends[0]
            slot = self._slots.get(jid)
            if slot is not None and slot.ends_at == ends_at:
                return ends_at
            heapq.heappop(ends)  # that slot ended already
        return None

    def _release(self, jid: str, slot: _Slot) -> None:
        del self._slots[jid]
        self._in_use[slot.queue] -= 1
        self._by_worker[slot.queue, slot.wid] -= 1
        if not self._by_worker[slot.queue, slot.wid]:
            del self._by_worker[slot.queue, slot.wid]
        if self.on_release is not None:
            self.on_release(slot.queue)

    # --- reading ------------------------------------------------------------------------

    def admits(self, queue: str, wid: str) -> bool:
        """Has `queue` a free slot for `wid` (after `release_due`)? True if not throttled."""
        limit = self.limits.get(queue)
        if limit is None:
            return True
        if limit.concurrency is not None and self._in_use[queue] >= limit.concurrency:
            return False
        return limit.worker is None or self._by_worker[queue, wid] < limit.worker

    def in_use(self, queue: str) -> int:
        return self._in_use[queue]

    def by_worker(self, queue: str) -> dict[str, int]:
        """wid → slots of `queue` it holds (only wids holding some)."""
        return {wid: n for (q, wid), n in self._by_worker.items() if q == queue}

    def holders(self) -> dict[str, tuple[str, str]]:
        """jid → (queue, wid) of every slot held: what a test recomputes from the reservations."""
        return {jid: (slot.queue, slot.wid) for jid, slot in self._slots.items()}
