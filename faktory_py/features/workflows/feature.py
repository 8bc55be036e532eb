"""Job dependencies: `custom.after`, the HELD state, release in the step that resolved the last
dependency, and the outcome records (with results) dependents read (protocol/spec.md §14).

Why: producers chain jobs ("render every page, then merge, then mail") and every Faktory
client can already put `custom.after: [jid …]` on a job, since clients choose jids. A job
with dependencies is *held*: stored here, in no queue and no set, so it takes no queue head,
no throttle slot and no rate grant. When a job ends (the lifecycle's end hook, which sees
every terminal outcome whichever command or timer caused it), each held dependent's edge
resolves in that very step; the last one releases the dependent into its queue (or the
scheduled set, or drops it as expired), and under `after_policy = "success"` a failed one
kills it into the dead set with `DependencyFailed` — and its own dependents in turn, in the
same step. Nothing polls; no held job ever waits for something that already ended.

State (journaled ops, applied through the store, so replay rebuilds it exactly):

* `wf_hold` — a held job with its payload, dependencies, the ones still pending, the
  outcomes of the resolved ones, and a deadline for each dependency jid never seen (the
  PUSH time + `after_timeout`); `wf_resolve` — one edge resolved; `wf_seen` — a jid that was
  unknown was pushed; `wf_unhold` — a held job left (released, killed, expired, deleted,
  requeued), always next to the op that puts it where it goes.
* `wf_outcome` — `{jid, outcome, finished_at, result?}` of a job that ended while a held job
  referenced it, or that carried a result; kept `[faktory_py.results] ttl` after its end
  and in any case while a held job names it, then `wf_forget`.

Rebuilt by replay (derived, never journaled): the reverse edges (dependency → held jobs
waiting on it), the referrers of outcome records, the index of unknown-jid deadlines, and
which records may be forgotten when.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ...core.hooks import BatchMoment, BatchStates, Ended, Ending, Ends, Reached
from ...core.registry import Feature, WebPage
from ...errors import ClientError, NoSuchBatch
from ...store.api import Job, Op, SortedJobSet, Store
from ...util.timefmt import format_time
from ..tracking import JobTracking, checked_result, tracked
from .declare import Declaration, batch_of, bid_key, cycle, cycle_error, declaration, shown
from .plan import COMPLETE, FAILED, SUCCESS, Plan, Resolution
#: the outcome of an edge whose jid was never pushed within the dependent's `after_timeout`
MISSING = "missing"
#: `Ending.SUCCESS`, read at every ACK (an enum member's lookup costs a few attribute reads)
_SUCCESS = Ending.SUCCESS


@dataclass(frozen=True)
class Settings:
    """`[faktory_py.workflows]` and `[faktory_py.results]` (their defaults are config/jobs.py's;
    server/app.py hands them over)."""

    #: the key of `custom` naming a job's dependencies; "" turns dependencies off
    dependency_key: str
    #: seconds a dependent waits for a dependency jid the server has never seen
    unknown_timeout: float
    max_deps: int
    #: seconds an outcome record is kept after its job ended (longer while a held job names it)
    results_ttl: float
    max_result_bytes: int
    #: past this many bytes, `custom._after` carries outcomes without results
    inject_max_bytes: int
    #: a tracked job's last TRACK SET `desc` is its result when it succeeds without one
    from_track_desc: bool = False


class Held:
    """One held job (the journal's `wf_hold` record, kept up to date by `wf_resolve`)."""

    __slots__ = ("job", "at", "policy", "deps", "pending", "outcomes", "unknown", "held_at")

    def __init__(self, job: Job, at: float | None, policy: str, deps: Sequence[str], pending: Iterable[str],
                 outcomes: dict[str, str], unknown: dict[str, float], held_at: float) -> None:
        self.job = job
        self.at = at
        self.policy = policy
        self.deps = tuple(deps)
        #: dependencies not resolved yet, in the order declared (a dict as an ordered set)
        self.pending = dict.fromkeys(pending)
        self.outcomes = dict(outcomes)
        #: pending dependencies never seen → when they resolve as missing
        self.unknown = dict(unknown)
        self.held_at = held_at

    @property
    def jid(self) -> str:
        return self.job["jid"]

    def record(self) -> Op:
        return {"op": "wf_hold", "job": self.job, "at": self.at, "policy": self.policy, "deps": list(self.deps),
                "pending": list(self.pending), "outcomes": dict(self.outcomes), "unknown": dict(self.unknown),
                "held_at": self.held_at}


def _edge(jid: str, dep: str) -> str:
    """The key of one (held job, dependency) edge in the unknown-deadline index."""
    return f"{jid}\x00{dep}"


class Workflows:
    """Held jobs, the outcome records, and the hooks that hold and release (module docstring)."""

    op_names = ("wf_hold", "wf_resolve", "wf_seen", "wf_unhold", "wf_outcome", "wf_forget", "wf_counts")

    def __init__(self, store: Store, settings: Settings, tracking: JobTracking | None = None,
                 batches: BatchStates | None = None) -> None:
        """`tracking` holds the results workers give with TRACK SET (and tracked jobs' `desc`);
        `batches` tells which moments a batch reached (without it a batch dependency is
        refused as naming no batch)."""
        self.store = store
        self.settings = settings
        self.tracking = tracking
        self.batches = batches
        self.held: dict[str, Held] = {}
        #: jid → {outcome, finished_at, result?}
        self.records: dict[str, dict[str, Any]] = {}
        # derived (rebuilt by replay):
        #: dependency → held jobs still waiting on it
        self.dependents: dict[str, set[str]] = {}
        #: jid → held jobs naming it (resolved or not): its outcome record must stay
        self.referrers: dict[str, set[str]] = {}
        #: (held jid, never-seen dependency) edges by the time they resolve as missing
        self.unknown = SortedJobSet()
        #: outcome records no held job names, by when they are forgotten
        self.expiring = SortedJobSet()
        self.counts = {"released": 0, "killed": 0, "missing": 0}
        store.register_state(self)

    # --- state (applied through the store: live commits and replay alike) -------------

    def apply(self, op: Op) -> float | None:
        kind = op["op"]
        if kind == "wf_hold":
            return self._apply_hold(op)
        if kind == "wf_resolve":
            self._apply_resolve(op["jid"], op["dep"], op["outcome"])
        elif kind == "wf_seen":
            for jid in self.dependents.get(op["dep"], ()):
                self._forget_unknown(self.held[jid], op["dep"])
        elif kind == "wf_unhold":
            self._apply_unhold(op["jid"], op["how"])
        elif kind == "wf_outcome":
            return self._apply_outcome(op)
        elif kind == "wf_forget":
            self.records.pop(op["jid"], None)
            self.expiring.remove(op["jid"])
        else:
            self.counts = {name: op[name] for name in self.counts}
        return None

    def _apply_hold(self, op: Op) -> float | None:
        held = Held(op["job"], op["at"], op["policy"], op["deps"], op["pending"], op["outcomes"], op["unknown"],
                    op["held_at"])
        jid = held.jid
        self.held[jid] = held
        for dep in held.deps:
            self.referrers.setdefault(dep, set()).add(jid)
            self.expiring.remove(dep)
        for dep in held.pending:
            self.dependents.setdefault(dep, set()).add(jid)
        for dep, when in held.unknown.items():
            self.unknown.add(_edge(jid, dep), when, (jid, dep))
        return min(held.unknown.values(), default=None)

    def _forget_unknown(self, held: Held, dep: str) -> None:
        if held.unknown.pop(dep, None) is not None:
            self.unknown.remove(_edge(held.jid, dep))

    def _apply_resolve(self, jid: str, dep: str, outcome: str) -> None:
        held = self.held.get(jid)
        if held is None or dep not in held.pending:
            return
        del held.pending[dep]
        held.outcomes[dep] = outcome
        self._forget_unknown(held, dep)
        self._unlink(self.dependents, dep, jid)
        if outcome == MISSING:
            self.counts["missing"] += 1

    def _apply_unhold(self, jid: str, how: str) -> None:
        if how in ("released", "killed"):
            self.counts[how] += 1
        held = self.held.pop(jid, None)
        if held is None:
            return  # settled at its PUSH: it was never held
        for dep in list(held.unknown):
            self._forget_unknown(held, dep)
        for dep in held.pending:
            self._unlink(self.dependents, dep, jid)
        for dep in held.deps:
            if self._unlink(self.referrers, dep, jid):
                self._may_expire(dep)

    def _apply_outcome(self, op: Op) -> float | None:
        jid = op["jid"]
        self.records[jid] = {key: op[key] for key in ("outcome", "finished_at", "result") if key in op}
        return self._may_expire(jid)

    def _may_expire(self, jid: str) -> float | None:
        """A record no held job names is forgotten `ttl` after its job ended."""
        record = self.records.get(jid)
        if record is None or jid in self.referrers:
            return None
        when = record["finished_at"] + self.settings.results_ttl
        self.expiring.add(jid, when, None)
        return when

    @staticmethod
    def _unlink(index: dict[str, set[str]], key: str, jid: str) -> bool:
        """Remove `jid` from `index[key]`; True when that left `key` with none."""
        members = index.get(key)
        if members is None:
            return False
        members.discard(jid)
        if members:
            return False
        del index[key]
        return True

    def flush(self) -> None:
        for table in (self.held, self.records, self.dependents, self.referrers):
            table.clear()
        self.unknown.clear()
        self.expiring.clear()
        self.counts = dict.fromkeys(self.counts, 0)

    def snapshot(self) -> Iterator[Op]:
        ops = [{"op": "wf_counts", **self.counts}]
        ops += [{"op": "wf_outcome", "jid": jid, **record} for jid, record in self.records.items()]
        ops += [held.record() for held in self.held.values()]
        return iter(ops)

    # --- reading ----------------------------------------------------------------------

    def state_of(self, jid: str) -> str:
        """Where a job is: held, working, scheduled, retries, dead, enqueued, its recorded
        outcome, or unknown (a scan of the queues for a jid found nowhere else); a batch
        dependency not resolved yet is the last moment its batch reached ("complete"), or
        "pending"."""
        if batch_of(jid) is not None:
            record = self.records.get(jid)
            return "pending" if record is None else record["outcome"]
        if jid in self.held:
            return "held"
        if self.store.reservation(jid) is not None:
            return "working"
        for name in ("scheduled", "retries", "dead"):
            if self.store.set_entry(name, jid) is not None:
                return name
        record = self.records.get(jid)
        if record is not None:
            return record["outcome"]
        return "enqueued" if self._queued({jid}) else "unknown"

    def _live(self, jid: str) -> bool:
        """Is `jid` held, reserved, scheduled or retrying (what can be looked up by jid)?"""
        store = self.store
        return (jid in self.held or store.reservation(jid) is not None
                or any(store.set_entry(name, jid) is not None for name in ("scheduled", "retries")))

    def _queued(self, jids: set[str]) -> set[str]:
        """Which of `jids` wait in some queue: a scan (queues keep no jid index), so it is
        done only when an unknown dependency's deadline comes, for all that are due at once,
        and for JOB DEPS."""
        found: set[str] = set()
        if jids:
            for name in self.store.queue_names():
                found.update(job["jid"] for job in self.store.queued(name) if job["jid"] in jids)
        return found

    def result(self, jid: str, now: float) -> dict[str, Any]:
        """RESULT GET's reply object."""
        record = self.records.get(jid)
        if record is None or (jid not in self.referrers and record["finished_at"] + self.settings.results_ttl <= now):
            return {"jid": jid, "outcome": "unknown"}
        out: dict[str, Any] = {"jid": jid, "outcome": record["outcome"],
                               "finished_at": format_time(record["finished_at"])}
        if "result" in record:
            out["result"] = record["result"]
        return out

    def deps(self, jid: str) -> dict[str, Any]:
        """JOB DEPS's reply object: the job's state, its dependencies with their outcomes
        (or current state), and the held jobs waiting on it."""
        held = self.held.get(jid)
        after = []
        if held is not None:
            for dep in held.deps:
                outcome = held.outcomes.get(dep)
                name = {"bid": shown(dep)} if batch_of(dep) is not None else {"jid": dep}
                after.append({**name, "outcome": outcome} if outcome is not None
                             else {**name, "state": self.state_of(dep)})
        return {"jid": jid, "state": self.state_of(jid), "after": after,
                "dependents": sorted(self.dependents.get(jid, ()))}

    def check_result(self, result: Any) -> None:
        """Refuse a result larger than `[faktory_py.results] max_bytes` (the ACK is not applied)."""
        checked_result(result, self.settings.max_result_bytes)

    def _result(self, ended: Ended, now: float) -> Any:
        """What a job that ended reported: its ACK's result, else (succeeded only) the last
        TRACK SET `result`, else with `from_track_desc` a tracked job's last `desc`."""
        tracking = self.tracking
        if ended.result is not None or tracking is None or ended.ending is not _SUCCESS:
            return ended.result
        record = tracking.record(ended.job["jid"], now)
        if record is None:  # (every ACK of a job not tracked: nothing to look up further)
            return None
        if "result" in record:
            return record["result"]
        if self.settings.from_track_desc and tracked(ended.job):
            return record.get("desc")
        return None

    # --- hooks ------------------------------------------------------------------------

    def feature(self) -> Feature:
        """How it plugs in: `custom.after` is checked when a job is prepared, a pushed
        jid that held jobs waited for as unknown is noted, a job with pending dependencies is
        held instead of queued, every ending resolves edges, and the timer resolves
        never-seen dependencies as missing and forgets old outcome records."""
        return Feature("workflows", self, prepare=self, push=self, hold=self, end=self, batch=self, target=self,
                       timed=self, info=self, pages=(WebPage("held", "Workflows"),), commands=("RESULT", "JOB"),
                       custom_only=frozenset({"prepare", "hold"}))

    def _declaration(self, job: Job) -> Declaration | None:
        return declaration(job, self.settings.dependency_key, self.settings.max_deps, self.settings.unknown_timeout)

    def prepare(self, job: Job, now: float) -> Job:
        """Check the declaration and refuse a job that would close a cycle (changing nothing)."""
        declared = self._declaration(job)
        if declared is not None:
            jid = job["jid"]
            if jid in self.held:
                raise ClientError(f"custom.{self.settings.dependency_key}: job {jid} is already held")
            path = cycle(jid, declared.deps, lambda x: self.held[x].pending if x in self.held else ())
            if path is not None:
                raise cycle_error(self.settings.dependency_key, path)
            for dep in declared.deps:
                bid = batch_of(dep)
                if bid is not None and (self.batches is None or self.batches.moments(bid, now) is None):
                    raise NoSuchBatch(bid)
        return job

    def on_push(self, job: Job, scheduled_for: float | None, wid: str, now: float) -> list[Op]:
        jid = job["jid"]
        waiting = self.dependents.get(jid)
        if waiting is None:  # no held job names it (every PUSH without dependencies)
            return []
        if any(jid in self.held[held].unknown for held in waiting):
            return [{"op": "wf_seen", "dep": jid}]
        return []

    def hold(self, job: Job, scheduled_for: float | None, now: float) -> Ends | None:
        declared = self._declaration(job)
        if declared is None:
            return None
        outcomes: dict[str, str] = {}
        pending: list[str] = []
        unknown: dict[str, float] = {}
        for dep in declared.deps:
            bid = batch_of(dep)
            if bid is not None:
                reached = self._reached(bid, declared.policy, now)
                if reached is None:
                    pending.append(dep)
                else:
                    outcomes[dep] = reached
                continue
            record = self.records.get(dep)
            if record is not None:
                outcomes[dep] = record["outcome"]
            elif self.store.set_entry("dead", dep) is not None:
                outcomes[dep] = Ending.DEAD.value
            else:
                pending.append(dep)
                if not self._live(dep):  # perhaps queued: looked for only at its deadline (run_due)
                    unknown[dep] = now + declared.timeout
        held = Held(job, scheduled_for, declared.policy, declared.deps, pending, outcomes, unknown, now)
        plan = Plan(self, now)
        failed = next((dep for dep, outcome in outcomes.items() if outcome != SUCCESS), None)
        if failed is not None and declared.policy == SUCCESS:
            plan.drain(plan.kill(held, f"dependency {shown(failed)} {outcomes[failed]}"))
        elif not pending:
            plan.drain(plan.release(held))
        else:
            plan.ops.append(held.record())
        return Ends(plan.ops, plan.ended)

    def on_end(self, ended: Sequence[Ended], now: float) -> Ends | list[Op]:
        """Record the outcomes and resolve the edges of the jobs that ended. Most ends (every
        ACK of a server without dependencies) need neither: a job no held job names
        (`referrers`, which holds every key of `dependents`) that reported no result, so no
        Plan is made for those."""
        work: list[Resolution] = []
        for end in ended:
            jid, result = end.job["jid"], self._result(end, now)
            if result is not None or jid in self.referrers:
                work.append((jid, end.ending.value, result))
        if not work:
            return []
        plan = Plan(self, now)
        for resolution in work:
            plan.drain([resolution])
        return Ends(plan.ops, plan.ended)

    def _reached(self, bid: str, policy: str, now: float) -> str | None:
        """The outcome of a dependency on batch `bid` (known: `prepare` checked) if the
        batch has already reached the moment `policy` waits for, else None."""
        assert self.batches is not None
        moments = self.batches.moments(bid, now) or frozenset()
        if BatchMoment.SUCCESS in moments:
            return SUCCESS
        return COMPLETE if policy == COMPLETE and BatchMoment.COMPLETE in moments else None

    def on_batch(self, reached: Sequence[Reached], now: float) -> Ends:
        """A batch's complete moment settles the edges of `complete`-policy dependents, its
        success moment every edge; a batch gone before it succeeded fails its edges (a
        `success`-policy dependent is killed, `dependency <bid> failed`)."""
        plan = Plan(self, now)
        outcomes = {BatchMoment.COMPLETE: COMPLETE, BatchMoment.SUCCESS: SUCCESS}
        for bid, moment in reached:
            dep = bid_key(bid)
            if moment is BatchMoment.GONE:  # what is still pending on it; its record stays as it is
                for waiting in sorted(self.dependents.get(dep, ())):
                    plan.drain(plan.resolve(waiting, dep, FAILED))
            else:
                plan.drain([(dep, outcomes[moment], None)])
        return Ends(plan.ops, plan.ended)

    def next_due(self) -> float | None:
        due = [score for score in (self.unknown.first_score(), self.expiring.first_score()) if score is not None]
        return min(due, default=None)

    def run_due(self, now: float) -> Ends:
        """Never-seen dependencies past their deadline resolve as missing; outcome records
        no held job names are forgotten `ttl` after their job ended."""
        plan = Plan(self, now)
        due = [edge for _score, _key, edge in self.unknown.due(now)]
        candidates = {dep for _jid, dep in due if not self._live(dep)}
        seen = {dep for _jid, dep in due} - candidates | self._queued(candidates)
        plan.ops += [{"op": "wf_seen", "dep": dep} for dep in sorted(seen)]
        for jid, dep in due:
            if dep not in seen:
                plan.drain(plan.resolve(jid, dep, MISSING))
        plan.ops += [{"op": "wf_forget", "jid": jid} for _score, jid, _ in self.expiring.due(now)]
        return Ends(plan.ops, plan.ended)

    def info_fields(self) -> dict[str, Any]:
        """INFO's `faktory.workflows`, only once dependencies were used."""
        if not self.held and not any(self.counts.values()):
            return {}
        return {"workflows": {"held": len(self.held), **self.counts}}

    # --- the `held` MUTATE target and the web UI's actions ----------------------------

    #: the MUTATE target of held jobs
    target = "held"

    def entries(self) -> Iterator[tuple[str, Job]]:
        return ((jid, held.job) for jid, held in self.held.items())

    def take(self, cmd: str, jids: Sequence[str] | None, now: float) -> Ends:
        """MUTATE on held jobs (None: all): `discard` drops them (dependents see `deleted`),
        `kill` moves them to the dead set (`dead`), `requeue` releases them now, ignoring
        their dependencies."""
        plan = Plan(self, now)
        chosen = list(self.held) if jids is None else [jid for jid in dict.fromkeys(jids) if jid in self.held]
        for jid in chosen:
            if jid in plan.gone:
                continue
            held = self.held[jid]
            if cmd == "requeue":
                plan.drain(plan.release(held, how="requeued"))
            elif cmd == "kill":
                plan.drain(plan.kill(held, None))
            else:
                plan.drain(plan.remove(held))
        return Ends(plan.ops, plan.ended)


def workflow_table(workflows: Workflows) -> dict[str, Any]:
    """The whole state, derived indexes included, as plain data: tests compare a live and a
    replayed store with it."""
    return {
        "held": {jid: held.record() for jid, held in sorted(workflows.held.items())},
        "records": dict(sorted(workflows.records.items())),
        "dependents": {dep: sorted(jids) for dep, jids in sorted(workflows.dependents.items())},
        "referrers": {dep: sorted(jids) for dep, jids in sorted(workflows.referrers.items())},
        "unknown": list(workflows.unknown.items()),
        "expiring": list(workflows.expiring.items()),
        "counts": dict(workflows.counts),
    }
