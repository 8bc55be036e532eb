"""One step's resolutions (protocol/spec.md §14.3, §14.4): the ops that record outcomes,
resolve edges, and release, kill or drop held jobs, planned against the state those very ops
will produce, so a kill's own dependents resolve in the same step (transitively)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ...core import jobs
from ...core.hooks import Ended, Ending
from ...core.lifecycle import DEAD_TTL, FAILURE_ORDER
from ...store.api import AnyOp, SetAdd, enqueue_op
from ...util import jsoncodec
from ...util.timefmt import format_time
from ..expiry import deadline
from .declare import batch_of, shown

if TYPE_CHECKING:
    from .feature import Held, Workflows

SUCCESS = "success"
#: a batch dependency's outcome at the batch's complete moment (it settles only the edges of
#: dependents with `after_policy = "complete"`)
COMPLETE = "complete"
#: a batch dependency's outcome when the batch is gone without having succeeded
FAILED = "failed"
DEPENDENCY_FAILED = "DependencyFailed"

#: a job that ended, how, and its result: what `Plan.drain` resolves edges for
Resolution = tuple[str, str, Any]


class Plan:
    """The ops of one step's resolutions, planned against the state they will produce: the
    held jobs it touched (their pending edges), those that left, the records it made."""

    def __init__(self, workflows: Workflows, now: float) -> None:
        self.wf = workflows
        self.now = now
        self.ops: list[AnyOp] = []
        #: jobs this plan ended (killed, expired at release, deleted): the other end hooks' news
        self.ended: list[Ended] = []
        self.gone: set[str] = set()
        #: held jid → the edges this plan resolved, and how (an overlay: a held job with
        #: 10 000 dependencies is not copied at each of their ends)
        self._resolved: dict[str, dict[str, str]] = {}
        self._records: dict[str, dict[str, Any]] = {}

    def drain(self, work: list[Resolution]) -> None:
        """Record each ended job's outcome where needed and resolve the held jobs waiting on
        it; kills and expiries add to the work (transitively, in this one step)."""
        queue = deque(work)
        while queue:
            jid, outcome, result = queue.popleft()
            if jid in self.wf.referrers or result is not None:
                record: dict[str, Any] = {"outcome": outcome, "finished_at": self.now}
                if result is not None:
                    record["result"] = result
                self._records[jid] = record
                self.ops.append({"op": "wf_outcome", "jid": jid, **record})
            for waiting in sorted(self.wf.dependents.get(jid, ())):
                queue.extend(self.resolve(waiting, jid, outcome))

    def resolve(self, jid: str, dep: str, outcome: str) -> list[Resolution]:
        """Resolve one edge of held job `jid`; release or kill it when that settles it."""
        held = self.wf.held.get(jid)
        if held is None or jid in self.gone:
            return []
        resolved = self._resolved.setdefault(jid, {})
        if dep not in held.pending or dep in resolved:
            return []
        if outcome == COMPLETE and held.policy == SUCCESS:
            return []  # a batch's complete moment: this edge waits for its success
        resolved[dep] = outcome
        self.ops.append({"op": "wf_resolve", "jid": jid, "dep": dep, "outcome": outcome})
        if outcome != SUCCESS and held.policy == SUCCESS:
            return self.kill(held, f"dependency {shown(dep)} {outcome}")
        return [] if len(resolved) < len(held.pending) else self.release(held)

    def kill(self, held: Held, message: str | None) -> list[Resolution]:
        """Into the dead set, with a `DependencyFailed` failure saying `message` (None: as it
        is, like MUTATE kill of a set's entry); its dependents see `dead`."""
        self.gone.add(held.jid)
        dead = held.job
        if message is not None:
            failure = {"failed_at": format_time(self.now), "message": message, "errtype": DEPENDENCY_FAILED,
                       "retry_count": 0, "remaining": 0}
            dead = jobs.with_fields(dead, failure={k: failure[k] for k in FAILURE_ORDER if k in failure})
        self.ops += [{"op": "wf_unhold", "jid": held.jid, "how": "killed"}, SetAdd("dead", self.now + DEAD_TTL, dead)]
        self.ended.append(Ended(dead, Ending.DEAD))
        return [(held.jid, Ending.DEAD.value, None)]

    def remove(self, held: Held) -> list[Resolution]:
        """Dropped (MUTATE discard of the `held` target); its dependents see `deleted`."""
        self.gone.add(held.jid)
        self.ops.append({"op": "wf_unhold", "jid": held.jid, "how": "deleted"})
        self.ended.append(Ended(held.job, Ending.DELETED))
        return [(held.jid, Ending.DELETED.value, None)]

    def release(self, held: Held, how: str = "released") -> list[Resolution]:
        """Into its queue (`enqueued_at` = now), or the scheduled set while its `at` is
        ahead; dropped as expired if its own deadline passed. Its dependencies' outcomes
        and results go under `custom._after`."""
        self.gone.add(held.jid)
        when = deadline(held.job)
        if when is not None and when <= self.now:
            self.ops.append({"op": "wf_unhold", "jid": held.jid, "how": "expired"})
            self.ended.append(Ended(held.job, Ending.EXPIRED))
            return [(held.jid, Ending.EXPIRED.value, None)]
        custom = dict(held.job.get("custom") or {})
        custom["_after"] = self._after(held)
        job = jobs.with_fields(held.job, custom=custom)
        self.ops.append({"op": "wf_unhold", "jid": held.jid, "how": how})
        if held.at is not None and held.at > self.now:
            self.ops.append(SetAdd("scheduled", held.at, job))
        else:
            self.ops.append(enqueue_op(jobs.with_fields(job, enqueued_at=format_time(self.now))))
        return []

    def _after(self, held: Held) -> dict[str, Any]:
        """`custom._after`: each resolved dependency's outcome and result (results left out,
        marked `result_omitted`, when together they exceed `inject_max_bytes`); a batch's
        entry is under its bid, `{"bid", "outcome"}`."""
        resolved = self._resolved.get(held.jid, {})
        after: dict[str, Any] = {}
        for dep in held.deps:
            outcome = resolved.get(dep) or held.outcomes.get(dep)
            if outcome is None:
                continue  # requeued by hand before it resolved
            bid = batch_of(dep)
            if bid is not None:  # a batch has no result
                after[bid] = {"bid": bid, "outcome": outcome}
                continue
            entry: dict[str, Any] = {"outcome": outcome}
            record = self._records.get(dep) or self.wf.records.get(dep)
            if record is not None and "result" in record:
                entry["result"] = record["result"]
            after[dep] = entry
        if len(jsoncodec.dumps(after)) > self.wf.settings.inject_max_bytes:
            for entry in after.values():
                if entry.pop("result", None) is not None:
                    entry["result_omitted"] = True
        return after
