"""Which reservations hold a throttle slot: an index derived from the reservations.

Why derived: a lock or counter kept beside the reservations is the classic way throttles
break (a path that forgets to release it leaks a slot for good; Faktory Enterprise keeps
its locks in memory only, and leaks one when it discards an expired job). Here a slot *is*
a live reservation subject to a rule (a throttle or a named limit), in the partition of the
rule its job is in, whose `timeout` has not passed (protocol/spec.md §11.2, §11.8) — or, with
`slot_release = "job_end"` or no `timeout`, any live reservation subject to it, `timeout`
only flagging the slot overdue (§11.7). A job subject to several rules holds a slot of each.
The store calls `reserved` and `ended` exactly where a reservation begins and ends
(`store.api.ReservationObserver`), on live commits and replay alike, so nothing else can
change the count and a restart rebuilds it. The one other change
is time: in `timeout` mode a slot ends `timeout` seconds after its FETCH even if the job runs
on (`release_due`, run by the due timer and before every count is read, so a read never
depends on when the timer ran). A configuration reload counts the slots again from the
live reservations (`recount`).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ...store.api import Reservation
from .rules import Rules, SlotKey


@dataclass(frozen=True, slots=True)
class _Slot:
    key: SlotKey
    wid: str
    #: when its `timeout` passes (None: a rule without one)
    ends_at: float | None


class Occupancy:
    """The slots held per (rule, partition) and per (rule, partition, wid) (a
    `ReservationObserver`)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        #: called with a slot key each time one of its slots ends (the server wakes a waiting FETCH)
        self.on_release: Callable[[SlotKey], None] | None = None
        #: (jid, rule name) → its slot
        self._slots: dict[tuple[str, str], _Slot] = {}
        #: plain dicts, not Counters: FETCH and ACK reach them, and a Counter's `+=` on a
        #: missing key and its `del` are Python calls
        self._in_use: dict[SlotKey, int] = {}
        self._by_worker: dict[tuple[SlotKey, str], int] = {}
        #: (ends_at, jid, rule name) of slots, earliest first; entries of slots already ended are skipped
        self._ends: list[tuple[float, str, str]] = []
        #: rule name → reservations whose slot timed out while they live on, and their slots
        self.overdue: Counter[str] = Counter()
        self._overdue_slots: set[tuple[str, str]] = set()

    # --- where reservations begin and end (the store calls these) -------------------

    def reserved(self, res: Reservation) -> float | None:
        if not self.rules.by_name:
            return None
        jid = res.job["jid"]
        first: float | None = None
        for key in self.rules.class_of(res.job):
            timeout = self.rules.by_name[key[0]].limit.timeout
            slot = _Slot(key, res.wid, None if timeout is None else res.reserved_at + timeout)
            self._slots[jid, key[0]] = slot
            in_use, by_worker = self._in_use, self._by_worker
            in_use[key] = in_use.get(key, 0) + 1
            by_worker[key, res.wid] = by_worker.get((key, res.wid), 0) + 1
            if slot.ends_at is not None:
                heapq.heappush(self._ends, (slot.ends_at, jid, key[0]))
                first = slot.ends_at if first is None else min(first, slot.ends_at)
        return first

    def ended(self, jid: str) -> None:
        for name in self.rules.by_name:
            held = (jid, name)
            if held in self._overdue_slots:
                self._overdue_slots.discard(held)
                self.overdue[name] -= 1
            slot = self._slots.get(held)
            if slot is not None:
                self._release(held, slot)

    def cleared(self) -> None:
        self._overdue_slots.clear()
        self.overdue.clear()
        for held, slot in list(self._slots.items()):
            self._release(held, slot)
        self._ends.clear()

    def recount(self, rules: Rules, live: Iterable[Reservation], now: float) -> None:
        """A configuration reload: the slots under the new `rules`, counted again from the
        `live` reservations as a restart would (protocol/spec.md §11.6). So a lowered limit
        admits nobody until enough of its reservations end, a new throttle counts the jobs
        already in flight, a removed one frees nothing, and a slot the new `timeout` has
        already ended is overdue at once."""
        self.rules = rules
        self._slots.clear()
        self._in_use.clear()
        self._by_worker.clear()
        self._ends.clear()
        self._overdue_slots.clear()
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
            ends_at, jid, name = heapq.heappop(ends)
            held = (jid, name)
            slot = self._slots.get(held)
            if slot is not None and slot.ends_at == ends_at and held not in self._overdue_slots:
                self._overdue_slots.add(held)
                self.overdue[name] += 1
                if self.rules.by_name[name].limit.slot_release != "job_end":
                    self._release(held, slot)

    def next_due(self) -> float | None:
        """When the next slot times out (None when no slot is held)."""
        ends = self._ends
        while ends:
            ends_at, jid, name = ends[0]
            slot = self._slots.get((jid, name))
            if slot is not None and slot.ends_at == ends_at and (jid, name) not in self._overdue_slots:
                return ends_at
            heapq.heappop(ends)  # that slot ended already
        return None

    def _release(self, held: tuple[str, str], slot: _Slot) -> None:
        del self._slots[held]
        in_use, by_worker, worker_key = self._in_use, self._by_worker, (slot.key, slot.wid)
        if in_use[slot.key] > 1:
            in_use[slot.key] -= 1
        else:
            del in_use[slot.key]
        if by_worker[worker_key] > 1:
            by_worker[worker_key] -= 1
        else:
            del by_worker[worker_key]
        if self.on_release is not None:
            self.on_release(slot.key)

    # --- reading ------------------------------------------------------------------------

    def room(self, key: SlotKey) -> int | None:
        """Free `concurrency` slots of `key` (after `release_due`); None without that limit."""
        concurrency = self.rules.by_name[key[0]].limit.concurrency
        return None if concurrency is None else max(0, concurrency - self._in_use.get(key, 0))

    def full(self, key: SlotKey) -> bool:
        """Are all `concurrency` slots of `key` held (after `release_due`)?"""
        concurrency = self.rules.by_name[key[0]].limit.concurrency
        return concurrency is not None and self._in_use.get(key, 0) >= concurrency

    def admits(self, key: SlotKey, wid: str) -> bool:
        """Has `key` a free slot for `wid` (after `release_due`)?"""
        limit = self.rules.by_name[key[0]].limit
        if limit.concurrency is not None and self._in_use.get(key, 0) >= limit.concurrency:
            return False
        return limit.worker is None or self._by_worker.get((key, wid), 0) < limit.worker

    def in_use(self, key: SlotKey) -> int:
        return self._in_use.get(key, 0)

    def in_use_of(self, name: str) -> Counter[SlotKey]:
        """partition key → slots held, of the rule `name` (only partitions holding some)."""
        return Counter({key: n for key, n in self._in_use.items() if key[0] == name})

    def by_worker(self, name: str) -> dict[str, int]:
        """wid → slots of the rule `name` it holds, all partitions (only wids holding some)."""
        held: Counter[str] = Counter()
        for (key, wid), n in self._by_worker.items():
            if key[0] == name:
                held[wid] += n
        return dict(held)

    def holders(self) -> dict[tuple[str, str], tuple[SlotKey, str]]:
        """(jid, rule name) → (slot key, wid) of every slot held: what a test recomputes
        from the reservations."""
        return {held: (slot.key, slot.wid) for held, slot in self._slots.items()}
