"""Model-based test of the job lifecycle: Manager + MemoryStore against a plain reference.

A hypothesis state machine pushes, fetches, acks, fails, mutates, pauses and removes
queues, moves a fake clock (running `run_due` at every due time, as the server's DueTimer
does), and restarts the store by replaying its journal or a snapshot. After every step
the whole store is compared with a reference model written here from the spec
(protocol/spec.md §3–§5) using plain dicts and lists.

No sockets and no trio: `now` is a float this test advances itself. The retry backoff's
random term comes from an rng the test controls, so every retry time is predictable.
All times are multiples of 0.25 s so float arithmetic and the microsecond timestamp
format stay exact.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from faktory_py.errors import ClientError
from faktory_py.core.lifecycle import Manager
from faktory_py.store.api import JOB_SETS
from faktory_py.store.memory import MemoryStore
from helpers.model_replay import holdings, replay, roundtrip, snapshot_records

BASE_NOW = 1_700_000_000.0
QUEUES = ("default", "high", "low")
UNKNOWN_QUEUE = "nope"
JOBTYPES = ("A", "B")
DEAD_TTL = 180 * 24 * 3600
EXPIRED = ("ReservationExpired", "Faktory job reservation expired")


# --- helpers independent of the server's code ---------------------------------------


def rfc3339(t: float) -> str:
    """Go RFC3339Nano, UTC, trailing zeros trimmed (exact for our quarter-second times)."""
    whole = math.floor(t)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    frac = t - whole
    if frac:
        text += f"{frac:.6f}"[1:].rstrip("0")
    return text + "Z"


def day_of(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(math.floor(t)))


def reservation_seconds(reserve_for: int | None) -> int:
    """§3.6: 0/absent ⇒ 1800; < 60 ⇒ 60; > 86400 ⇒ 86400."""
    if not reserve_for:
        return 1800
    return max(60, min(86400, reserve_for))


def backoff(count: int, r: int) -> int:
    """§5.3: c⁴ + 15 + R·(c+1), R in [0, 29]."""
    assert 0 <= r <= 29
    return count**4 + 15 + r * (count + 1)


class ControlledRng:
    """Stands in for random.Random: the test decides what randint returns."""

    def __init__(self) -> None:
        self.value = 0
        self.calls = 0

    def randint(self, a: int, b: int) -> int:
        assert (a, b) == (0, 29), (a, b)
        self.calls += 1
        return self.value


def store_state(store: MemoryStore) -> dict[str, Any]:
    """Everything a rebuilt store must reproduce, in comparable form."""
    stats = store.statistics()
    return {
        **holdings(store),
        "paused": stats.paused,
        "processed": stats.processed,
        "failures": stats.failures,
        "history": store.daily_counts(),
    }


# --- the reference model ---------------------------------------------------------------


@dataclass
class MJob:
    jid: str
    queue: str
    jobtype: str
    retry: int
    args: list[Any]
    created_at: str
    at: str | None
    reserve_for: int | None
    enqueued_at: str | None = None
    failure: dict[str, Any] | None = None
    runs: int = 0
    enqueues: int = 0
    revived: bool = False  # requeued out of the dead set by hand: may run more than retry+1 times

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"retry": self.retry}
        if self.failure:
            out["failure"] = dict(self.failure)
        out.update(jid=self.jid, queue=self.queue, jobtype=self.jobtype, created_at=self.created_at)
        if self.enqueued_at:
            out["enqueued_at"] = self.enqueued_at
        if self.at:
            out["at"] = self.at
        out["args"] = self.args
        if self.reserve_for:
            out["reserve_for"] = self.reserve_for
        return out


@dataclass
class Model:
    now: float = BASE_NOW
    jobs: dict[str, MJob] = field(default_factory=dict)
    queues: dict[str, list[str]] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    sets: dict[str, dict[str, float]] = field(
        default_factory=lambda: {"scheduled": {}, "retries": {}, "dead": {}})
    #: jid → (expires_at, wid, reserved_at)
    working: dict[str, tuple[float, str, float]] = field(default_factory=dict)
    processed: int = 0
    failures: int = 0
    history: dict[str, list[int]] = field(default_factory=dict)
    #: (jid, enqueue number) of every delivery: a job is delivered at most once per enqueue
    delivered: set[tuple[str, int]] = field(default_factory=set)

    def enqueue(self, jid: str, stamp: bool) -> None:
        job = self.jobs[jid]
        if stamp:
            job.enqueued_at = rfc3339(self.now)
        job.enqueues += 1
        self.queues.setdefault(job.queue, []).append(jid)

    def fetch(self, names: list[str], wid: str) -> str | None:
        for name in names:
            if self.queues.get(name) and name not in self.paused:
                jid = self.queues[name].pop(0)
                job = self.jobs[jid]
                key = (jid, job.enqueues)
                assert key not in self.delivered, f"{jid} delivered twice for one enqueue"
                self.delivered.add(key)
                job.runs += 1
                self.working[jid] = (self.now + reservation_seconds(job.reserve_for), wid, self.now)
                return jid
        return None

    def count(self, failed: bool) -> None:
        daily = self.history.setdefault(day_of(self.now), [0, 0])
        self.processed += 1
        daily[0] += 1
        if failed:
            self.failures += 1
            daily[1] += 1

    def ack(self, jid: str) -> None:
        if jid in self.working:
            del self.working[jid]
            del self.jobs[jid]
            self.count(failed=False)

    def fail(self, jid: str, errtype: str, message: str, backtrace: list[str], r: int) -> str:
        """§5.3; returns where the job went: dropped / retries / dead."""
        del self.working[jid]
        self.count(failed=True)
        job = self.jobs[jid]
        if job.failure is None:
            failure = {"retry_count": 0, "remaining": job.retry, "failed_at": rfc3339(self.now)}
        else:
            failure = dict(job.failure)
            failure["retry_count"] += 1
            if failure["remaining"] > 0:
                failure["remaining"] -= 1
        failure["message"] = message.strip() or "unknown"
        failure["errtype"] = errtype.strip() or "unknown"
        if backtrace:
            failure["backtrace"] = backtrace[:50]
        else:
            failure.pop("backtrace", None)
        count = failure["retry_count"]
        if job.retry == 0:
            del self.jobs[jid]
            return "dropped"
        if count < job.retry:
            delay = backoff(count, r)
            if count == 0:
                assert 15 <= delay <= 44
            failure["next_at"] = rfc3339(self.now + delay)
            job.failure = failure
            self.sets["retries"][jid] = self.now + delay
            return "retries"
        job.failure = failure
        self.sets["dead"][jid] = self.now + DEAD_TTL
        return "dead"

    def next_due(self) -> float | None:
        scores = [s for entries in self.sets.values() for s in entries.values()]
        scores += [expires for expires, _wid, _at in self.working.values()]
        return min(scores) if scores else None

    def run_due(self, r: int) -> None:
        now = self.now
        for set_name in ("scheduled", "retries"):
            entries = self.sets[set_name]
            for score, jid in sorted((s, j) for j, s in entries.items() if s <= now):
                del entries[jid]
                self.enqueue(jid, stamp=True)
        dead = self.sets["dead"]
        for jid in [j for j, s in dead.items() if s <= now]:
            event("dead purged")
            del dead[jid]
            del self.jobs[jid]
        for expires, jid in sorted((e, j) for j, (e, _w, _a) in self.working.items() if e <= now):
            event(f"expired -> {self.fail(jid, *EXPIRED, [], r)}")

    def matching(self, target: str, filter_: dict[str, Any] | None) -> list[str]:
        entries = [jid for _score, jid in sorted((s, j) for j, s in self.sets[target].items())]
        if not filter_:
            return entries
        if filter_.get("jids"):
            wanted = set(filter_["jids"])
            return [jid for jid in entries if jid in wanted]
        if filter_.get("jobtype"):
            return [jid for jid in entries if self.jobs[jid].jobtype == filter_["jobtype"]]
        return entries

    def mutate(self, cmd: str, target: str, filter_: dict[str, Any] | None) -> None:
        entries = self.sets[target]
        if cmd == "clear":
            for jid in list(entries):
                del entries[jid]
                del self.jobs[jid]
            return
        for jid in self.matching(target, filter_):
            del entries[jid]
            if cmd == "discard":
                del self.jobs[jid]
            elif cmd == "kill":
                self.sets["dead"][jid] = self.now + DEAD_TTL
            else:  # requeue: payload unchanged, enqueued_at not refreshed
                if target == "dead":
                    self.jobs[jid].revived = True
                    event("requeued from dead")
                self.enqueue(jid, stamp=False)

    def named(self, names: list[str]) -> list[str]:
        return list(self.queues) if names and names[0] == "*" else names

    def flush(self) -> None:
        for jids in self.queues.values():
            for jid in jids:
                del self.jobs[jid]
            jids.clear()
        for entries in self.sets.values():
            for jid in entries:
                del self.jobs[jid]
            entries.clear()
        for jid in self.working:
            del self.jobs[jid]
        self.working.clear()
        self.paused.clear()
        self.processed = self.failures = 0
        self.history.clear()


# --- strategies ------------------------------------------------------------------------

retries = st.sampled_from([None, -1, 0, 1, 2, 25])
reserve_fors = st.sampled_from([None, 0, -5, 30, 60, 120])
at_offsets = st.one_of(st.none(), st.sampled_from([-100, 0, 1, 5, 60, 3600, 2 * 86400]))
queue_names = st.sampled_from(QUEUES)
job_specs = st.fixed_dictionaries({
    "queue": queue_names, "jobtype": st.sampled_from(JOBTYPES), "retry": retries,
    "at": at_offsets, "reserve_for": reserve_fors, "omit_default_queue": st.booleans(),
})
INVALID_KINDS = ("short_jid", "no_jobtype", "no_args", "reserve_too_long", "bad_queue", "bad_at", "not_object")
time_steps = st.one_of(
    st.integers(0, 240).map(lambda q: q / 4),                     # up to a minute, in 0.25 s
    st.integers(60, 4 * 3600).map(float),                         # minutes to hours
    st.integers(1, 200).map(lambda d: d * 86400.0 + 0.5),         # days, past the dead TTL
)
random_terms = st.integers(0, 29)


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.rng = ControlledRng()
        self.journal: list[list[dict[str, Any]]] = []
        self.store = self._new_store()
        self.manager = Manager(self.store, self.rng)  # type: ignore[arg-type]
        self.serial = 0

    # --- plumbing ---------------------------------------------------------------

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.journal.append(roundtrip(ops))
        return len(self.journal)

    def _new_store(self) -> MemoryStore:
        return MemoryStore(sink=self._sink)

    def _new_jid(self) -> str:
        self.serial += 1
        return f"jid-{self.serial:08d}"

    @property
    def now(self) -> float:
        return self.model.now

    def _raw_job(self, spec: dict[str, Any], jid: str) -> tuple[dict[str, Any], MJob]:
        raw: dict[str, Any] = {"jid": jid, "jobtype": spec["jobtype"], "args": [self.serial],
                               "priority": 5}  # an unknown key Faktory drops
        if not (spec["omit_default_queue"] and spec["queue"] == "default"):
            raw["queue"] = spec["queue"]
        if spec["retry"] is not None:
            raw["retry"] = spec["retry"]
        if spec["reserve_for"] is not None:
            raw["reserve_for"] = spec["reserve_for"]
        at = None
        if spec["at"] is not None:
            at = rfc3339(math.floor(self.now) + spec["at"])
            raw["at"] = at
        job = MJob(jid, spec["queue"], spec["jobtype"],
                   25 if spec["retry"] is None else spec["retry"], [self.serial],
                   rfc3339(self.now), at, spec["reserve_for"])
        return raw, job

    def _model_push(self, job: MJob, spec: dict[str, Any]) -> None:
        self.model.jobs[job.jid] = job
        if spec["at"] is not None and math.floor(self.now) + spec["at"] > self.now:
            self.model.sets["scheduled"][job.jid] = math.floor(self.now) + spec["at"]
        else:
            self.model.enqueue(job.jid, stamp=True)

    def _run_timer_until(self, target: float, r: int) -> None:
        """What DueTimer does while the clock moves to `target`: run every due time in order."""
        while True:
            due = self.model.next_due()
            assert self.manager.next_due() == due
            if due is None or due > target:
                break
            self.model.now = max(self.model.now, due)
            self.manager.run_due(self.now)
            self.model.run_due(r)
        self.model.now = target

    # --- rules ------------------------------------------------------------------

    @rule(spec=job_specs)
    def push(self, spec: dict[str, Any]) -> None:
        raw, job = self._raw_job(spec, self._new_jid())
        self.manager.push(raw, self.now)
        self._model_push(job, spec)

    @rule(specs=st.lists(st.one_of(job_specs, st.sampled_from(INVALID_KINDS)), min_size=1, max_size=5))
    def push_bulk(self, specs: list[Any]) -> None:
        raws: list[Any] = []
        valid: list[tuple[MJob, dict[str, Any]]] = []
        expected: dict[str, str] = {}
        for spec in specs:
            if isinstance(spec, dict):
                raw, job = self._raw_job(spec, self._new_jid())
                raws.append(raw)
                valid.append((job, spec))
                continue
            jid = self._new_jid()
            raw = {"jid": jid, "jobtype": "A", "args": []}
            if spec == "short_jid":
                raw["jid"] = jid = f"s{self.serial}"
                expected[jid] = "jobs must have a reasonable jid parameter"
            elif spec == "no_jobtype":
                del raw["jobtype"]
                expected[jid] = "jobs must have a jobtype parameter"
            elif spec == "no_args":
                del raw["args"]
                expected[jid] = "jobs must have an args parameter"
            elif spec == "reserve_too_long":
                raw["reserve_for"] = 86401
                expected[jid] = "jobs cannot be reserved for more than one day"
            elif spec == "bad_queue":
                raw["queue"] = "bad queue!"
                expected[jid] = 'cannot get "bad queue!" queue'
            elif spec == "bad_at":
                raw["at"] = "tomorrow"
                expected[jid] = "invalid timestamp for 'at'"
            else:
                raw = [jid]
                expected[""] = "invalid JSON"
            raws.append(raw)
        errors, _position = self.manager.push_bulk(raws, self.now)
        assert set(errors) == set(expected)
        for jid, prefix in expected.items():
            assert errors[jid].startswith(prefix), (errors[jid], prefix)
        for job, spec in valid:
            self._model_push(job, spec)

    @initialize(specs=st.lists(job_specs, max_size=4))
    def some_jobs(self, specs: list[dict[str, Any]]) -> None:
        for spec in specs:
            self.push(spec)

    def _fetch(self, names: list[str], wid: str) -> str | None:
        job, _position = self.manager.fetch(names, wid, self.now)
        expected = self.model.fetch(names, wid)
        if expected is None:
            assert job is None
            return None
        assert job is not None and job["jid"] == expected, (job, expected)
        assert job == self.model.jobs[expected].payload()
        return expected

    @rule(data=st.data())
    def fetch(self, data: st.DataObject) -> None:
        names = data.draw(st.lists(st.sampled_from(QUEUES + (UNKNOWN_QUEUE,)), min_size=1, max_size=4,
                                   unique=True), label="queues")
        wid = data.draw(st.sampled_from(["", "w1", "w2"]), label="wid")
        self._fetch(names, wid)

    @rule(names=st.permutations(QUEUES), outcome=st.sampled_from(["ack", "fail", "fail", "keep"]),
          r=random_terms)
    def work_one(self, names: list[str], outcome: str, r: int) -> None:
        """A worker's cycle, to reach deep retry chains quickly: FETCH then ACK or FAIL."""
        jid = self._fetch(list(names), "w1")
        if jid is None or outcome == "keep":
            return
        if outcome == "ack":
            self.manager.ack(jid, self.now)
            self.model.ack(jid)
            return
        self._fail(jid, "E", "m", [], r)

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        choices = sorted(self.model.working) + sorted(self.model.jobs)[:5] + ["unknown-jid-0001"]
        jid = data.draw(st.sampled_from(choices), label="jid")
        self.manager.ack(jid, self.now)
        self.model.ack(jid)

    @precondition(lambda self: self.model.working)
    @rule(data=st.data(), errtype=st.sampled_from(["", "RuntimeError", "  Padded  "]),
          message=st.sampled_from(["", "boom", " spaced "]),
          backtrace=st.sampled_from([[], ["a.py:1", "b.py:2"], [f"l{i}" for i in range(60)]]),
          r=random_terms)
    def fail(self, data: st.DataObject, errtype: str, message: str, backtrace: list[str], r: int) -> None:
        jid = data.draw(st.sampled_from(sorted(self.model.working)), label="jid")
        self._fail(jid, errtype, message, backtrace, r)

    def _fail(self, jid: str, errtype: str, message: str, backtrace: list[str], r: int) -> None:
        self.rng.value = r
        calls = self.rng.calls
        self.manager.fail(jid, errtype, message, backtrace, self.now)
        where = self.model.fail(jid, errtype, message, backtrace, r)
        event(f"fail -> {where}")
        assert self.rng.calls == calls + (where == "retries")

    @rule(data=st.data())
    def fail_not_reserved(self, data: st.DataObject) -> None:
        others = [j for j in sorted(self.model.jobs) if j not in self.model.working][:5]
        jid = data.draw(st.sampled_from(others + ["unknown-jid-0001", ""]), label="jid")
        with pytest.raises(ClientError) as info:
            self.manager.fail(jid, "E", "m", [], self.now)
        assert str(info.value) == (f"Job not found {jid}" if jid else "missing JID")

    @rule(data=st.data(), cmd=st.sampled_from(["clear", "discard", "kill", "requeue"]),
          set_name=st.sampled_from(["scheduled", "retries", "dead"]))
    def mutate(self, data: st.DataObject, cmd: str, set_name: str) -> None:
        target = set_name
        members = sorted(self.model.sets[target])
        kind = data.draw(st.sampled_from(["none", "empty", "jids", "jobtype", "jids+jobtype"]), label="filter")
        filter_: dict[str, Any] | None
        if kind == "none":
            filter_ = None
        elif kind == "empty":
            filter_ = {}
        elif kind == "jobtype":
            filter_ = {"jobtype": data.draw(st.sampled_from(JOBTYPES), label="jobtype")}
        else:
            jids = data.draw(st.lists(st.sampled_from(members + ["unknown-jid-0001"]), max_size=3),
                             label="jids")
            filter_ = {"jids": jids}
            if kind == "jids+jobtype":  # jids win; with an empty jids list the jobtype applies
                filter_["jobtype"] = data.draw(st.sampled_from(JOBTYPES), label="jobtype")
        request: dict[str, Any] = {"cmd": cmd, "target": target}
        if filter_ is not None:
            request["filter"] = filter_
        self.manager.mutate(request, self.now)
        self.model.mutate(cmd, target, filter_)

    @rule(names=st.one_of(st.just(["*"]), st.lists(st.sampled_from(QUEUES + (UNKNOWN_QUEUE,)), min_size=1,
                                                    max_size=3)))
    def pause(self, names: list[str]) -> None:
        self.manager.pause(names)
        self.model.paused.update(n for n in self.model.named(names) if n in self.model.queues)

    @rule(names=st.one_of(st.just(["*"]), st.lists(st.sampled_from(QUEUES + (UNKNOWN_QUEUE,)), min_size=1,
                                                    max_size=3)))
    def resume(self, names: list[str]) -> None:
        self.manager.resume(names)
        self.model.paused.difference_update(self.model.named(names))

    @rule(names=st.lists(st.sampled_from(QUEUES + (UNKNOWN_QUEUE,)), min_size=1, max_size=2),
          chance=st.integers(0, 3))
    def remove(self, names: list[str], chance: int) -> None:
        if chance:  # keep this destructive rule rare
            return
        self.manager.remove(names, self.now)
        for name in self.model.named(names):
            for jid in self.model.queues.pop(name, []):
                del self.model.jobs[jid]
            self.model.paused.discard(name)

    @rule(chance=st.integers(0, 9))
    def flush(self, chance: int) -> None:
        if chance:
            return
        self.manager.flush()
        self.model.flush()

    @rule(step=time_steps, r=random_terms)
    def advance(self, step: float, r: int) -> None:
        self.rng.value = r
        self._run_timer_until(self.now + step, r)

    @rule()
    def restart_from_journal(self) -> None:
        rebuilt = replay(self._new_store(), self.journal)
        assert store_state(rebuilt) == store_state(self.store)
        self.store = rebuilt
        self.manager = Manager(rebuilt, self.rng)  # type: ignore[arg-type]

    @rule()
    def restart_from_snapshot(self) -> None:
        records = snapshot_records(self.store)
        rebuilt = replay(self._new_store(), records)
        assert store_state(rebuilt) == store_state(self.store)
        self.journal = records  # compaction: the snapshot replaces the older records
        self.store = rebuilt
        self.manager = Manager(rebuilt, self.rng)  # type: ignore[arg-type]

    # --- invariants -------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        store, model = self.store, self.model
        stats = store.statistics()
        assert set(store.queue_names()) == set(model.queues)
        for name in store.queue_names():
            pending = list(store.queued(name))
            assert [job["jid"] for job in pending] == model.queues[name], name
            for job in pending:
                assert job == model.jobs[job["jid"]].payload()
        assert stats.paused == model.paused
        for name in JOB_SETS:
            entries = list(store.set_entries(name))
            assert {jid: score for score, jid, _job in entries} == model.sets[name], name
            for _score, jid, job in entries:
                assert job == model.jobs[jid].payload()
        assert {res.job["jid"]: (res.expires_at, res.wid, res.reserved_at)
                for res in store.reservations()} == model.working
        for res in store.reservations():
            assert res.job == model.jobs[res.job["jid"]].payload()
        assert (stats.processed, stats.failures) == (model.processed, model.failures)
        assert {day: list(pair) for day, pair in store.daily_counts().items()} == model.history
        assert (stats.scheduled, stats.retries, stats.dead, stats.working) == (
            len(model.sets["scheduled"]), len(model.sets["retries"]), len(model.sets["dead"]), len(model.working))

    @invariant()
    def every_job_in_one_place(self) -> None:
        places = [jid for pending in self.model.queues.values() for jid in pending]
        places += [jid for entries in self.model.sets.values() for jid in entries]
        places += list(self.model.working)
        assert len(places) == len(set(places))
        assert set(places) == set(self.model.jobs)

    @invariant()
    def runs_bounded_by_retry(self) -> None:
        """§5.3: a job runs at most retry + 1 times (retry ≤ 0: once), unless revived by hand."""
        for job in self.model.jobs.values():
            if not job.revived:
                assert job.runs <= max(job.retry, 0) + 1, job
            if job.failure is not None and not job.revived and job.retry > 0:
                assert job.failure["remaining"] == job.retry - job.failure["retry_count"]

    @invariant()
    def nothing_overdue(self) -> None:
        due = self.manager.next_due()
        assert due is None or due > self.now


LifecycleMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLifecycle = LifecycleMachine.TestCase


# --- focused examples of §5.3 the machine might take long to hit -------------------------


def _manager(r: int = 0) -> tuple[Manager, ControlledRng]:
    rng = ControlledRng()
    rng.value = r
    return Manager(MemoryStore(), rng), rng  # type: ignore[arg-type]


def test_retry_chain_runs_retry_plus_one_times() -> None:
    manager, _rng = _manager(r=29)
    now = BASE_NOW
    manager.push({"jid": "chain-0001", "jobtype": "A", "args": [], "retry": 2}, now)
    runs = 0
    while True:
        job, _ = manager.fetch(["default"], "w", now)
        if job is None:
            due = manager.next_due()
            if due is None or manager.store.set_size("dead"):
                break
            now = due
            manager.run_due(now)
            continue
        runs += 1
        manager.fail(job["jid"], "E", "m", [], now)
    assert runs == 3
    (_score, _jid, dead), = manager.store.set_entries("dead")
    assert dead["failure"]["retry_count"] == 2 and dead["failure"]["remaining"] == 0
    stats = manager.store.statistics()
    assert stats.processed == stats.failures == 3


@pytest.mark.parametrize("retry, where", [(0, None), (-1, "dead"), (1, "retries")])
def test_first_failure_decision(retry: int, where: str | None) -> None:
    manager, _rng = _manager()
    manager.push({"jid": "first-0001", "jobtype": "A", "args": [], "retry": retry}, BASE_NOW)
    manager.fetch(["default"], "w", BASE_NOW)
    manager.fail("first-0001", "E", "m", [], BASE_NOW)
    stats = manager.store.statistics()
    assert stats.working == 0
    for name in ("retries", "dead"):
        assert getattr(stats, name) == (1 if name == where else 0)


def test_negative_retry_remaining_is_not_decremented() -> None:
    """§5.3 (and Faktory): `remaining` is only decremented while it is above zero."""
    manager, _rng = _manager()
    manager.push({"jid": "neg-00001", "jobtype": "A", "args": [], "retry": -1}, BASE_NOW)
    for _ in range(2):
        manager.fetch(["default"], "w", BASE_NOW)
        manager.fail("neg-00001", "E", "m", [], BASE_NOW)
        manager.mutate({"cmd": "requeue", "target": "dead"}, BASE_NOW)
    (job,) = manager.store.queued("default")
    assert job["failure"]["retry_count"] == 1
    assert job["failure"]["remaining"] == -1


def test_reservation_expiry_takes_failure_path() -> None:
    manager, _rng = _manager(r=0)
    manager.push({"jid": "expire-01", "jobtype": "A", "args": [], "reserve_for": 60}, BASE_NOW)
    manager.fetch(["default"], "w", BASE_NOW)
    assert manager.next_due() == BASE_NOW + 60
    manager.run_due(BASE_NOW + 59.75)
    assert manager.store.statistics().working == 1
    manager.run_due(BASE_NOW + 60)
    (score, _jid, job), = manager.store.set_entries("retries")
    assert score == BASE_NOW + 60 + 15
    assert job["failure"]["errtype"] == "ReservationExpired"
    assert job["failure"]["message"] == "Faktory job reservation expired"
    assert manager.reaped_reservations == 1
    assert manager.store.statistics().failures == 1
