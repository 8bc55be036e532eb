"""Throttle occupancy as a property (protocol/spec.md §11.2, §11.8, §11.9): a hypothesis state
machine pushes jobs of several jobtypes and tenants, fetches from several worker processes,
acks, fails, ends reservations by MUTATE on `working` (requeue, kill, discard), lets time
pass (slots time out, reservations expire), flushes, reloads other throttles and limits
(SIGHUP, §11.6) and restarts from the journal or a snapshot, and checks after every step,
against a reference model that recomputes everything from the store's reservations and
queues (its own job selection and partitions, not the server's):

* S1 safety: never more than `concurrency` slots of a (rule, partition), nor `worker` of one
  wid there, except after a reload lowered a limit below the slots held, and then they never
  grow until below;
* S2 safety: never more than `rate.limit` FETCH grants of a (rule, partition) in any
  `rate.period`, and the window the server keeps holds exactly the grants the model counts
  (ACKed, FAILed and expired jobs' too), live and after replay of the journal and of a snapshot;
* S3 conservation: the occupancy index equals the slots recomputed from the reservations
  (live reservations subject to a rule whose `timeout` has not passed, or of a rule whose
  `slot_release = "job_end"`, whose slots past their timeout are counted `overdue`, §11.7),
  and the class index
  equals the queued jobs grouped by class, live and after replay of the journal and of a
  snapshot;
* L3 and F1: FETCH hands out, from the first of its queues that has one, the oldest job
  eligible for the wid (strict queue order, no head-of-line blocking, FIFO per class);
* L1: a queue holding a job some FETCH may take (its class has room, `worker` aside) says so
  in `Manager.available` — what wakes a waiting FETCH — and one holding none says 0;
* worker silence (§11.7): a worker process that stops sending BEAT is reaped (by the real
  registry) once past the heartbeat timeout; its reservations under a rule with
  `on_worker_lost = "fail"` then fail (into retries, `WorkerLost`) and free their slots, and
  every other reservation — its "keep" ones, other processes' — stays.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from faktory_py.config import NamedLimit, Throttle, ThrottlesConfig
from faktory_py.core.lifecycle import Manager
from faktory_py.core.workers import WorkerRegistry
from faktory_py.features.throttles.feature import Throttles
from faktory_py.server.reload import throttle_rules
from faktory_py.store.memory import MemoryStore
from helpers.model_replay import due_times, enterprise_manager, replay, roundtrip, snapshot_records

#: the rate limits, the same in every configuration below (what a reload does to a rate window
#: is tests/features/test_throttles_rate.py's)
RATES = {"few": (4, 20.0), "rated": (2, 60.0)}
RATED = (Throttle("few", timeout=50, concurrency=3, worker=2, rate=RATES["few"]),
         Throttle("rated", timeout=30, rate=RATES["rated"], partition=("custom.tenant",)))
THROTTLES = ThrottlesConfig((Throttle("one", timeout=30, concurrency=1), *RATED,
                             Throttle("per", timeout=20, worker=1, slot_release="job_end"),
                             Throttle("part", timeout=25, concurrency=1, partition=("custom.tenant", "jobtype"),
                                      on_worker_lost="keep")),
                            limits=(NamedLimit("pdf", jobtypes=("PDF",), concurrency=2),))
#: what a reload (SIGHUP) may put in force: limits lowered, raised, removed, added, shorter
#: timeouts, partitions added and removed, named limits changed, only the rate limits
RELOADS = (THROTTLES,
           ThrottlesConfig((Throttle("one", timeout=30, concurrency=1, partition=("jobtype",)), *RATED,
                            Throttle("part", timeout=25, concurrency=2)),
                           limits=(NamedLimit("pdf", jobtypes=("PDF",), queues=("one", "free"), concurrency=1,
                                              worker=1, partition=("custom.tenant",)),)),
           ThrottlesConfig((*RATED, Throttle("per", timeout=5, worker=2, on_worker_lost="keep"),
                            Throttle("free", timeout=40, concurrency=2, slot_release="job_end")),
                           limits=(NamedLimit("pdf", jobtypes=("PDF",), concurrency=1, timeout=15,
                                              slot_release="job_end"),
                                   NamedLimit("tenants", queues=("per", "part"), concurrency=1,
                                              partition=("custom.tenant",)))),
           ThrottlesConfig(RATED))
QUEUES = ("one", "few", "per", "rated", "part", "free")
WIDS = ("A", "B", "C", "")
#: the worker processes that say HELLO and BEAT ("" is a FETCH of no process)
PROCESSES = WIDS[:-1]
HEARTBEAT_TIMEOUT = 60.0
TENANTS = ("x", "y", None)
START = 1_700_000_000.0

#: a slot key of the model: (rule name, partition values)
Key = tuple[str, tuple[Any, ...]]


class RefRule:
    """The model's own reading of a throttle or named limit: which jobs, which partition."""

    def __init__(self, entry: Throttle | NamedLimit) -> None:
        self.entry = entry
        if isinstance(entry, Throttle):
            self.name, self.queues, self.jobtypes = entry.queue, (entry.queue,), None
        else:
            self.name, self.queues, self.jobtypes = "limits:" + entry.name, entry.queues, entry.jobtypes

    def key(self, job: dict[str, Any]) -> Key | None:
        """The slot key `job` needs of this rule, None if the rule does not select it."""
        if self.queues is not None and job["queue"] not in self.queues:
            return None
        if self.jobtypes is not None and job["jobtype"] not in self.jobtypes:
            return None
        values = {"jobtype": job["jobtype"], "custom.tenant": job.get("custom", {}).get("tenant")}
        return (self.name, tuple(values[selector] for selector in self.entry.partition))


def ref_rules(config: ThrottlesConfig) -> list[RefRule]:
    return [RefRule(entry) for entry in (*config.entries, *config.limits)]


def recomputed(store: MemoryStore, config: ThrottlesConfig, now: float) -> dict[Any, Any]:
    """The slots by definition: (jid, rule) → (key, wid) of each live reservation subject to
    a rule whose timeout has not passed at `now`."""
    slots = {}
    for res in store.reservations():
        for ref_rule in ref_rules(config):
            key = ref_rule.key(res.job)
            timeout = ref_rule.entry.timeout
            if key is not None and (timeout is None or ref_rule.entry.slot_release == "job_end"
                                    or res.reserved_at + timeout > now):
                slots[res.job["jid"], ref_rule.name] = (key, res.wid)
    return slots


def server_key(key: Any) -> Key:
    """A server slot key ((rule, canonical JSON values)) in the model's form."""
    return (key[0], tuple(json.loads(value) for value in key[1]))


class ThrottleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.journal: list[list[dict[str, Any]]] = []
        self.config = THROTTLES
        #: (key, wid or None for the whole partition) → slots held above its limit, which only
        #: a reload that lowered the limit allows, and which may only shrink from then on
        self.over: dict[tuple[Key, str | None], int] = {}
        self.store, self.manager, self.throttles = self._build()
        self.serial = 0
        #: the model's FETCH grants: rate-limited key → the times FETCH handed one of its jobs out
        self.grants: defaultdict[Key, list[float]] = defaultdict(list)
        self.workers = WorkerRegistry(HEARTBEAT_TIMEOUT)
        for wid in PROCESSES:
            self._hello(wid)

    def _hello(self, wid: str) -> None:
        self.workers.register(Hello(wid), 0, lambda: None, self.now)

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.journal.append(roundtrip(ops))
        return len(self.journal)

    def _build(self) -> tuple[MemoryStore, Manager, Throttles]:
        # (replay applies ops without journaling them again)
        return enterprise_manager(Throttles, self._sink, throttles=self.config)

    # --- rules ----------------------------------------------------------------------

    @rule(queue=st.sampled_from(QUEUES), n=st.integers(1, 3), reserve_for=st.sampled_from([None, 60, 600]),
          jobtype=st.sampled_from(["T", "PDF"]), tenant=st.sampled_from(TENANTS))
    def push(self, queue: str, n: int, reserve_for: int | None, jobtype: str, tenant: str | None) -> None:
        for _ in range(n):
            self.serial += 1
            job: dict[str, Any] = {"jid": f"jid-{self.serial:08d}", "jobtype": jobtype, "args": [], "queue": queue}
            if tenant is not None:
                job["custom"] = {"tenant": tenant}
            if reserve_for is not None:
                job["reserve_for"] = reserve_for
            self.manager.push(job, self.now)

    @rule(wid=st.sampled_from(WIDS), queues=st.lists(st.sampled_from(QUEUES), min_size=1, max_size=4, unique=True))
    def fetch(self, wid: str, queues: list[str]) -> None:
        """L3, F1: the oldest job eligible for `wid` of the first queue that has one."""
        expected = next((job for queue in queues for job in self.store.queued(queue) if self._eligible(job, wid)),
                        None)
        if wid and self.workers.get(wid) is None:
            self._hello(wid)  # a reaped process reconnects
        got, _ = self.manager.fetch(queues, wid, self.now)
        assert (got and got["jid"]) == (expected and expected["jid"])
        if got is not None:
            for ref_rule in ref_rules(self.config):
                key = ref_rule.key(got)
                if key is not None and ref_rule.entry.rate is not None:
                    self.grants[key].append(self.now)

    def _eligible(self, job: dict[str, Any], wid: str | None) -> bool:
        """eligible(J, w) of protocol/spec.md §11.3, from the model's slots (None: `worker` aside)."""
        held = self._held()
        for ref_rule in ref_rules(self.config):
            key = ref_rule.key(job)
            if key is None:
                continue
            entry = ref_rule.entry
            if entry.concurrency is not None and held[key, None] >= entry.concurrency:
                return False
            if wid is not None and entry.worker is not None and held[key, wid] >= entry.worker:
                return False
            if entry.rate is not None and self._in_window(key, self.now) >= entry.rate[0]:
                return False
        return True

    def _in_window(self, key: Key, at: float) -> int:
        """The model's grants of `key` in the window (at − period, at]."""
        period = RATES[key[0]][1]
        return sum(1 for t in self.grants.get(key, ()) if t <= at and t + period > at)

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

    @precondition(lambda self: self.store.statistics().working)
    @rule(data=st.data(), cmd=st.sampled_from(["requeue", "kill", "discard"]))
    def mutate_working(self, data: st.DataObject, cmd: str) -> None:
        """An operator ends reservations (MUTATE on `working`): their slots free like an ACK's,
        their grants stay (spec.md §3 MUTATE, §11.5)."""
        jids = data.draw(st.lists(st.sampled_from(self._reserved()), min_size=1, max_size=3))
        self.manager.mutate({"cmd": cmd, "target": "working", "filter": {"jids": jids}}, self.now)
        assert not set(jids) & set(self._reserved())

    @rule(seconds=st.sampled_from([1.0, 5.0, 19.999, 20.0, 30.0, 45.5, 61.0, 700.0]))
    def advance(self, seconds: float) -> None:
        """What the due timer does while the clock moves on: run every due time in order."""
        target = self.now + seconds
        for due in due_times(self.manager, target):
            self.now = max(self.now, due)
            self.manager.run_due(self.now)
        self.now = target

    @rule(wid=st.sampled_from(PROCESSES))
    def beat(self, wid: str) -> None:
        if self.workers.beat(wid, "", None, self.now) is None:
            self._hello(wid)

    @rule()
    def reap(self) -> None:
        """The reaper's tick: each process silent past the heartbeat timeout is dropped and
        its reservations under an `on_worker_lost = "fail"` rule fail, as app.py wires it."""
        before = {res.job["jid"]: res for res in self.store.reservations()}
        lost = {worker.wid for worker in self.workers.reap(self.now)}
        failing = {jid for jid, res in before.items() if res.wid in lost
                   and any(rule.key(res.job) is not None and rule.entry.on_worker_lost == "fail"
                           for rule in ref_rules(self.config))}
        for wid in lost:
            self.manager.worker_lost(wid, self.throttles.lost(wid), self.now)
        assert set(self._reserved()) == set(before) - failing
        retries = {job["jid"]: job["failure"]["errtype"] for _, _, job in self.store.set_entries("retries")}
        assert all(retries.get(jid) == "WorkerLost" for jid in failing)

    @rule(config=st.sampled_from(RELOADS))
    def reload(self, config: ThrottlesConfig) -> None:
        """SIGHUP with other throttles (server/reload.py does the same, and wakes the waiters)."""
        self.config = config
        self.manager.features.replace(self.throttles.reconfigure(throttle_rules(config), config.warnings, self.now))
        self.over = {key: n - self._limit(key) for key, n in self._held().items() if n > self._limit(key)}

    @rule()
    def flush(self) -> None:
        self.manager.flush()
        self.grants.clear()  # FLUSH empties the rate windows

    @rule(from_snapshot=st.booleans())
    def restart(self, from_snapshot: bool) -> None:
        """Rebuild from the journal (or a snapshot of the live store): same slots, windows, classes."""
        records = snapshot_records(self.store) if from_snapshot else list(self.journal)
        store, manager, throttles = self._build()
        replay(store, records)
        throttles.run_due(self.now)  # replay does not know the clock
        assert throttles.occupancy.holders() == self.throttles.occupancy.holders()
        for key in self.grants:
            assert throttles.rate.in_window(wire_key(key), self.now) == self.throttles.rate.in_window(
                wire_key(key), self.now)
        for queue in QUEUES:
            assert dict(throttles.classes.classes(queue)) == dict(self.throttles.classes.classes(queue))
        self.journal = records if from_snapshot else self.journal
        self.store, self.manager, self.throttles = store, manager, throttles

    # --- invariants -----------------------------------------------------------------

    def _held(self) -> Counter[tuple[Key, str | None]]:
        """Slots per limited (key, None) and (key, wid)."""
        held: Counter[tuple[Key, str | None]] = Counter()
        entries = {rule.name: rule.entry for rule in ref_rules(self.config)}
        for key, wid in recomputed(self.store, self.config, self.now).values():
            if entries[key[0]].concurrency is not None:
                held[key, None] += 1
            if entries[key[0]].worker is not None:
                held[key, wid] += 1
        return held

    def _limit(self, held: tuple[Key, str | None]) -> int:
        entry = next(rule.entry for rule in ref_rules(self.config) if rule.name == held[0][0])
        value = entry.concurrency if held[1] is None else entry.worker
        assert value is not None
        return value

    @invariant()
    def occupancy_is_derived(self) -> None:
        """S3: nothing due is left undone, and the index is exactly the recomputed slots."""
        due = self.manager.next_due()
        assert due is None or due > self.now
        holders = {held: (server_key(key), wid) for held, (key, wid) in self.throttles.occupancy.holders().items()}
        assert holders == recomputed(self.store, self.config, self.now)

    @invariant()
    def overdue_is_derived(self) -> None:
        """S3 for `overdue`: the live reservations past their rule's timeout, per rule (in
        either mode; with job_end they still hold their slots, §11.2, §11.7)."""
        overdue: Counter[str] = Counter()
        for res in self.store.reservations():
            for ref in ref_rules(self.config):
                timeout = ref.entry.timeout
                if ref.key(res.job) is not None and timeout is not None and res.reserved_at + timeout <= self.now:
                    overdue[ref.name] += 1
        assert +self.throttles.occupancy.overdue == overdue

    @invariant()
    def classes_are_derived(self) -> None:
        """S3 for the class index: each queue's jobs grouped by the keys they need."""
        rules = ref_rules(self.config)
        for queue in QUEUES:
            expected: Counter[tuple[Key, ...]] = Counter()
            if any(rule.queues is None or queue in rule.queues for rule in rules):
                for job in self.store.queued(queue):
                    expected[tuple(key for rule in rules if (key := rule.key(job)) is not None)] += 1
            got = {tuple(server_key(key) for key in job_class): n
                   for job_class, n in self.throttles.classes.classes(queue)}
            assert got == dict(expected)

    @invariant()
    def a_queue_with_an_eligible_job_wakes_a_fetch(self) -> None:
        """L1: `available` (how many waiting FETCHes a queue wakes) is 0 exactly when no job
        of the queue is eligible (`worker` aside: it depends on the fetcher)."""
        for queue in QUEUES:
            eligible = any(self._eligible(job, None) for job in self.store.queued(queue))
            assert (self.manager.available(queue, self.now) > 0) == eligible

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
        for key, times in self.grants.items():
            limit = RATES[key[0]][0]
            assert all(self._in_window(key, at) <= limit for at in times)
            assert self.throttles.rate.in_window(wire_key(key), self.now) == self._in_window(key, self.now)
            assert self.throttles.rate.full(wire_key(key)) == (self._in_window(key, self.now) >= limit)


class Hello:
    """The identity a worker process's HELLO gives the registry."""

    def __init__(self, wid: str) -> None:
        self.wid, self.hostname, self.pid, self.labels, self.rss_kb = wid, "model", 1, (), 0


def wire_key(key: Key) -> Any:
    """A model key in the server's form (rule, canonical JSON values)."""
    return (key[0], tuple(json.dumps(value) for value in key[1]))


ThrottleMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestThrottles = ThrottleMachine.TestCase
