"""C-T12: a hypothesis machine over job dependencies (protocol/spec.md §14.4's W1–W4).

It pushes random DAG fragments over a small pool of jids — dependencies on jids pushed
before, after, or never, and on batches (`{"bid"}`) whose members are jobs of the pool, with
either policy and various retry counts, by PUSH and PUSHB — and interleaves BATCH COMMIT, FETCH/ACK/FAIL, MUTATE (retries: discard, kill, requeue; held: discard, kill,
requeue), retries from the Morgue, QUEUE REMOVE, the clock and restarts from the journal and
from a snapshot. After every step:

* W1: every held job waits on at least one dependency that is live (held, queued, scheduled,
  reserved, retrying) or unknown with its deadline ahead;
* W2: the graph over held jobs is acyclic (a PUSH that would close a cycle was refused and
  changed nothing);
* every released job's `custom._after` names all its dependencies; under `success` each was
  ACKed before it ran (a batch: had reached its success moment); under `complete` each had
  ended (or was missing; a batch: had completed, or was gone);
* W4: a store rebuilt from the journal, and one rebuilt from a snapshot, hold the same jobs
  and the same workflow state.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from faktory_py.core.hooks import BatchMoment
from faktory_py.core.lifecycle import Manager
from faktory_py.errors import ClientError
from faktory_py.features.batches.feature import Batches
from faktory_py.features.workflows.feature import Workflows, workflow_table
from faktory_py.store.memory import MemoryStore
from helpers.model_replay import enterprise_manager, holdings, replay, roundtrip

BASE_NOW = 1_700_000_000.0
POOL = [f"job-{i:04d}" for i in range(10)]
BIDS = [f"b-{i}" for i in range(3)]
LIVE_STATES = ("held", "working", "scheduled", "retries", "enqueued")


def build(**observers: Any) -> tuple[MemoryStore, Manager, Workflows]:
    return enterprise_manager(Workflows, seed=7, **observers)


class WorkflowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.journal: list[list[dict[str, Any]]] = []
        self.store, self.manager, self.wf = build(sink=self._sink)
        batches = self.manager.features.find(Batches)
        assert batches is not None
        self.batches = batches
        numbers = itertools.count()
        batches.new_bid = lambda: f"b-{next(numbers)}"
        self.now = BASE_NOW
        for _bid in BIDS:  # success callbacks in a queue no worker fetches: moments come all the same
            self.store.commit(batches.new({"success": {"jobtype": "Ok", "args": [], "queue": "callbacks"}}, "",
                                          self.now)[1])
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

    @rule(jid=st.sampled_from(POOL),
          deps=st.lists(st.sampled_from(POOL + ["never-pushed"] + [f"bid:{bid}" for bid in BIDS]), max_size=3),
          policy=st.sampled_from(["success", "complete"]), retry=st.sampled_from([0, 1, 25]),
          timeout=st.sampled_from([60, 600]), member_of=st.sampled_from(["", *BIDS]))
    def push(self, jid: str, deps: list[str], policy: str, retry: int, timeout: int, member_of: str) -> None:
        """`bid:<bid>` in `deps` stands for `{"bid": <bid>}`; `member_of` makes it a member."""
        if jid in self.pushed:
            return
        custom: dict[str, Any] = {"bid": member_of} if member_of else {}
        if deps:
            after = [{"bid": dep[4:]} if dep.startswith("bid:") else dep for dep in deps]
            custom.update({"after": after, "after_policy": policy, "after_timeout": timeout})
        job = {"jid": jid, "jobtype": "W", "args": [], "retry": retry, **({"custom": custom} if custom else {})}
        before = (len(self.journal), workflow_table(self.wf))
        try:
            self.manager.push(job, self.now)
        except ClientError as exc:
            assert any(text in str(exc) for text in ("cycle", "itself", "its own batch", "No such batch",
                                                     "is committed", "is closed")), exc
            assert (len(self.journal), workflow_table(self.wf)) == before
            return
        self.pushed.add(jid)
        if deps:
            self.declared[jid] = ([dep[4:] if dep.startswith("bid:") else dep for dep in dict.fromkeys(deps)], policy)
        self._note_dead()

    @rule(bid=st.sampled_from(BIDS))
    def commit(self, bid: str) -> None:
        if self.batches.live(bid, self.now) is not None:
            self.store.commit(self.batches.commit(bid, self.now))
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
            if dep in BIDS:
                moments = self.batches.moments(dep, self.now)
                reached = {"success": BatchMoment.SUCCESS, "complete": BatchMoment.COMPLETE}.get(entry["outcome"])
                assert entry["outcome"] in (("success",) if policy == "success" else ("success", "complete", "failed"))
                assert moments is None if reached is None else moments is None or reached in moments, (dep, entry)
                continue
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
                     if self.wf.state_of(dep) in LIVE_STATES or held.unknown.get(dep, 0) > self.now
                     or self._batch_waited_for(dep, held.policy)]
            assert alive, (jid, {dep: self.wf.state_of(dep) for dep in held.pending}, held.unknown, self.now)

    def _batch_waited_for(self, dep: str, policy: str) -> bool:
        """A batch edge is live while its batch exists and has not reached the moment the
        policy waits for (W3 for batches)."""
        if not dep.startswith("bid:"):
            return False
        moments = self.batches.moments(dep[4:], self.now)
        wanted = BatchMoment.SUCCESS if policy == "success" else BatchMoment.COMPLETE
        return moments is not None and wanted not in moments and BatchMoment.SUCCESS not in moments

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
