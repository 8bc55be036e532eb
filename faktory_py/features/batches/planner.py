"""Planning a change to batches: the ops a hook or a BATCH operation must commit.

A plan runs on a copy-on-write overlay of the batch state (`Txn`) that applies each op it
plans with the very function the store applies it with (`model.apply_to`), so every step
of a plan sees what the ops before it will have done, and what is committed is exactly
what was planned against. The rules (when a callback fires, how a child's settling reaches
its parents) are in `feature.py`'s docstring.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from ...core.hooks import BatchMoment, Reached
from ...errors import ClientError
from ...store.api import AnyOp, Job
from .model import CALLBACKS, COMMITTED, DONE, ENQUEUED, PENDING, SUCCEEDED, TRANSITIONS, Batch, apply_to

log = logging.getLogger("faktory_py.batches")

#: a step that reaches both tells COMPLETE first (a batch's complete moment never follows its success)
MOMENT_ORDER = (BatchMoment.COMPLETE, BatchMoment.SUCCESS)


class LiveState(Protocol):
    """The committed batch state a plan reads through (`feature.Batches`)."""

    @property
    def batches(self) -> Mapping[str, Batch]: ...

    @property
    def failing(self) -> Mapping[str, set[str]]: ...

    @property
    def retention(self) -> float: ...

    def push_callback(self, job: Job, now: float) -> list[AnyOp]: ...


class Txn:
    """A copy-on-write view of the batch state: planned ops are applied here first.

    Reads fall through to the live state; `emit` records an op and applies it to the
    overlay with the same function the store uses live (`model.apply_to`), so what the plan
    sees is exactly what the committed ops will produce.
    """

    def __init__(self, owner: LiveState) -> None:
        self.owner = owner
        self.ops: list[AnyOp] = []
        self._batches: dict[str, Batch | None] = {}
        self._failing: dict[tuple[str, str], bool] = {}

    def get(self, bid: str) -> Batch | None:
        if bid in self._batches:
            return self._batches[bid]
        return self.owner.batches.get(bid)

    def is_failing(self, bid: str, jid: str) -> bool:
        found = self._failing.get((bid, jid))
        if found is not None:
            return found
        return jid in self.owner.failing.get(bid, ())

    def put(self, bid: str, batch: Batch | None) -> None:
        self._batches[bid] = batch

    def mark(self, bid: str, jid: str, on: bool) -> None:
        self._failing[(bid, jid)] = on

    def emit(self, op: AnyOp) -> None:
        self.ops.append(op)
        if isinstance(op, dict):  # a store op (a callback's enqueue) changes no batch
            apply_to(self, op)

    def reached(self) -> list[Reached]:
        """The moments the batches this plan changed reach with it (and GONE for those it
        removes): what was not reached in the live state and is in the overlay."""
        out: list[Reached] = []
        for bid, after in self._batches.items():
            before = self.owner.batches.get(bid)
            if after is None:
                if before is not None:
                    out.append((bid, BatchMoment.GONE))
                continue
            new = after.moments() - (before.moments() if before is not None else frozenset())
            out += [(bid, moment) for moment in MOMENT_ORDER if moment in new]
        return out

    def set(self, batch: Batch, **changes: Any) -> Batch:
        """Change fields of a batch (only those that really change are journaled)."""
        changes = {k: v for k, v in changes.items() if getattr(batch, k) != v}
        if "phase" in changes and changes["phase"] not in TRANSITIONS[batch.phase]:
            raise AssertionError(f"batch {batch.bid}: no transition {batch.phase} -> {changes['phase']}")
        if changes:
            self.emit({"op": "batch_set", "bid": batch.bid, "set": changes})
        return self.get(batch.bid) or batch


def advance(txn: Txn, bid: str, now: float) -> None:
    """Fire what is due for `bid`, then let its parent (and so on up) react."""
    while bid:
        batch = txn.get(bid)
        if batch is None:
            return
        if batch.committed:
            if batch.complete is not None and batch.complete_st == PENDING and batch.executed():
                batch = _fire(txn, batch, "complete", now)
            if (batch.success is not None and batch.success_st == PENDING
                    and batch.succeeded() and batch.complete_done()):
                batch = _fire(txn, batch, "success", now)
            if batch.phase == CALLBACKS and batch.all_callbacks_done():
                batch = txn.set(batch, phase=DONE, expires_at=now + txn.owner.retention)
        settled_c, settled_s = batch.settled()
        if (settled_c, settled_s) == (batch.settled_c, batch.settled_s):
            return
        old_c, old_s = batch.settled_c, batch.settled_s
        txn.set(batch, settled_c=settled_c, settled_s=settled_s)
        parent = txn.get(batch.parent_bid) if batch.parent_bid else None
        if parent is None:
            return
        txn.set(parent, kids_c=parent.kids_c + old_c - settled_c,
                kids_s=parent.kids_s + old_s - settled_s)
        bid = parent.bid


def _fire(txn: Txn, batch: Batch, kind: str, now: float) -> Batch:
    """Push the `kind` callback of `batch` through the push hooks and record that it was.

    A callback a push hook refuses (a unique callback whose twin holds the lock) is not
    enqueued: the job it stands for is already there, so it counts as done ("2") and the
    batch goes on (its success callback may follow at once).
    """
    job = batch.complete if kind == "complete" else batch.success
    assert job is not None
    state = ENQUEUED
    try:
        ops = txn.owner.push_callback(job, now)
    except ClientError as exc:
        log.warning("batch %s: the %s callback %s was not enqueued (%s); it counts as done",
                    batch.bid, kind, job["jid"], exc)
        state = SUCCEEDED
    else:
        for op in ops:
            txn.emit(op)
    changes: dict[str, Any] = {f"{kind}_st": state}
    if batch.phase == COMMITTED:
        changes["phase"] = CALLBACKS
    return txn.set(batch, **changes)


def member_ran(txn: Txn, bid: str, jid: str, ok: bool, now: float) -> None:
    """A member finished one run: succeeded (ok), or failed or left without succeeding."""
    batch = txn.get(bid)
    if batch is None:
        return
    was_failing = txn.is_failing(bid, jid)
    if ok:
        if was_failing:
            txn.emit({"op": "batch_failing", "bid": bid, "jid": jid, "on": False})
        txn.set(batch, pending=batch.pending - 1, failed=batch.failed - was_failing)
    elif not was_failing:
        txn.emit({"op": "batch_failing", "bid": bid, "jid": jid, "on": True})
        txn.set(batch, failed=batch.failed + 1)
    advance(txn, bid, now)


def expire(txn: Txn, bid: str, now: float) -> None:
    """Remove a batch whose time is up: an open batch whose uncommitted_ttl has passed (no
    callbacks fire; its parent stops waiting for it), or a done batch whose retention has
    (forgotten; its parent still counts it as it last did, so a child that never succeeded
    keeps its parent's success from firing as before)."""
    batch = txn.get(bid)
    if batch is None:
        return
    txn.emit({"op": "batch_del", "bid": bid})
    if batch.phase == DONE:
        return
    parent = txn.get(batch.parent_bid) if batch.parent_bid else None
    if parent is not None:  # the parent no longer waits for an abandoned child
        txn.set(parent, kids_c=parent.kids_c - (not batch.settled_c),
                kids_s=parent.kids_s - (not batch.settled_s))
        advance(txn, parent.bid, now)
