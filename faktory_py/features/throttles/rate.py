"""Rate limits of throttles: at most `limit` FETCH grants per partition of a rule (a throttle's
queue, a named limit's jobs) in any `period` seconds.

A sliding-window log, exact (protocol/spec.md §11.5): a grant at `t` is allowed iff fewer
than `limit` grants of the same rule and partition happened in `(t − period, t]`. A grant is a
reservation beginning, at its `reserved_at`: the store calls `reserved` where it creates
one, live and in journal replay alike (`store.api.ReservationObserver`), so the window needs
no record of its own in the journal and a restart rebuilds it. Grants are never refunded
(`ended` does nothing): starts are counted, not running jobs; each retry attempt is a new
grant.

The one thing the reservations cannot tell is a grant whose reservation ended before a
snapshot (journal compaction keeps only live reservations). So the window is also state in
the store's care (`store.api.StateOwner`): a snapshot holds, as `throttle_grants` ops, the
grants of each (rule, partition) but those of reservations still live, which the snapshot
restores and so grants again. Every grant is kept, even two of one job at one instant (a
job requeued by MUTATE and fetched again at once): nothing is deduplicated. (Snapshots
written before this rule, without `"v": 2`, held the live grants too; theirs are skipped
where a grant equal to one already restored exists.)

Only the last `limit` grants matter (the oldest of them decides whether the window is
full), so a throttle keeps at most that many, oldest first. When a grant fills the window,
its next opening (oldest grant + period) is timed work: the due timer runs `run_due` exactly
then, which wakes a waiting FETCH (`on_open`) — a timer, never a poll.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...store.api import Op, Reservation
from .rules import Rule, Rules, SlotKey

GRANTS_OP = "throttle_grants"
#: 2: a snapshot's grants leave out those of live reservations (see the module docstring)
SNAPSHOT_VERSION = 2


class RateWindows:
    """The grants in window per (rule, partition) of a rate-limited rule (a
    `ReservationObserver` and a `StateOwner`)."""

    op_names = (GRANTS_OP,)

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        #: the names of the rules with a rate limit
        self._rated = {rule.name for rule in rules if rule.limit.rate is not None}
        #: called with a slot key when its full window opens (the server wakes a waiting FETCH)
        self.on_open: Callable[[SlotKey], None] | None = None
        #: slot key → its last `limit` grants as (reserved_at, jid), oldest first
        self._grants: dict[SlotKey, deque[tuple[float, str]]] = {}
        #: slot key → when its full window next opens (only keys whose window is full)
        self._openings: dict[SlotKey, float] = {}
        #: jid → `reserved_at` of its live reservation, while a rate is configured: the grants
        #: a snapshot leaves out, because restoring the reservation grants them again
        self._live: dict[str, float] = {}

    def reconfigure(self, rules: Rules, live: Iterable[Reservation]) -> None:
        """Put `rules` in force (a configuration reload, protocol/spec.md §11.6). A rule
        that keeps a rate and its partitions keeps its grants, which happened, down to its
        new limit; a rule that gains one (or partitions its jobs otherwise) counts the grants
        of its reservations still live, as it would after a restart; a rule that loses its
        rate forgets its windows."""
        def windowed(by_name: dict[str, Rule]) -> dict[str, tuple[str, ...]]:
            return {name: rule.limit.partition for name, rule in by_name.items() if rule.limit.rate is not None}

        before, after = windowed(self.rules.by_name), windowed(rules.by_name)
        kept = {name for name, partition in after.items() if before.get(name) == partition}
        self.rules = rules
        self._rated = set(after)
        self._grants = {key: grants for key, grants in self._grants.items() if key[0] in kept}
        self._openings.clear()
        self._live.clear()  # made again from `live`: with no rule configured the store told it of nothing
        for res in live:
            if after:
                self._live[res.job["jid"]] = res.reserved_at
            for key in rules.class_of(res.job):
                if key[0] in after and key[0] not in kept:
                    self._grant(key, res.reserved_at, res.job["jid"])
        for key, grants in self._grants.items():
            rate = self._rate(key[0])
            assert rate is not None
            while len(grants) > rate.limit:
                grants.popleft()
            if grants and len(grants) == rate.limit:
                self._openings[key] = grants[0][0] + rate.period

    def _rate(self, name: str) -> Any:
        rule = self.rules.by_name.get(name)
        return None if rule is None else rule.limit.rate

    # --- grants: reservations beginning (the store calls these) -------------------------

    def reserved(self, res: Reservation) -> float | None:
        if not self._rated:
            return None
        self._live[res.job["jid"]] = res.reserved_at
        openings = [opening for key in self.rules.class_of(res.job) if key[0] in self._rated
                    and (opening := self._grant(key, res.reserved_at, res.job["jid"])) is not None]
        return min(openings, default=None)

    def ended(self, jid: str) -> None:
        """The grant stays (never refunded); only a snapshot must know it is no longer live."""
        self._live.pop(jid, None)

    def cleared(self) -> None:
        self.flush()

    def _grant(self, key: SlotKey, at: float, jid: str, once: bool = False) -> float | None:
        """Record a grant; returns when the window it filled opens, if it filled it. `once`:
        not if an equal one is there (an old snapshot's grant of a restored reservation)."""
        rate = self._rate(key[0])
        if rate is None:
            return None
        grants = self._grants.setdefault(key, deque())
        grant = (at, jid)
        if not grants or grant >= grants[-1] and not (once and grant == grants[-1]):
            grants.append(grant)
        else:  # a snapshot's grant, or one of a reservation it restores: out of order
            index = bisect.bisect_left(grants, grant)
            if once and index < len(grants) and grants[index] == grant:
                return None
            grants.insert(index, grant)
        self._forget_before(key, grants[-1][0])
        while len(grants) > rate.limit:
            grants.popleft()
        if len(grants) < rate.limit:
            self._openings.pop(key, None)
            return None
        opening = grants[0][0] + rate.period
        self._openings[key] = opening
        return opening

    def _forget_before(self, key: SlotKey, now: float) -> None:
        """Drop the grants out of the window at `now` (they count for no later grant); a
        partition left without grants is forgotten."""
        grants = self._grants.get(key)
        if grants is None:
            return
        period = self._rate(key[0]).period
        while grants and grants[0][0] + period <= now:
            grants.popleft()
        if not grants:
            del self._grants[key]

    # --- FETCH and the due timer --------------------------------------------------------

    def room(self, key: SlotKey, now: float) -> int | None:
        """How many more grants `key` may have at `now` (None: no rate limit)."""
        rate = self._rate(key[0])
        if rate is None:
            return None
        self._forget_before(key, now)
        return rate.limit - len(self._grants.get(key, ()))

    def next_due(self) -> float | None:
        """When the next full window opens."""
        return min(self._openings.values(), default=None)

    def run_due(self, now: float) -> None:
        """Windows opening at `now` wake a waiting FETCH of their jobs."""
        for key, opening in list(self._openings.items()):
            if opening <= now:
                del self._openings[key]
                if self.on_open is not None:
                    self.on_open(key)

    # --- reading --------------------------------------------------------------------------

    def full(self, key: SlotKey) -> bool:
        """Is `key`'s window full, as of its last grant and the due timer's last run (no
        clock needed: a full window is one whose opening is still to come)?"""
        return key in self._openings

    def in_window(self, key: SlotKey, now: float) -> int:
        """Grants of `key` in the window ending at `now`."""
        self._forget_before(key, now)
        return len(self._grants.get(key, ()))

    def next_grant_at(self, key: SlotKey, now: float) -> float | None:
        """When `key` may have its next grant if its window is full at `now`, else None."""
        if self.room(key, now):
            return None
        return self._grants[key][0][0] + self._rate(key[0]).period

    def partitions(self, name: str) -> list[SlotKey]:
        """The keys of the rule `name` with grants in their window."""
        return [key for key in self._grants if key[0] == name]

    # --- state in the store's care (snapshots) -------------------------------------------

    def apply(self, op: Op) -> float | None:
        """A snapshot's grants of one (rule, partition) (ignored if the rule has no rate
        limit now). `queue` is the rule's name (a throttle's queue, `limits:<name>`)."""
        key = (op["queue"], tuple(op.get("partition", ())))
        old_format = op.get("v", 1) < SNAPSHOT_VERSION
        for at, jid in op["grants"]:
            self._grant(key, at, jid, once=old_format)
        return self._openings.get(key)

    def snapshot(self) -> Iterator[Op]:
        ops: list[dict[str, Any]] = []
        live = self._live
        for (name, partition), grants in self._grants.items():
            kept: list[list[Any]] = []
            left_out: set[str] = set()  # one grant per live reservation (a jid may have two at one instant)
            for at, jid in grants:
                if live.get(jid) == at and jid not in left_out:
                    left_out.add(jid)
                else:
                    kept.append([at, jid])
            if kept:
                op: dict[str, Any] = {"op": GRANTS_OP, "v": SNAPSHOT_VERSION, "queue": name, "grants": kept}
                if partition:
                    op["partition"] = list(partition)
                ops.append(op)
        return iter(ops)

    def flush(self) -> None:
        """FLUSH empties every window."""
        self._grants.clear()
        self._openings.clear()
        self._live.clear()
