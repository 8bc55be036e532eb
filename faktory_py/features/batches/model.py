"""The batch record and its rules: phases and callback states, the batch a pushed job names,
a callback job made ready to enqueue, and what each batch op does to the records.

Pure: the feature's state, hooks and BATCH operations are `feature.py`'s (its docstring has
the rules these implement), the planning of a change's ops is `planner.py`'s.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Protocol

from ...core import jobs
from ...core.hooks import BatchMoment
from ...errors import ClientError
from ...store.api import Job, Op
from ...util.jsoncodec import compact_json
from ...util.timefmt import format_time

OPEN, COMMITTED, CALLBACKS, DONE = "open", "committed", "callbacks", "done"
#: The only phase changes there are (removal of an expired open batch aside).
TRANSITIONS = {OPEN: {COMMITTED}, COMMITTED: {CALLBACKS}, CALLBACKS: {DONE}, DONE: set()}
#: Callback states as STATUS reports them ("2": over — ACKed, or its job left for good otherwise).
PENDING, ENQUEUED, SUCCEEDED = "", "1", "2"
KINDS = ("complete", "success")


def new_bid() -> str:
    return "b-" + secrets.token_hex(10)


def new_jid() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch. Immutable: every change is a new record (see `planner.Txn`)."""

    bid: str
    parent_bid: str  # "" for a top-level batch
    description: str
    created_at: float
    expires_at: float | None  # open: when it is dropped unless committed; done: when it is forgotten
    complete: Job | None  # the callback jobs, ready to enqueue (jid assigned)
    success: Job | None
    phase: str = OPEN
    total: int = 0
    pending: int = 0
    failed: int = 0
    complete_st: str = PENDING
    success_st: str = PENDING
    #: children not settled for complete / for success (see feature.py's docstring)
    kids_c: int = 0
    kids_s: int = 0
    #: this batch's own settled flags, as last counted in its parent's kids_c / kids_s
    settled_c: bool = False
    settled_s: bool = False

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Batch:
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    # --- derived conditions -----------------------------------------------------------

    @property
    def committed(self) -> bool:
        return self.phase != OPEN

    @property
    def closed(self) -> bool:
        """A callback has been enqueued: nothing may be added any more (strict)."""
        return self.complete_st != PENDING or self.success_st != PENDING

    def executed(self) -> bool:
        """Committed, every member ran once, every child settled for complete."""
        return self.committed and self.pending == self.failed and self.kids_c == 0

    def succeeded(self) -> bool:
        """Committed, every member succeeded, every child settled for success."""
        return self.committed and self.pending == 0 and self.kids_s == 0

    def complete_done(self) -> bool:
        return self.complete_st == SUCCEEDED if self.complete is not None else self.executed()

    def success_done(self) -> bool:
        if self.success is not None:
            return self.success_st == SUCCEEDED
        return self.succeeded() and self.complete_done()

    def settled(self) -> tuple[bool, bool]:
        """(settled for the parent's complete, settled for the parent's success)."""
        return self.complete_done() and not self.success_busy(), self.success_done()

    def success_busy(self) -> bool:
        """The success callback is enqueued and unfinished, or due to be enqueued now."""
        if self.success is None or self.success_st == SUCCEEDED:
            return False
        return self.success_st == ENQUEUED or (self.succeeded() and self.complete_done())

    def all_callbacks_done(self) -> bool:
        return all(st == SUCCEEDED for job, st in ((self.complete, self.complete_st),
                                                   (self.success, self.success_st)) if job is not None)

    def moments(self) -> frozenset[BatchMoment]:
        """The moments it reached (`hooks.BatchMoment`), read off its record: a declared
        callback's moment is when it was enqueued (or refused, counting as done); an
        undeclared one's is when it would have been."""
        if not self.committed:
            return frozenset()
        reached = set()
        if (self.complete_st != PENDING if self.complete is not None
                else self.executed() or self.success_st != PENDING):
            reached.add(BatchMoment.COMPLETE)
        if (self.success_st != PENDING if self.success is not None
                else self.succeeded() and self.complete_done()):
            reached.add(BatchMoment.SUCCESS)
        return frozenset(reached)

    def status(self) -> dict[str, Any]:
        """BATCH STATUS's reply object."""
        out: dict[str, Any] = {"bid": self.bid}
        if self.parent_bid:
            out["parent_bid"] = self.parent_bid
        if self.description:
            out["description"] = self.description
        out.update(created_at=format_time(self.created_at), total=self.total, pending=self.pending,
                   failed=self.failed, complete_st=self.complete_st, success_st=self.success_st)
        return out


def member_bid(job: Job) -> str:
    """The batch a pushed job joins ("" for none); raises ClientError for a non-string bid."""
    custom = job.get("custom")
    if not custom:
        return ""
    bid = custom.get("bid")
    if bid is None or bid == "":
        return ""
    if not isinstance(bid, str):
        raise ClientError(f"custom.bid must be a batch id string: {compact_json(bid)}")
    return bid


def stored_bid(job: Job, key: str) -> str:
    """custom[key] of a stored job if it is a non-empty string, else ""."""
    value = (job.get("custom") or {}).get(key)
    return value if isinstance(value, str) else ""


def callback_job(raw: Any, kind: str, bid: str, now: float, new_jid: Callable[[], str],
                 check: Callable[[Job, float], None]) -> Job | None:
    """Validate a callback job and make it ready to enqueue (never a member of a batch).

    `check` raises ClientError if PUSH would refuse the job (the prepare hooks: `expires_in`,
    `unique_for`, ...); the job is stored as given, and rewritten by them when it fires.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ClientError(f"invalid {kind} callback: it must be a job object, not {compact_json(raw)}")
    raw = dict(raw)
    if not raw.get("jid"):
        raw["jid"] = new_jid()
    if raw.get("args") is None:
        raw["args"] = []
    raw.pop("at", None)
    try:
        job, _ = jobs.decode_push(raw, now)
        check(job, now)
    except ClientError as exc:
        raise ClientError(f"invalid {kind} callback: {exc}") from None
    custom = {k: v for k, v in (job.get("custom") or {}).items() if k != "bid"}
    custom["_bid"] = bid
    return jobs.with_fields(job, custom=custom, enqueued_at="")


class BatchView(Protocol):
    """Batch records as the batch ops change them: the live state (`feature.Batches`) or a
    plan's overlay (`planner.Txn`)."""

    def get(self, bid: str) -> Batch | None: ...

    def put(self, bid: str, batch: Batch | None) -> None: ...

    def mark(self, bid: str, jid: str, on: bool) -> None: ...


def apply_to(view: BatchView, op: Op) -> None:
    """The batch ops' effect on batch records; shared by the live state and `planner.Txn`."""
    kind = op["op"]
    if kind == "batch_new":
        view.put(op["bid"], Batch.from_record(op["batch"]))
    elif kind == "batch_set":
        batch = view.get(op["bid"])
        if batch is not None:
            view.put(op["bid"], replace(batch, **op["set"]))
    elif kind == "batch_del":
        view.put(op["bid"], None)
    elif kind == "batch_failing":
        view.mark(op["bid"], op["jid"], op["on"])
