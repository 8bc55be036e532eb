"""Property tests of unique jobs (faktory_py/features/unique.py) against a plain reference model.

A hypothesis state machine drives Manager + MemoryStore with the Enterprise extensions
(expiry, unique, tracking) through pushes (single, PUSHB, re-pushes of a job's own jid),
fetches, ACKs, FAILs, MUTATE, FLUSH, a fake clock running the timers' work at every due
time, and restarts from the journal or a snapshot. It checks the properties the issue
asks for:

* a unique job is never lost, and never refused or discarded because of its own lock:
  every accepted job stays in exactly one place until it is ACKed, discarded by retry
  rules or by hand, purged from the dead set, or dropped at FETCH because it expired;
  a PUSH carrying the lock owner's jid is never refused;
* two identical pushes (same jobtype, args — map key order ignored — and queue) by
  different jids within the lock's lifetime never both get +OK (checked against the push
  history, independently of the lock table);
* retries, schedule promotions, MUTATE requeues and reservation expiries never collide
  with the job's own lock (the job keeps its lock while it retries);
* the extensions' state (locks, tracking records, expired count) is equal after journal
  replay and after snapshot replay.

The model's lock rules are written here from the module's documented semantics, not from
its code: key = (jobtype, args with sorted keys, queue); TTL = (at or now) + unique_for;
released by its owner at FETCH (unique_until start), ACK, FAIL into dead or discarded, or a
drop at FETCH for expiry.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from faktory_py.features.expiry import ExpiringJobs
from faktory_py.errors import ClientError
from faktory_py.core.lifecycle import Manager
from faktory_py.core.registry import Registry
from faktory_py.store.api import JOB_SETS
from faktory_py.store.memory import MemoryStore
from faktory_py.util.timefmt import format_time
from faktory_py.features.tracking import JobTracking
from faktory_py.features.unique import UniqueJobs, lock_table
from helpers.model_replay import due_times, holdings, replay, roundtrip, snapshot_records, working_jids

BASE_NOW = 1_700_000_000.0
QUEUES = ("default", "other")
ARGS = ([1], [2], [{"a": 1, "b": [1, 2]}], [{"b": [1, 2], "a": 1}])  # the last two are one key


def model_key(raw: dict[str, Any]) -> tuple[str, str, str]:
    return raw["jobtype"], json.dumps(raw["args"], sort_keys=True), raw.get("queue", "default")


def places(store: MemoryStore) -> list[str]:
    """Every jid the store holds, once per place it is held in."""
    out = [job["jid"] for name in store.queue_names() for job in store.queued(name)]
    out += [jid for name in JOB_SETS for _s, jid, _j in store.set_entries(name)]
    out += [res.job["jid"] for res in store.reservations()]
    return out


def full_state(store: MemoryStore, extensions: list[Any]) -> dict[str, Any]:
    expiry, unique, tracking = extensions
    return {
        **holdings(store),
        "locks": lock_table(unique),
        "tracking": {jid: (score, record) for score, jid, record in tracking.records.items()},
        "expired": expiry.total_expired,
    }


@dataclass
class Pushed:
    raw: dict[str, Any]
    key: tuple[str, str, str]
    unique_for: float | None
    until: str
    at: float | None
    pushed_at: float


@dataclass
class Model:
    now: float = BASE_NOW
    #: live jid → how it was pushed
    live: dict[str, Pushed] = field(default_factory=dict)
    #: key → (owner jid, expires_at)
    locks: dict[tuple[str, str, str], tuple[str, float]] = field(default_factory=dict)
    #: accepted unique pushes: [key, jid, from, until] where until shrinks on release
    history: list[list[Any]] = field(default_factory=list)

    def holder(self, key: tuple[str, str, str]) -> str | None:
        found = self.locks.get(key)
        return found[0] if found is not None and found[1] > self.now else None

    def push(self, jid: str, pushed: Pushed) -> bool:
        """Whether the PUSH is accepted; updates locks and history if so."""
        if pushed.unique_for is None:
            self.live[jid] = pushed
            return True
        holder = self.holder(pushed.key)
        if holder is not None and holder != jid:
            return False
        expires = (pushed.at if pushed.at is not None and pushed.at > self.now else self.now) + pushed.unique_for
        if holder == jid:
            expires = max(expires, self.locks[pushed.key][1])
        self.locks[pushed.key] = (jid, expires)
        self.live[jid] = pushed
        self.history.append([pushed.key, jid, self.now, expires])
        return True

    def release(self, jid: str) -> None:
        pushed = self.live.get(jid)
        if pushed is None or pushed.unique_for is None:
            return
        found = self.locks.get(pushed.key)
        if found is not None and found[0] == jid:
            del self.locks[pushed.key]
            for entry in self.history:
                if entry[0] == pushed.key and entry[1] == jid:
                    entry[3] = min(entry[3], self.now)

    def live_locks(self) -> dict[tuple[str, str, str], tuple[str, float]]:
        return {key: lock for key, lock in self.locks.items() if lock[1] > self.now}


unique_fors = st.sampled_from([None, 1, 2.5, 30, 3600])
untils = st.sampled_from([None, "success", "start"])
at_offsets = st.sampled_from([None, None, -5, 3, 40])
retries = st.sampled_from([0, 1, 2, -1])
expires = st.sampled_from([None, None, None, 2, 50])
job_specs = st.fixed_dictionaries({
    "args": st.sampled_from(range(len(ARGS))), "queue": st.sampled_from(QUEUES),
    "unique_for": unique_fors, "until": untils, "at": at_offsets, "retry": retries,
    "expires_in": expires, "track": st.booleans(),
})
time_steps = st.one_of(
    st.integers(0, 40).map(lambda q: q / 4),
    st.integers(10, 5000).map(float),
    st.integers(1, 200).map(lambda d: d * 86400.0),
)


class UniqueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.journal: list[list[dict[str, Any]]] = []
        self.rng = random.Random(7)
        self.serial = 0
        self._build(MemoryStore(sink=self._sink))

    # --- plumbing ---------------------------------------------------------------

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.journal.append(roundtrip(ops))
        return len(self.journal)

    def _build(self, store: MemoryStore, records: list[list[dict[str, Any]]] | None = None) -> None:
        extensions = [ExpiringJobs(store), UniqueJobs(store), JobTracking(store)]
        replay(store, records or [])
        self.store, self.extensions = store, extensions
        self.manager = Manager(store, self.rng, Registry(f.feature() for f in extensions))

    @property
    def now(self) -> float:
        return self.model.now

    def _raw(self, spec: dict[str, Any]) -> tuple[dict[str, Any], Pushed]:
        self.serial += 1
        raw: dict[str, Any] = {"jid": f"jid-{self.serial:08d}", "jobtype": "U",
                               "args": ARGS[spec["args"]], "queue": spec["queue"], "retry": spec["retry"]}
        custom: dict[str, Any] = {}
        if spec["unique_for"] is not None:
            custom["unique_for"] = spec["unique_for"]
            if spec["until"] is not None:
                custom["unique_until"] = spec["until"]
        if spec["expires_in"] is not None:
            custom["expires_in"] = spec["expires_in"]
        if spec["track"]:
            custom["track"] = 1
        if custom:
            raw["custom"] = custom
        at = None
        if spec["at"] is not None:
            at = self.now + spec["at"]
            raw["at"] = format_time(at)
        pushed = Pushed(raw, model_key(raw), spec["unique_for"], spec["until"] or "success", at, self.now)
        return raw, pushed

    def _check_history(self, pushed: Pushed, jid: str) -> None:
        """No other jid's accepted push of the same key is still within its lock."""
        for key, other, start, until in self.model.history[:-1]:
            if key == pushed.key and other != jid:
                assert not (start <= self.now < until), (
                    f"{jid} and {other} both accepted for {key} at {self.now} (other locked {start}..{until})")

    def _push_one(self, raw: dict[str, Any], pushed: Pushed, bulk: bool = False) -> None:
        jid = raw["jid"]
        holder = self.model.holder(pushed.key) if pushed.unique_for is not None else None
        expected = self.model.push(jid, pushed)
        if bulk:
            errors, _ = self.manager.push_bulk([raw], self.now)
            accepted = not errors
            if not accepted:
                assert errors == {jid: "NOTUNIQUE Job not unique"}
        else:
            try:
                self.manager.push(raw, self.now)
                accepted = True
            except ClientError as exc:
                assert (exc.code, str(exc)) == ("NOTUNIQUE", "Job not unique")
                accepted = False
        assert accepted == expected, (raw, holder, self.model.locks)
        if holder == jid:
            assert accepted, "a job was refused because of its own lock"
        if accepted and pushed.unique_for is not None:
            self._check_history(pushed, jid)
        event("push accepted" if accepted else "push NOTUNIQUE")

    def _gone(self, jid: str, outcome: str) -> None:
        """A job left the server through `outcome`; the model releases its lock if that rule says so."""
        self.model.release(jid)  # every way out releases the owner's lock (a retry is not a way out)
        if outcome != "dead":
            del self.model.live[jid]

    def _where(self, jid: str) -> str:
        if self.store.set_entry("retries", jid) is not None:
            return "retry"
        if self.store.set_entry("dead", jid) is not None:
            return "dead"
        if self.store.reservation(jid) is not None:
            return "working"
        return "dropped"

    # --- rules ------------------------------------------------------------------

    @rule(spec=job_specs)
    def push(self, spec: dict[str, Any]) -> None:
        raw, pushed = self._raw(spec)
        self._push_one(raw, pushed)

    @rule(specs=st.lists(job_specs, min_size=1, max_size=4))
    def push_bulk(self, specs: list[dict[str, Any]]) -> None:
        for spec in specs:  # each job of a PUSHB is committed on its own: one at a time here
            raw, pushed = self._raw(spec)
            self._push_one(raw, pushed, bulk=True)

    @precondition(lambda self: self.store.set_size("scheduled"))
    @rule(data=st.data())
    def repush_own_jid(self, data: st.DataObject) -> None:
        """A producer re-sends a PUSH it is unsure about: same payload, same jid."""
        jids = sorted(jid for _s, jid, _j in self.store.set_entries("scheduled"))
        jid = data.draw(st.sampled_from(jids), label="jid")
        pushed = self.model.live[jid]
        self._push_one(pushed.raw, Pushed(pushed.raw, pushed.key, pushed.unique_for, pushed.until,
                                          pushed.at, self.now))

    @rule(names=st.permutations(QUEUES), outcome=st.sampled_from(["ack", "fail", "keep"]))
    def work_one(self, names: list[str], outcome: str) -> None:
        before = {job["jid"] for name in names for job in self.store.queued(name)}
        job, _ = self.manager.fetch(list(names), "w1", self.now)
        after = {j["jid"] for name in names for j in self.store.queued(name)}
        fetched = job["jid"] if job is not None else None
        for jid in sorted(before - after - {fetched}):
            event("expired at fetch")
            self._gone(jid, "expired")
        if job is None:
            return
        pushed = self.model.live[fetched]
        if pushed.unique_for is not None and pushed.until == "start":
            self.model.release(fetched)
        if outcome == "ack":
            self.manager.ack(fetched, self.now)
            self._gone(fetched, "ack")
        elif outcome == "fail":
            self.manager.fail(fetched, "E", "m", [], self.now)
            where = self._where(fetched)
            event(f"fail -> {where}")
            if where != "retry":
                self._gone(fetched, where)

    @precondition(lambda self: self.store.statistics().working)
    @rule(data=st.data(), ack=st.booleans())
    def finish_working(self, data: st.DataObject, ack: bool) -> None:
        jid = data.draw(st.sampled_from(sorted(working_jids(self.store))))
        if ack:
            self.manager.ack(jid, self.now)
            self._gone(jid, "ack")
            return
        self.manager.fail(jid, "E", "m", [], self.now)
        where = self._where(jid)
        if where != "retry":
            self._gone(jid, where)

    @rule(cmd=st.sampled_from(["requeue", "kill", "discard"]),
          set_name=st.sampled_from(["scheduled", "retries", "dead"]))
    def mutate(self, cmd: str, set_name: str) -> None:
        target = set_name  # (`target` is a reserved argument name of @rule)
        members = [jid for _s, jid, _j in self.store.set_entries(target)]
        self.manager.mutate({"cmd": cmd, "target": target}, self.now)
        if cmd == "discard":
            for jid in members:
                del self.model.live[jid]  # by hand: the lock stays until its TTL (documented)

    @rule(chance=st.integers(0, 15))
    def flush(self, chance: int) -> None:
        if chance:
            return
        self.manager.flush()
        self.model.live.clear()
        self.model.locks.clear()
        self.model.history.clear()

    @rule(step=time_steps)
    def advance(self, step: float) -> None:
        target = self.now + step
        for due in due_times(self.manager, target):
            self.model.now = max(self.now, due)
            working = working_jids(self.store)
            dead = {jid for _s, jid, _j in self.store.set_entries("dead")}
            self.manager.run_due(self.now)
            for jid in sorted(dead - {j for _s, j, _x in self.store.set_entries("dead")}):
                if jid not in working:
                    event("dead purged")
                    del self.model.live[jid]
            for jid in sorted(working - working_jids(self.store)):
                where = self._where(jid)
                event(f"reservation expired -> {where}")
                if where != "retry":
                    self._gone(jid, where)
        self.model.now = target

    @rule()
    def restart_from_journal(self) -> None:
        before = full_state(self.store, self.extensions)
        self._build(MemoryStore(sink=self._sink), self.journal)
        assert full_state(self.store, self.extensions) == before

    @rule()
    def restart_from_snapshot(self) -> None:
        before = full_state(self.store, self.extensions)
        records = snapshot_records(self.store)
        self.journal = records
        self._build(MemoryStore(sink=self._sink), records)
        assert full_state(self.store, self.extensions) == before

    # --- invariants -------------------------------------------------------------

    @invariant()
    def no_job_lost(self) -> None:
        held = places(self.store)
        assert len(held) == len(set(held)), "a job is in two places"
        assert set(held) == set(self.model.live), (set(held) ^ set(self.model.live))

    @invariant()
    def locks_match_model(self) -> None:
        unique = self.extensions[1]
        live = {key: (jid, expires) for key, (expires, jid) in lock_table(unique).items() if expires > self.now}
        assert len(live) == len(self.model.live_locks())
        by_owner = sorted(live.values())
        assert by_owner == sorted(self.model.live_locks().values())

    @invariant()
    def retrying_jobs_keep_their_lock(self) -> None:
        """A unique (success) job in the retry set still owns its key unless the TTL ran out."""
        for _score, jid, _job in self.store.set_entries("retries"):
            pushed = self.model.live[jid]
            if pushed.unique_for is None or pushed.until == "start":
                continue
            found = self.model.locks.get(pushed.key)
            if found is not None and found[0] == jid and found[1] > self.now:
                assert self.extensions[1].holder(pushed.raw, self.now) == jid


UniqueMachine.TestCase.settings = settings(
    max_examples=250, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestUniqueJobs = UniqueMachine.TestCase


# --- focused examples ------------------------------------------------------------------


def _manager() -> tuple[Manager, UniqueJobs]:
    store = MemoryStore()
    unique = UniqueJobs(store)
    return Manager(store, random.Random(1), Registry(f.feature() for f in [ExpiringJobs(store), unique, JobTracking(store)])), unique


def test_map_key_order_does_not_matter() -> None:
    manager, _ = _manager()
    manager.push({"jid": "jid-000001", "jobtype": "A", "args": [{"x": 1, "y": 2}],
                  "custom": {"unique_for": 60}}, BASE_NOW)
    try:
        manager.push({"jid": "jid-000002", "jobtype": "A", "args": [{"y": 2, "x": 1}],
                      "custom": {"unique_for": 60}}, BASE_NOW)
    except ClientError as exc:
        assert exc.line == "NOTUNIQUE Job not unique"
    else:
        raise AssertionError("the duplicate was accepted")


def test_retry_then_promotion_keeps_lock_and_job() -> None:
    """FAIL → retry set → promotion → FETCH again: the job's own lock never gets in the way."""
    manager, unique = _manager()
    raw = {"jid": "jid-000001", "jobtype": "A", "args": [], "retry": 3, "custom": {"unique_for": 3600}}
    manager.push(raw, BASE_NOW)
    now = BASE_NOW
    for _ in range(3):
        job, _ = manager.fetch(["default"], "w", now)
        assert job is not None and job["jid"] == "jid-000001"
        manager.fail("jid-000001", "E", "m", [], now)
        assert unique.holder(raw | {"queue": "default"}, now) == "jid-000001"
        now = manager.next_due()
        manager.run_due(now)
    job, _ = manager.fetch(["default"], "w", now)
    assert job is not None
    manager.ack("jid-000001", now)
    assert unique.holder(raw | {"queue": "default"}, now) is None


def test_lock_owner_may_push_its_own_jid_again() -> None:
    manager, unique = _manager()
    raw = {"jid": "jid-000001", "jobtype": "A", "args": [], "custom": {"unique_for": 10}}
    manager.push(raw, BASE_NOW)
    manager.push(raw, BASE_NOW + 5)  # not a conflict: it refreshes the lock
    assert lock_table(unique) == {next(iter(lock_table(unique))): (BASE_NOW + 15, "jid-000001")}


def test_expired_lock_taken_by_another_job_is_not_released_by_the_first() -> None:
    manager, unique = _manager()
    first = {"jid": "jid-000001", "jobtype": "A", "args": [], "custom": {"unique_for": 10}}
    second = dict(first, jid="jid-000002")
    manager.push(first, BASE_NOW)
    manager.fetch(["default"], "w", BASE_NOW)
    manager.push(second, BASE_NOW + 11)  # the first lock has expired
    manager.ack("jid-000001", BASE_NOW + 12)
    assert unique.holder(second | {"queue": "default"}, BASE_NOW + 12) == "jid-000002"


def test_invalid_values_are_refused() -> None:
    manager, _ = _manager()
    cases = [
        ({"unique_for": "600"}, 'unique_for must be a positive number of seconds: "600"'),
        ({"unique_for": 0}, "unique_for must be a positive number of seconds: 0"),
        ({"unique_for": -1.5}, "unique_for must be a positive number of seconds: -1.5"),
        ({"unique_for": True}, "unique_for must be a positive number of seconds: true"),
        ({"unique_for": 5, "unique_until": "finish"}, 'unique_until must be "success" or "start": "finish"'),
    ]
    for custom, message in cases:
        try:
            manager.push({"jid": "jid-000001", "jobtype": "A", "args": [], "custom": custom}, BASE_NOW)
        except ClientError as exc:
            assert (exc.code, str(exc)) == ("ERR", message)
        else:
            raise AssertionError(custom)
    assert manager.store.queue_names() == []  # nothing was stored
