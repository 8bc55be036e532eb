"""Throttle occupancy as a property (protocol/spec.md §11.2): a hypothesis state machine pushes,
fetches from several worker processes, acks, fails, lets time pass (slots time out,
reservations expire), flushes, reloads other throttles (SIGHUP, §11.6) and restarts from the
journal or a snapshot, and checks after every step

* S1 safety: never more than `concurrency` slots of a queue, nor `worker` of one wid, except
  after a reload lowered a limit below the slots held, and then they never grow until below;
* S2 safety: never more than `rate.limit` FETCH grants of a queue in any `rate.period`, and
  the window the server keeps holds exactly the grants the model counts (ACKed, FAILed and
  expired jobs' too), live and after replay of the journal and of a snapshot;
* S3 conservation: the occupancy index equals the slots recomputed from the reservations
  (live reservations of throttled queues whose `timeout` has not passed), live and after
  replay of the journal and of a snapshot;
* FETCH honours the gate: a throttled queue whose limits admit the wid is never skipped
  (strict order), and a full one (slots or rate window) always is.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from faktory_py.config import Throttle, ThrottlesConfig
from faktory_py.core.lifecycle import Manager
from faktory_py.features.throttles.feature import Throttles
from faktory_py.server.app import enterprise_features
from faktory_py.server.reload import throttle_rules
from faktory_py.store.memory import MemoryStore
from helpers.model_replay import due_times, replay, roundtrip, snapshot_records

#: the rate limits, the same in every configuration below (what a reload does to a rate window
#: is tests/features/test_throttles_rate.py's)
RATES = {"few": (4, 20.0), "rated": (2, 60.0)}
THROTTLES = ThrottlesConfig((Throttle("one", 30, concurrency=1),
                             Throttle("few", 50, concurrency=3, worker=2, rate=RATES["few"]),
                             Throttle("per", 20, worker=1), Throttle("rated", 30, rate=RATES["rated"])))
#: what a reload (SIGHUP) may put in force: limits lowered, raised, removed, added, shorter
#: timeouts, only the rate limits
RELOADS = (THROTTLES,
           ThrottlesConfig((Throttle("one", 30, concurrency=1),
                            Throttle("few", 50, concurrency=1, worker=1, rate=RATES["few"]),
                            Throttle("rated", 30, rate=RATES["rated"]))),
           ThrottlesConfig((Throttle("few", 10, concurrency=5, worker=3, rate=RATES["few"]),
                            Throttle("per", 5, worker=2), Throttle("free", 40, concurrency=2),
                            Throttle("rated", 30, rate=RATES["rated"]))),
           ThrottlesConfig((Throttle("few", 50, rate=RATES["few"]), Throttle("rated", 30, rate=RATES["rated"]))))
QUEUES = ("one", "few", "per", "rated", "free")
WIDS = ("A", "B", "C", "")
START = 1_700_000_000.0


def recomputed(store: MemoryStore, limits: dict[str, Throttle], now: float) -> dict[Any, Any]:
    """The slots by definition: (jid, queue) → ((queue, partition), wid) of each live
    reservation of a throttled queue whose timeout has not passed at `now`."""
    return {(res.job["jid"], res.job["queue"]): ((res.job["queue"], ()), res.wid) for res in store.reservations()
            if res.job["queue"] in limits and res.reserved_at + limits[res.job["queue"]].timeout > now}


class ThrottleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.journal: list[list[dict[str, Any]]] = []
        self.config = THROTTLES
        #: (queue, wid or None for the whole queue) → slots held above its limit, which only
        #: a reload that lowered the limit allows, and which may only shrink from then on
        self.over: dict[tuple[str, str | None], int] = {}
        self.store, self.manager, self.throttles = self._build()
        self.serial = 0
        #: the model's FETCH grants: rate-limited queue → the times FETCH handed one of its jobs out
        self.grants: dict[str, list[float]] = {queue: [] for queue in RATES}

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.journal.append(roundtrip(ops))
        return len(self.journal)

    def _build(self) -> tuple[MemoryStore, Manager, Throttles]:
        store = MemoryStore(sink=self._sink)  # replay applies ops without journaling them again
        features = enterprise_features(store, throttles=self.config)
        throttles = features.find(Throttles)
        assert throttles is not None
        return store, Manager(store, random.Random(0), features), throttles

    # --- rules ----------------------------------------------------------------------

    @rule(queue=st.sampled_from(QUEUES), n=st.integers(1, 3), reserve_for=st.sampled_from([None, 60, 600]))
    def push(self, queue: str, n: int, reserve_for: int | None) -> None:
        for _ in range(n):
            self.serial += 1
            job: dict[str, Any] = {"jid": f"jid-{self.serial:08d}", "jobtype": "T", "args": [], "queue": queue}
            if reserve_for is not None:
                job["reserve_for"] = reserve_for
            self.manager.push(job, self.now)

    @rule(wid=st.sampled_from(WIDS), queues=st.lists(st.sampled_from(QUEUES), min_size=1, max_size=4, unique=True))
    def fetch(self, wid: str, queues: list[str]) -> None:
        occupancy = self.throttles.occupancy
        occupancy.release_due(self.now)
        # the first queue with a job that the throttle admits is the one FETCH must take from
        expected = next((q for q in queues if self.store.queue_size(q)
                         and (q not in self.limits or occupancy.admits((q, ()), wid)) and self._rate_admits(q)), None)
        job, _ = self.manager.fetch(queues, wid, self.now)
        assert (job and job["queue"]) == expected
        if expected in self.grants:
            self.grants[expected].append(self.now)

    def _in_window(self, queue: str, at: float) -> int:
        """The model's grants of `queue` in the window (at − period, at]."""
        period = RATES[queue][1]
        return sum(1 for t in self.grants[queue] if t <= at and t + period > at)

    def _rate_admits(self, queue: str) -> bool:
        return queue not in RATES or self._in_window(queue, self.now) < RATES[queue][0]

    def _reserved(self) -> list[str]:
        return sorted(res.job["jid"] for res in self.store.reservations())

    @precondition(lambda self: self.store.statistics().working)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        self.manager.ack(data.draw(st.sampled_from(self._reserved())), self.now)

    @precondition(lambda self: self.store.statistics().working)
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        self.manager.fail(data.draw(st.sampled_from(self._reserved())), "E", "boom", [], self.now)

    @rule(seconds=st.sampled_from([1.0, 5.0, 19.999, 20.0, 30.0, 45.5, 61.0, 700.0]))
    def advance(self, seconds: float) -> None:
        """What the due timer does while the clock moves on: run every due time in order."""
        target = self.now + seconds
        for due in due_times(self.manager, target):
            self.now = max(self.now, due)
            self.manager.run_due(self.now)
        self.now = target

    @rule(config=st.sampled_from(RELOADS))
    def reload(self, config: ThrottlesConfig) -> None:
        """SIGHUP with other throttles (server/reload.py does the same, and wakes the waiters)."""
        self.config = config
        self.manager.features.replace(self.throttles.reconfigure(throttle_rules(config), config.warnings, self.now))
        self.over = {key: n - self._limit(key) for key, n in self._held().items() if n > self._limit(key)}

    @rule()
    def flush(self) -> None:
        self.manager.flush()
        self.grants = {queue: [] for queue in RATES}  # FLUSH empties the rate windows

    @rule(from_snapshot=st.booleans())
    def restart(self, from_snapshot: bool) -> None:
        """Rebuild from the journal (or a snapshot of the live store): same slots."""
        records = snapshot_records(self.store) if from_snapshot else list(self.journal)
        store, manager, throttles = self._build()
        replay(store, records)
        throttles.run_due(self.now)  # replay does not know the clock
        assert throttles.occupancy.holders() == self.throttles.occupancy.holders()
        for queue in RATES:
            assert throttles.rate.in_window((queue, ()), self.now) == self.throttles.rate.in_window((queue, ()), self.now)
        self.journal = records if from_snapshot else self.journal
        self.store, self.manager, self.throttles = store, manager, throttles

    # --- invariants -----------------------------------------------------------------

    @property
    def limits(self) -> dict[str, Throttle]:
        return {t.queue: t for t in self.config.entries}

    def _held(self) -> Counter[tuple[str, str | None]]:
        """Slots per limited (queue, None) and (queue, wid)."""
        held: Counter[tuple[str, str | None]] = Counter()
        limits = self.limits
        for (queue, _partition), wid in recomputed(self.store, limits, self.now).values():
            if limits[queue].concurrency is not None:
                held[queue, None] += 1
            if limits[queue].worker is not None:
                held[queue, wid] += 1
        return held

    def _limit(self, key: tuple[str, str | None]) -> int:
        limit = self.limits[key[0]]
        value = limit.concurrency if key[1] is None else limit.worker
        assert value is not None
        return value

    @invariant()
    def occupancy_is_derived(self) -> None:
        """S3: nothing due is left undone, and the index is exactly the recomputed slots."""
        due = self.manager.next_due()
        assert due is None or due > self.now
        assert self.throttles.occupancy.holders() == recomputed(self.store, self.limits, self.now)

    @invariant()
    def never_more_than_the_limits(self) -> None:
        """S1, and its one exception: above a limit a reload lowered, the slots never grow."""
        for key, n in self._held().items():
            allowed = self._limit(key) + self.over.get(key, 0)
            assert n <= allowed
            if key in self.over:
                self.over[key] = max(0, n - self._limit(key))

    @invariant()
    def never_more_grants_than_the_rate(self) -> None:
        """S2, and the server's window is the model's (so is whether it is full, which INFO
        reads without the clock)."""
        for queue, (limit, _period) in RATES.items():
            assert all(self._in_window(queue, at) <= limit for at in self.grants[queue])
            assert self.throttles.rate.in_window((queue, ()), self.now) == self._in_window(queue, self.now)
            assert self.throttles.rate.full((queue, ())) == (self._in_window(queue, self.now) >= limit)


ThrottleMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestThrottles = ThrottleMachine.TestCase
