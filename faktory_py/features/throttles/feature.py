"""Throttles and named limits as a feature: FETCH's choice of job, the slot and rate-window
timers, INFO and THROTTLE STATUS's data.

A queue some rule may select is FETCHed through the class index (`classes`): the oldest job
whose class has room for the fetching wid is handed out, so a full partition or jobtype acts
as if it had no jobs and the jobs behind it flow (protocol/spec.md §11.3); a queue with no
eligible job acts as if empty, and FETCH goes straight on to its next queue. The choice
looks at one job per class, never scans the queue. A job dropped at FETCH (expired) takes no
slot and no grant, since only a reservation does (`occupancy`, `rate`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ...core.registry import Feature, WebPage
from ...store.api import Op, Store
from ...util.timefmt import format_time
from .classes import ClassIndex
from .occupancy import Occupancy
from .rate import RateWindows
from .rules import JobClass, Rule, Rules, SlotKey, decode_partition

#: THROTTLE STATUS lists at most this many partitions per entry, most waiting first
MAX_PARTITIONS = 100


class NoSuchThrottle(LookupError):
    """THROTTLE STATUS named no throttle nor limit."""


class Throttles:
    """The configured rules over their occupancy, rate and class indexes (one per server)."""

    def __init__(self, store: Store, rules: Rules, warnings: Sequence[str] = ()) -> None:
        self.store = store
        self.rules = rules
        self.occupancy = Occupancy(rules)
        self.rate = RateWindows(rules)
        self.classes = ClassIndex(rules)
        #: what the configuration's throttles gave warnings about (unknown keys, protocol/spec.md
        #: §11.1), as logged at boot: the web UI's Throttles tab shows them beside their entries
        self.warnings = tuple(warnings)
        #: why the last configuration reload was rejected, None after a good one: the old
        #: configuration is still in force, and an operator looking at throttles must see why
        self.reload_error: str | None = None
        #: called with a queue whose jobs may have become eligible (a slot ended, a window
        #: opened): the server wakes a waiting FETCH of it
        self.wake: Callable[[str], None] | None = None
        self.occupancy.on_release = self._room_made
        self.rate.on_open = self._room_made
        store.register_state(self.rate)
        self._observe()

    def _observe(self) -> None:
        """Have the store tell the indexes of reservations and queued jobs (occupancy, rate
        windows, classes) only while some rule is configured. With none they keep nothing
        (each call would return at once), yet every job of an unthrottled server would call
        them six times. A reload that configures rules rebuilds them from the store
        (`reconfigure`), as the store's contract wants of an observer that comes back."""
        store = self.store
        for observer in (self.occupancy, self.rate, self.classes):
            store.unobserve(observer)
        if self.rules:
            store.observe_reservations(self.occupancy)
            store.observe_reservations(self.rate)
            store.observe_queues(self.classes)

    def feature(self) -> Feature:
        """How it plugs in: FETCH's choice of job (only when some rule is configured, so an
        unthrottled server's FETCH asks nothing more), the web UI's Throttles tab (always
        routed, since a reload may configure throttles, but listed only while `tab_shown`,
        so an unthrottled server's menu has no empty tab), a timer for slots that time out,
        INFO fields and the THROTTLE command."""
        return Feature("throttles", self, select=self if self.rules else None, timed=self, info=self,
                       pages=(WebPage("throttles", "Throttles", listed=self.tab_shown),),
                       commands=("THROTTLE",))

    @property
    def tab_shown(self) -> bool:
        """The Throttles tab is there when throttles are configured or the last reload was
        rejected (its error must be seen, even on a server that has no throttle yet)."""
        return bool(self.rules) or self.reload_error is not None

    def reconfigure(self, rules: Rules, warnings: Iterable[str], now: float) -> Feature:
        """Put `rules` in force (a configuration reload), with the new configuration's
        `warnings`: the slots are recounted from the live reservations under them, the
        rate windows keep the grants that happened (`RateWindows.reconfigure`) and the
        queued jobs are classified again. Returns the feature's new record, whose FETCH
        choice is there only if some rule is now configured (`Registry.replace` puts it in)."""
        self.rules = rules
        self._observe()
        self.occupancy.recount(rules, self.store.reservations(), now)
        self.rate.reconfigure(rules, self.store.reservations())
        self.classes.rebuild(rules, self.store)
        self.warnings = tuple(warnings)
        return self.feature()

    def _room_made(self, key: SlotKey) -> None:
        self.classes.unpark(key)
        if self.wake is not None:
            for queue in self.classes.queues_needing(key):
                self.wake(queue)

    # --- hooks ------------------------------------------------------------------------

    def selects(self, queue: str) -> bool:
        return bool(self.rules.of_queue(queue))

    def select(self, queue: str, wid: str, now: float) -> int | None:
        """The position of the oldest job of `queue` that `wid` may take at `now`: its class
        has a free slot (for `wid` too) and room in its rate windows in every rule. Slots
        that timed out and windows that opened by `now` count, whether or not the due timer
        has run yet."""
        self.occupancy.release_due(now)
        self.rate.run_due(now)
        occupancy, rate = self.occupancy, self.rate

        def blocked_by(job_class: JobClass) -> SlotKey | None:
            for key in job_class:
                if occupancy.full(key) or rate.room(key, now) == 0:
                    return key
            return None

        def fits(job_class: JobClass) -> bool:
            for key in job_class:
                if not occupancy.admits(key, wid):
                    return False
            return True

        return self.classes.pick(queue, blocked_by, fits)

    def room(self, queue: str, now: float) -> int | None:
        """How many of `queue`'s jobs FETCHes may take at `now`: per class, its jobs capped
        by the free `concurrency` slots and the grants left in the rate windows it needs
        (whether a `worker` slot is free depends on the fetcher). An upper bound when
        classes share a slot: it sizes how many waiting FETCHes to wake."""
        self.occupancy.release_due(now)
        total = 0
        for job_class, queued in self.classes.classes(queue):
            rooms = [room for key in job_class
                     for room in (self.occupancy.room(key), self.rate.room(key, now)) if room is not None]
            total += min([queued, *rooms])
        return total

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
        """The jids `wid` holds under a rule with `on_worker_lost = "fail"`: what fails
        when that worker process is reaped for missing heartbeats (protocol/spec.md §11.7).
        A scan of the reservations, once per reaped worker, never on FETCH."""
        by_name = self.rules.by_name
        return [res.job["jid"] for res in self.store.reservations()
                if res.wid == wid and any(by_name[name].limit.on_worker_lost == "fail"
                                          for name, _partition in self.rules.class_of(res.job))]

    def info_fields(self) -> dict[str, Any]:
        """`throttles` and `limits` in INFO's `faktory` block, only when some are configured
        (extra keys under `faktory`: the clients' INFO decoders ignore them)."""
        if not self.rules:
            return {}
        fields: dict[str, Any] = {"throttles": {}}
        for rule in self.rules:
            fields.setdefault("limits" if rule.is_limit else "throttles", {})[rule.label] = self.entry(rule)
        return fields

    # --- reading ----------------------------------------------------------------------

    def warnings_about(self, name: str) -> list[str]:
        """The configuration warnings about the throttle of queue `name`: their text starts
        with its key (§11.1), and a queue name has no `:`, so no entry gets another's."""
        prefix = f"config: throttles.{name}:"
        return [warning for warning in self.warnings if warning.startswith(prefix)]

    def _full(self, key: SlotKey) -> bool:
        return self.occupancy.room(key) == 0 or self.rate.full(key)

    def _waiting(self, rule: Rule) -> Counter[SlotKey]:
        """slot key of `rule` → its queued jobs held back because that key is full."""
        waiting: Counter[SlotKey] = Counter()
        queues = self.classes.queues() if rule.queues is None else rule.queues
        for queue in queues:
            for job_class, queued in self.classes.classes(queue):
                for key in job_class:
                    if key[0] == rule.name and self._full(key):
                        waiting[key] += queued
        return waiting

    def _partitions(self, rule: Rule) -> set[SlotKey]:
        """The partitions of `rule` known now: holding slots, grants, or queued jobs."""
        keys = set(self.occupancy.in_use_of(rule.name)) | set(self.rate.partitions(rule.name))
        queues = self.classes.queues() if rule.queues is None else rule.queues
        for queue in queues:
            for job_class, _queued in self.classes.classes(queue):
                keys.update(key for key in job_class if key[0] == rule.name)
        if not rule.limit.partition:
            keys.add((rule.name, ()))
        return keys

    def entry(self, rule: Rule) -> dict[str, Any]:
        """One rule's state (protocol/spec.md §11.4): its limits, slots in use, and how
        many queued jobs wait because one of its partitions is full (its `concurrency`
        reached or its rate window full); `rate` is its rate limit (the grants in window
        need the clock: THROTTLE STATUS shows them)."""
        limit = rule.limit
        rate = None if limit.rate is None else {"limit": limit.rate.limit, "period": limit.rate.period}
        entry: dict[str, Any] = {}
        if rule.is_limit:
            entry["jobtypes"] = None if rule.jobtypes is None else sorted(rule.jobtypes)
            entry["queues"] = None if rule.queues is None else sorted(rule.queues)
        entry.update({"concurrency": limit.concurrency, "worker": limit.worker, "timeout": limit.timeout,
                      "in_use": sum(self.occupancy.in_use_of(rule.name).values()),
                      "waiting": sum(self._waiting(rule).values()), "rate": rate,
                      "partitions": len(self._partitions(rule)),
                      "slot_release": limit.slot_release, "overdue": self.occupancy.overdue[rule.name]})
        return entry

    def find(self, name: str) -> Rule:
        """The throttle of queue `name`, else the named limit `name`; NoSuchThrottle if none."""
        rule = self.rules.by_name.get(name) or self.rules.by_name.get("limits:" + name)
        if rule is None:
            raise NoSuchThrottle(name)
        return rule

    def status(self, names: Iterable[str], now: float) -> dict[str, Any]:
        """THROTTLE STATUS: the INFO entries of the throttles and limits `names` (all when
        none are named) with their slots per worker process, their partitions (at most
        `MAX_PARTITIONS`, most waiting first) and the last rejected reload's error (in every
        entry: the reply maps names to entries, so a key of its own could clash with a name,
        and a typed decoder of the map would choke on a value that is not an entry); raises
        NoSuchThrottle for a name of neither."""
        self.occupancy.release_due(now)
        rules = [self.find(name) for name in names] or list(self.rules)
        status = {}
        for rule in rules:
            entry = self.entry(rule)
            entry["by_worker"] = self.occupancy.by_worker(rule.name)
            waiting = self._waiting(rule)
            keys = sorted(self._partitions(rule), key=lambda key: (-waiting[key], key[1]))[:MAX_PARTITIONS]
            entry["by_partition"] = [{"key": decode_partition(key[1]), "in_use": self.occupancy.in_use(key),
                                      "waiting": waiting[key], **self._grants(key, now)} for key in keys]
            entry["reload_error"] = self.reload_error
            status[rule.label] = entry
        return status

    def slot_holders(self, now: float) -> frozenset[str]:
        """The jids whose reservation holds a slot at `now` (the Busy page marks them)."""
        self.occupancy.release_due(now)
        return frozenset(jid for jid, _rule in self.occupancy.holders())

    def _grants(self, key: SlotKey, now: float) -> dict[str, Any]:
        """`grants_in_window` and `next_grant_at` (RFC 3339, when the window is full) of a
        rate-limited partition; null for one without a rate limit."""
        if self.rules.by_name[key[0]].limit.rate is None:
            return {"grants_in_window": None, "next_grant_at": None}
        next_at = self.rate.next_grant_at(key, now)
        return {"grants_in_window": self.rate.in_window(key, now),
                "next_grant_at": None if next_at is None else format_time(next_at)}
