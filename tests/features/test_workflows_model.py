"""C-T12: a hypothesis machine over job dependencies (protocol/spec.md §14.4's W1–W4).

It pushes random DAG fragments over a small pool of jids — dependencies on jids pushed
before, after, or never, with either policy and various retry counts, by PUSH and PUSHB — and
interleaves FETCH/ACK/FAIL, MUTATE (retries: discard, kill, requeue; held: discard, kill,
requeue), retries from the Morgue, QUEUE REMOVE, the clock and restarts from the journal and
from a snapshot. After every step:

* W1: every held job waits on at least one dependency that is live (held, queued, scheduled,
  reserved, retrying) or unknown with its deadline ahead;
* W2: the graph over held jobs is acyclic (a PUSH that would close a cycle was refused and
  changed nothing);
* every released job's `custom._after` names all its dependencies; under `success` each was
  ACKed before it ran; under `complete` each had ended (or was missing);
* W4: a store rebuilt from the journal, and one rebuilt from a snapshot, hold the same jobs
  and the same workflow state.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from faktory_py.core.lifecycle import Manager
from faktory_py.errors import ClientError
from faktory_py.features.workflows.feature import Workflows, workflow_table
from faktory_py.server.app import enterprise_features
from faktory_py.store.memory import MemoryStore
from helpers.model_replay import holdings, replay, roundtrip

BASE_NOW = 1_700_000_000.0
POOL = [f"job-{i:04d}" for i in range(10)]
LIVE_STATES = ("held", "working", "scheduled", "retries", "enqueued")


def build(**observers: Any) -> tuple[MemoryStore, Manager, Workflows]:
    store = MemoryStore(**observers)
    features = enterprise_features(store)
    workflows = features.find(Workflows)
    assert workflows is not None
    return store, Manager(store, random.Random(7), features), workflows


class WorkflowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.journal: list[list[dict[str, Any]]] = []
        self.store, self.manager, self.wf = build(sink=self._sink)
        self.now = BASE_NOW
        self.pushed: set[str] = set()
        #: jid → its declared (deps, policy)
        self.declared: dict[str, tuple[list[str], str]] = {}
        self.acked: set[str] = set()
        #: jobs that ended some other way (dead, discarded, deleted, expired, killed)
        self.ended: set[str] = set()

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.journal.append(roundtrip(ops))
        return len(self.journal)

    # --- rules ------------------------------------------------------------------------

    @rule(jid=st.sampled_from(POOL), deps=st.lists(st.sampled_from(POOL + ["never-pushed"]), max_size=3),
          policy=st.sampled_from(["success", "complete"]), retry=st.sampled_from([0, 1, 25]),
          timeout=st.sampled_from([60, 600]))
    def push(self, jid: str, deps: list[str], policy: str, retry: int, timeout: int) -> None:
        if jid in self.pushed:
            return
        custom: dict[str, Any] = {}
        if deps:
            custom = {"after": deps, "after_policy": policy, "after_timeout": timeout}
        job = {"jid": jid, "jobtype": "W", "args": [], "retry": retry, **({"custom": custom} if custom else {})}
        before = (len(self.journal), workflow_table(self.wf))
        try:
            self.manager.push(job, self.now)
        except ClientError as exc:
            assert "cycle" in str(exc) or "itself" in str(exc), exc
            assert (len(self.journal), workflow_table(self.wf)) == before
            return
        self.pushed.add(jid)
        if deps:
            self.declared[jid] = (list(dict.fromkeys(deps)), policy)
        self._note_dead()

    @rule(first=st.sampled_from(POOL), second=st.sampled_from(POOL), policy=st.sampled_from(["success", "complete"]))
    def pushb(self, first: str, second: str, policy: str) -> None:
        """PUSHB of a job and a dependent of it, the dependent first (each job is committed on
        its own, so the dependent waits on a jid unknown when it is held)."""
        if first == second or {first, second} & self.pushed:
            return
        dependent = {"jid": second, "jobtype": "W", "args": [], "custom": {"after": [first], "after_policy": policy}}
        upstream = {"jid": first, "jobtype": "W", "args": [], "retry": 0}
        errors, _ = self.manager.push_bulk([dependent, upstream], self.now)
        for job in (dependent, upstream):
            if job["jid"] not in errors:
                self.pushed.add(job["jid"])
        if second not in errors:
            self.declared[second] = ([first], policy)
        self._note_dead()

    @rule()
    def retry_from_the_morgue(self) -> None:
        """The operator's override: dead jobs (dependents killed by policy too) run again."""
        self.ended -= {jid for _s, jid, _j in self.store.set_entries("dead")}
        self.manager.enqueue_entries("dead", None, self.now)

    @rule(ack=st.booleans())
    def work(self, ack: bool) -> None:
        job, _ = self.manager.fetch(["default"], "w1", self.now)
        if job is None:
            return
        jid = job["jid"]
        if jid in self.declared:
            self._check_released(job)
        if ack:
            self.manager.ack(jid, self.now)
            self.acked.add(jid)
        else:
            self.manager.fail(jid, "E", "boom", [], self.now)
        self._note_dead()

    @rule(cmd=st.sampled_from(["discard", "kill", "requeue"]), where=st.sampled_from(["retries", "held"]))
    def mutate(self, cmd: str, where: str) -> None:
        if where == "retries" and cmd != "requeue":
            self.ended |= {jid for _s, jid, _j in self.store.set_entries("retries")}
        if where == "held" and cmd != "requeue":
            self.ended |= set(self.wf.held)
        self.manager.mutate({"cmd": cmd, "target": where}, self.now)
        self._note_dead()

    @rule()
    def remove_queue(self) -> None:
        self.ended |= {job["jid"] for job in self.store.queued("default")}
        self.manager.remove(["default"], self.now)
        self._note_dead()

    @rule(seconds=st.sampled_from([1, 30, 120, 700, 4000]))
    def advance(self, seconds: int) -> None:
        self.now += seconds
        self.manager.run_due(self.now)
        self._note_dead()

    @rule()
    def restart(self) -> None:
        store, manager, wf = build()
        replay(store, self.journal)
        assert workflow_table(wf) == workflow_table(self.wf)
        assert holdings(store) == holdings(self.store)
        again, _m, wf2 = build()
        replay(again, [roundtrip(record) for record in self.store.snapshot()])
        assert workflow_table(wf2) == workflow_table(self.wf)
        assert holdings(again) == holdings(self.store)

    # --- checks -----------------------------------------------------------------------

    def _note_dead(self) -> None:
        self.ended |= {jid for _s, jid, _j in self.store.set_entries("dead")}

    def _check_released(self, job: dict[str, Any]) -> None:
        deps, policy = self.declared[job["jid"]]
        after = job["custom"].get("_after", {})
        if set(after) != set(deps):
            return  # requeued by hand from the held set: it ran on the operator's word
        for dep, entry in after.items():
            if policy == "success":
                assert entry["outcome"] == "success" and dep in self.acked, (job["jid"], dep, entry)
            elif entry["outcome"] == "success":
                assert dep in self.acked
            else:
                assert entry["outcome"] == "missing" or dep in self.ended or dep not in self.acked, (dep, entry)

    @invariant()
    def no_stuck_held_job(self) -> None:
        """W1 (and W3: nothing held whose dependencies all resolved)."""
        for jid, held in self.wf.held.items():
            assert held.pending, jid
            alive = [dep for dep in held.pending
                     if self.wf.state_of(dep) in LIVE_STATES or held.unknown.get(dep, 0) > self.now]
            assert alive, (jid, {dep: self.wf.state_of(dep) for dep in held.pending}, held.unknown, self.now)

    @invariant()
    def acyclic(self) -> None:
        """W2."""
        state: dict[str, int] = {}

        def visit(jid: str) -> None:
            state[jid] = 1
            for dep in self.wf.held[jid].pending:
                if dep in self.wf.held:
                    assert state.get(dep) != 1, f"cycle through {dep}"
                    if dep not in state:
                        visit(dep)
            state[jid] = 2

        for jid in self.wf.held:
            if jid not in state:
                visit(jid)

    @invariant()
    def indexes_match_the_held_jobs(self) -> None:
        dependents: dict[str, set[str]] = {}
        for jid, held in self.wf.held.items():
            for dep in held.pending:
                dependents.setdefault(dep, set()).add(jid)
        assert dependents == self.wf.dependents


TestWorkflows = WorkflowMachine.TestCase
TestWorkflows.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])
