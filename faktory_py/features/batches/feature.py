"""Batches: Faktory Enterprise's `BATCH` command and `custom.bid`, with enforced immutability.

Why: a producer fans work out into many jobs and wants one job to run when all of them
have run (`complete`) or all of them have succeeded (`success`). Faktory Enterprise has
this, but does not enforce the guarantee its documentation gives ("once committed, only a
job within the batch may reopen it"; "once a callback has been enqueued, you may not add
anything"), so a batch can gain jobs after its callbacks fired. Here the server enforces
it (protocol/spec.md §10); `[batches] policy = "permissive"` restores Enterprise's
behaviour.

Wire (protocol/spec.md §10, protocol/clients.md §8.1):

* `BATCH NEW {"description"?, "parent_bid"?, "success"?: job, "complete"?: job, "bid"?: ""}`
  ⇒ bulk bid `b-<20 hex>`. At least one callback; a callback without a jid gets one,
  without args gets `[]`, without queue goes to `default`; its `at` is ignored.
* `BATCH OPEN <bid>` ⇒ bulk bid; `BATCH COMMIT <bid>` ⇒ `+OK` (idempotent);
  `BATCH STATUS <bid>` ⇒ bulk `{"bid","parent_bid"?,"description"?,"created_at","total",
  "pending","failed","complete_st","success_st"}`, `*_st` "" / "1" (enqueued) / "2" (over:
  ACKed, or left for good otherwise, below).
* A job joins with `"custom":{"bid":<bid>}` on PUSH/PUSHB. Unknown (expired, forgotten) bid
  anywhere ⇒ `-ERR No such batch <bid>`.
* Callback jobs are ordinary jobs without `custom.bid`; they carry `custom._bid` (the batch
  id, where faktory_worker_go's `CallbackBid()` looks for it). NEW checks them as PUSH
  would (prepare hooks included); when one fires it is pushed through every prepare and
  push hook, as a PUSH is (`Manager.push_ops`): `expires_in`
  counts from then, `unique_for` takes a lock, `track` tracks it. One a hook refuses (a
  unique callback whose twin holds the lock) is not enqueued and counts as done ("2").
  A callback is over ("2") when its job leaves for good, however: ACKed, or dead,
  discarded, expired, deleted (a FAIL that will be retried leaves it "1").

Counting (a member is a job pushed with the batch's bid; a child batch's jobs are not the
parent's members): `total` = members pushed; `pending` = members that have not succeeded
yet; `failed` = members whose last run failed (FAIL, reservation expiry), or that ended
without success (dead, discarded, dropped at FETCH because it had expired, or deleted
before it ran: MUTATE discard/kill/clear of the scheduled or retry set, QUEUE REMOVE, the
web UI), and that have not succeeded since. A member "has run" once it succeeded, failed
or ended, so a FAIL that will be retried counts as run, and so does a member that never
will: *complete* ⟺ every member ran (pending == failed); *success* ⟺ every member succeeded
(pending == 0) — a member that fails and then succeeds on retry counts as success.

The state machine of one batch (`phase`):

    open ──COMMIT──▶ committed ──a callback enqueued──▶ callbacks ──all its callbacks over───▶ done
     └──uncommitted_ttl (default 30 min) passes──▶ (removed, no callbacks)                  │
                                                  (forgotten) ◀──retention (default 1 day)──┘

* A done batch is forgotten `retention` seconds later (its `expires_at`, set by the step
  that made it done): unknown from then on. Its parent keeps counting it as it last did, so
  a child that never succeeded still keeps its parent's success from firing. A batch that
  is not done is kept (a dead member may still be retried and succeed).

* `complete` is enqueued (complete_st "1") once the batch is committed, every member ran,
  and every child batch is *settled for complete*; its end (ACK, usually) makes complete_st "2".
* `success` is enqueued once the batch is committed, every member succeeded, every child
  batch is *settled for success*, and the complete callback (if any) is over.
* A batch is settled for complete when its complete stage is over (complete callback
  over, or none and the batch is complete) and no success callback of it is enqueued
  but unfinished; settled for success when its success stage is over (success callback
  over, or none and the batch succeeded). So a parent's callbacks wait for its
  children's: a child's success callback that fires together with its completion runs
  before the parent's complete callback, and may still reopen the parent.
* Each callback fires at most once, only after commit; an empty batch fires at COMMIT.
  Everything is decided inside the command that causes it (PUSH, ACK, FAIL, MUTATE, QUEUE
  REMOVE, a web UI action, COMMIT, the timer) and committed with it, so a STATUS right after, from anywhere, sees it.

Immutability (strict policy, the default). Adding to a batch means pushing a member,
creating a child with `parent_bid`, or `BATCH OPEN`:

* open (uncommitted): allowed from anywhere;
* committed: allowed only *from within* — while a job "within" the batch is reserved, and,
  if the calling connection's HELLO named a worker process (`wid`), only when that process
  holds such a job. A job is within batch B if it is a member of B or of a descendant of B,
  or it is a callback job of a descendant of B (so a child's callback may reopen the
  parent, Sidekiq's workflow pattern; the parent is still waiting for that callback).
* once any callback of the batch was enqueued: never (not even from within).

Refusals are `-ERR Batch <bid> is ...` naming the rule, and change nothing. `BATCH COMMIT`
and `BATCH STATUS` are always allowed. `permissive` allows every addition to any existing
batch, as Faktory Enterprise does (callbacks still fire at most once).

State is journaled as small ops (`batch_new` carries a whole record, `batch_set` the
changed fields with their new values, `batch_failing`, `batch_del`, `batch_hold` /
`batch_release` for the reserved jobs within batches), so replay needs no logic. The
planning code (`planner.py`) works on a copy-on-write overlay (`planner.Txn`) so the hooks
can return ops computed against the state those very ops will produce. The batch record
and its rules are `model.py`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ...core import jobs
from ...core.hooks import BatchMoment, Ended, Ending, Ends, JobPusher, Outcome, Reached
from ...core.registry import Feature, WebPage
from ...errors import ClientError, NoSuchBatch
from ...store.api import AnyOp, Job, Op, Reservation, SortedJobSet, Store, enqueue_op
from ...util.jsoncodec import compact_json
from ...util.timefmt import format_time
from .model import (
    COMMITTED, ENQUEUED, SUCCEEDED, Batch, apply_to, callback_job, member_bid, new_bid, new_jid, stored_bid,
)
from .planner import Txn, advance, expire, member_ran


class Batches:
    """Batch records, the hooks that count members and fire callbacks, and what BATCH
    (commands/batch.py) reads and changes.

    The records, failing members, expiries and holds are applied, snapshotted and flushed
    by the store (`StateOwner`).
    """

    op_names = ("batch_new", "batch_set", "batch_del", "batch_failing", "batch_hold", "batch_release")

    def __init__(self, store: Store, policy: str, uncommitted_ttl: float, retention: float,
                 bids: Callable[[], str] = new_bid, jids: Callable[[], str] = new_jid) -> None:
        """`policy` ("strict" or "permissive"), `uncommitted_ttl` and `retention` (seconds)
        are `[batches]`'s, validated when the configuration is loaded (config/jobs.py)."""
        self.store = store
        self.policy = policy
        self.uncommitted_ttl = float(uncommitted_ttl)
        self.retention = float(retention)
        self.new_bid = bids
        self.new_jid = jids
        #: how callbacks are checked (at NEW) and pushed (when they fire): the `Manager`, once
        #: one is made over the registry (`use_pusher`); until then (a store being replayed,
        #: or a test of the batch records alone) they are enqueued as they are
        self.pusher: JobPusher = Unhooked()
        self.batches: dict[str, Batch] = {}
        #: bid → jids of members whose last run failed (and not succeeded since)
        self.failing: dict[str, set[str]] = {}
        #: open batches by when they expire, done batches by when they are forgotten
        self.expiry = SortedJobSet()
        #: reserved jobs within batches: jid → (wid, bid, is_callback), and counts of
        #: (bid, is_callback) per worker process and overall
        self.holds: dict[str, tuple[str, str, bool]] = {}
        self.by_wid: dict[str, Counter[tuple[str, bool]]] = {}
        self.by_key: Counter[tuple[str, bool]] = Counter()
        store.register_state(self)

    # --- state (applied through the store: live commits and replay alike) ---------------

    def get(self, bid: str) -> Batch | None:
        return self.batches.get(bid)

    def put(self, bid: str, batch: Batch | None) -> None:
        if batch is None:
            self.batches.pop(bid, None)
            self.failing.pop(bid, None)
            self.expiry.remove(bid)
            return
        self.batches[bid] = batch
        if batch.expires_at is not None:
            if self.expiry.get(bid) is None:
                self.expiry.add(bid, batch.expires_at, None)
        else:
            self.expiry.remove(bid)

    def mark(self, bid: str, jid: str, on: bool) -> None:
        if on:
            self.failing.setdefault(bid, set()).add(jid)
        else:
            members = self.failing.get(bid)
            if members is not None:
                members.discard(jid)
                if not members:
                    del self.failing[bid]

    def apply(self, op: Op) -> float | None:
        kind = op["op"]
        if kind == "batch_hold":
            self._apply_hold(op)
        elif kind == "batch_release":
            self._apply_release(op)
        else:
            apply_to(self, op)
        # a new open batch, or a batch just done, is timed work: the due timer may have to
        # wake for its expiry
        if kind == "batch_new":
            return op["batch"]["expires_at"]
        return op["set"].get("expires_at") if kind == "batch_set" else None

    def _apply_hold(self, op: Op) -> None:
        self._apply_release(op)  # a jid is reserved once at a time: a new hold replaces an old one
        key = (op["bid"], op["cb"])
        self.holds[op["jid"]] = (op["wid"], op["bid"], op["cb"])
        self.by_wid.setdefault(op["wid"], Counter())[key] += 1
        self.by_key[key] += 1

    def _apply_release(self, op: Op) -> None:
        found = self.holds.pop(op["jid"], None)
        if found is None:
            return
        wid, bid, cb = found
        key = (bid, cb)
        for counter in (self.by_wid[wid], self.by_key):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        if not self.by_wid[wid]:
            del self.by_wid[wid]

    def flush(self) -> None:
        """FLUSH wipes batches with everything else."""
        self.batches.clear()
        self.failing.clear()
        self.expiry.clear()
        self.holds.clear()
        self.by_wid.clear()
        self.by_key.clear()

    def snapshot(self) -> Iterator[Op]:
        batches = [batch.record() for batch in self.batches.values()]
        failing = [(bid, sorted(jids)) for bid, jids in self.failing.items()]
        holds = list(self.holds.items())

        def ops() -> Iterator[Op]:
            for record in batches:
                yield {"op": "batch_new", "bid": record["bid"], "batch": record}
            for bid, jids in failing:
                for jid in jids:
                    yield {"op": "batch_failing", "bid": bid, "jid": jid, "on": True}
            for jid, (wid, bid, cb) in holds:
                yield {"op": "batch_hold", "jid": jid, "wid": wid, "bid": bid, "cb": cb}

        return ops()

    # --- pushing callbacks ------------------------------------------------------------

    def use_pusher(self, pusher: JobPusher) -> None:
        self.pusher = pusher

    def push_callback(self, job: Job, now: float) -> list[AnyOp]:
        """The ops that enqueue a callback job: through the push hooks, like a PUSH
        (planner._fire; ClientError if a hook refuses it)."""
        return self.pusher.push_ops(job, now)

    def _ops(self, txn: Txn, now: float) -> list[AnyOp]:
        """A plan's ops, and in the same step those of every feature told of the moments
        its batches reach (a job waiting for a batch, `hooks.BatchHook`). Jobs those end
        (a dependent killed because its batch is gone) are counted in this very plan, which
        may reach further moments in turn."""
        told: set[Reached] = set()
        ops: list[AnyOp] = []
        while reached := [moment for moment in txn.reached() if moment not in told]:
            told.update(reached)
            answer = self.pusher.batch_reached(reached, self, now)
            ops += answer.ops
            for end in answer.ended:
                self._finished(txn, end.job, end.ending is Ending.SUCCESS, True, now)
        return txn.ops + ops

    # --- reading ----------------------------------------------------------------------

    def moments(self, bid: str, now: float) -> frozenset[BatchMoment] | None:
        """`hooks.BatchStates`: the moments batch `bid` reached; None if it is unknown (or
        an open batch past its expiry)."""
        batch = self.live(bid, now)
        return None if batch is None else batch.moments()

    def live(self, bid: str, now: float) -> Batch | None:
        """The batch, unless unknown or an open batch past its expiry (not yet removed)."""
        batch = self.batches.get(bid)
        if batch is None or (batch.expires_at is not None and batch.expires_at <= now):
            return None
        return batch

    def status(self, bid: str, now: float) -> dict[str, Any]:
        batch = self.live(bid, now)
        if batch is None:
            raise NoSuchBatch(bid)
        return batch.status()

    def _ancestry(self, bid: str) -> Iterator[str]:
        """bid, its parent, grandparent, ... as far as they exist."""
        seen = 0
        while bid and seen <= len(self.batches):
            yield bid
            batch = self.batches.get(bid)
            if batch is None:
                return
            bid = batch.parent_bid
            seen += 1

    def within(self, bid: str, wid: str) -> bool:
        """Is a job within batch `bid` reserved (by worker process `wid`, if one is given)?"""
        keys = self.by_wid.get(wid, Counter()) if wid else self.by_key
        for holder, is_callback in keys:
            start = holder
            if is_callback:  # a callback job is within its batch's ancestors, not the batch
                batch = self.batches.get(holder)
                start = batch.parent_bid if batch is not None else ""
            if bid in self._ancestry(start):
                return True
        return False

    def check_add(self, batch: Batch, wid: str) -> None:
        """Raise ClientError unless something may be added to `batch` by worker `wid`."""
        if self.policy == "permissive":
            return
        bid = batch.bid
        if batch.closed:
            raise ClientError(f"Batch {bid} is closed: a callback has been enqueued, "
                           "so nothing can be added to it")
        if not batch.committed or self.within(bid, wid):
            return
        if wid:
            raise ClientError(f"Batch {bid} is committed: it can only be reopened or added to from "
                           "within, by the worker process working one of its jobs (or a child "
                           f"batch's), and worker {wid} works none")
        raise ClientError(f"Batch {bid} is committed: it can only be reopened or added to from "
                       "within, while one of its jobs (or a child batch's) is being worked, "
                       "and none is")

    def _callback_kind(self, job: Job) -> tuple[Batch, str] | None:
        """(batch, "complete"|"success") if `job` is a callback of an existing batch."""
        batch = self.batches.get(stored_bid(job, "_bid"))
        if batch is None:
            return None
        jid = job.get("jid")
        for kind, callback in (("complete", batch.complete), ("success", batch.success)):
            if callback is not None and callback["jid"] == jid:
                return batch, kind
        return None

    def _holder_key(self, job: Job) -> tuple[str, bool] | None:
        bid = stored_bid(job, "bid")
        if bid in self.batches:
            return bid, False
        found = self._callback_kind(job)
        if found is not None:
            return found[0].bid, True
        return None

    # --- hooks ------------------------------------------------------------------------

    def feature(self) -> Feature:
        """How it plugs in: members are counted at PUSH, held while reserved (FETCH), and
        settle at a FAIL that will be retried or when they end (`on_end`: ACK, dead,
        discarded, expired, deleted); the timer removes expired open batches and forgets
        done ones; BATCH makes,
        opens, commits and reads them; the web UI has a Batches page."""
        return Feature("batches", self, push=self, fetch=self, finish=self, end=self, timed=self, pushes=self,
                       pages=(WebPage("batches", "Batches"),), commands=("BATCH",),
                       custom_only=frozenset({"push", "fetch"}))

    def on_push(self, job: Job, scheduled_for: float | None, wid: str, now: float) -> list[AnyOp]:
        bid = member_bid(job)
        if not bid:
            return []
        batch = self.live(bid, now)
        if batch is None:
            raise NoSuchBatch(bid)
        self.check_add(batch, wid)
        txn = Txn(self)
        txn.set(batch, total=batch.total + 1, pending=batch.pending + 1)
        advance(txn, bid, now)
        return self._ops(txn, now)

    def on_fetch(self, job: Job, wid: str, now: float) -> list[Op]:
        key = self._holder_key(job)
        if key is None:
            return []
        return [{"op": "batch_hold", "jid": job["jid"], "wid": wid, "bid": key[0], "cb": key[1]}]

    def _finished(self, txn: Txn, job: Job, ok: bool, ended: bool, now: float) -> None:
        """A job's run is over: a member succeeded (`ok`), failed or left; a callback that
        left for good (`ended`: ACKed, or dead, discarded, expired, deleted) is over ("2").
        Plans what follows on `txn`."""
        if job["jid"] in self.holds:
            txn.emit({"op": "batch_release", "jid": job["jid"]})
        bid = stored_bid(job, "bid")
        if bid in self.batches:
            member_ran(txn, bid, job["jid"], ok, now)
        elif ended:
            found = self._callback_kind(job)
            if found is not None:
                batch, kind = found
                batch = txn.get(batch.bid) or batch
                if getattr(batch, f"{kind}_st") == ENQUEUED:
                    txn.set(batch, **{f"{kind}_st": SUCCEEDED})
                    advance(txn, batch.bid, now)

    def on_ack(self, res: Reservation, now: float) -> list[Op]:
        return []  # counted when it ends (`on_end`, same step)

    def on_fail(self, res: Reservation, failed: Job, outcome: Outcome, now: float) -> list[AnyOp]:
        """A failure that will be retried: the member has run (for complete), and is not
        over. A failure that ends the job is counted in `on_end` (same step)."""
        if outcome is not Outcome.RETRY:
            return []
        txn = Txn(self)
        self._finished(txn, res.job, False, False, now)  # a callback that will retry stays "1"
        return self._ops(txn, now)

    def on_end(self, ended: Sequence[Ended], now: float) -> list[AnyOp]:
        """Every way a job leaves for good: ACKed (a success), or dead, discarded, dropped
        at FETCH because it expired, or deleted without running (MUTATE discard/kill/clear
        of the scheduled or retry set, QUEUE REMOVE, the web UI) — for a member all of these
        count as failed, so a member that never runs cannot keep its batch from completing
        (one that had failed already, killed or deleted from the retry set, is not counted
        twice); for a callback any ending is its end ("2"), so one that will never run
        cannot keep its batch from going on to done. A job without `custom` is neither a
        member nor a callback, and held only if one with its jid was (every ACK comes here)."""
        holds = self.holds
        for end in ended:  # (a loop, not a generator: every ACK comes here)
            if "custom" in end.job or end.job["jid"] in holds:
                break
        else:
            return []
        txn = Txn(self)
        for end in ended:
            self._finished(txn, end.job, end.ending is Ending.SUCCESS, True, now)
        return self._ops(txn, now)

    def next_due(self) -> float | None:
        return self.expiry.first_score()

    def run_due(self, now: float) -> list[AnyOp]:
        """Remove open batches whose uncommitted_ttl has passed (no callbacks fire) and
        forget done batches whose retention has."""
        txn = Txn(self)
        for _score, bid, _ in self.expiry.due(now):
            expire(txn, bid, now)
        return self._ops(txn, now)

    # --- operations behind the BATCH command (commands/batch.py parses its arguments; these
    #     are pure: ops to commit, or ClientError) ----------------------------------------

    def new(self, payload: Mapping[str, Any], wid: str, now: float) -> tuple[str, list[AnyOp]]:
        """BATCH NEW's object (decoded JSON) from a connection of worker process `wid`:
        the new bid and the ops that create it (raises ClientError)."""
        given = payload.get("bid")
        if given is not None and given != "":
            raise ClientError("BATCH NEW must not carry a bid: the server assigns it")
        parent_bid = payload.get("parent_bid")
        if parent_bid is None:
            parent_bid = ""
        if not isinstance(parent_bid, str):
            raise ClientError(f"parent_bid must be a batch id string: {compact_json(parent_bid)}")
        description = payload.get("description")
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise ClientError(f"description must be a string: {compact_json(description)}")
        bid = self.new_bid()
        while bid in self.batches:
            bid = self.new_bid()
        complete = callback_job(payload.get("complete"), "complete", bid, now, self.new_jid, self.pusher.check_push)
        success = callback_job(payload.get("success"), "success", bid, now, self.new_jid, self.pusher.check_push)
        if complete is None and success is None:
            raise ClientError("BATCH NEW needs a success or complete callback job")
        if parent_bid:
            parent = self.live(parent_bid, now)
            if parent is None:
                raise NoSuchBatch(parent_bid)
            self.check_add(parent, wid)
        txn = Txn(self)
        batch = Batch(bid, parent_bid, description, now, now + self.uncommitted_ttl, complete, success)
        txn.emit({"op": "batch_new", "bid": bid, "batch": batch.record()})
        if parent_bid:
            parent = txn.get(parent_bid)
            assert parent is not None
            txn.set(parent, kids_c=parent.kids_c + 1, kids_s=parent.kids_s + 1)
            advance(txn, parent_bid, now)
        return bid, txn.ops

    def open(self, bid: str, wid: str, now: float) -> str:
        batch = self.live(bid, now)
        if batch is None:
            raise NoSuchBatch(bid)
        self.check_add(batch, wid)
        return bid

    def commit(self, bid: str, now: float) -> list[AnyOp]:
        batch = self.live(bid, now)
        if batch is None:
            raise NoSuchBatch(bid)
        if batch.committed:
            return []  # idempotent
        txn = Txn(self)
        txn.set(batch, phase=COMMITTED, expires_at=None)
        advance(txn, bid, now)
        return self._ops(txn, now)


class Unhooked:
    """The `JobPusher` of batches no `Manager` runs: callbacks are checked by nothing more
    than BATCH NEW's own checks and enqueued as they are."""

    def check_push(self, job: Job, now: float) -> None:
        pass

    def push_ops(self, job: Job, now: float) -> list[AnyOp]:
        return [enqueue_op(jobs.with_fields(job, enqueued_at=format_time(now)))]

    def batch_reached(self, reached: Sequence[Reached], caller: object, now: float) -> Ends:
        return Ends([], [])


def batch_table(extension: Batches) -> dict[str, Any]:
    """The whole state as plain data, for tests comparing a live and a replayed store."""
    return {
        "batches": {bid: batch.record() for bid, batch in sorted(extension.batches.items())},
        "failing": {bid: sorted(jids) for bid, jids in sorted(extension.failing.items())},
        "expiry": list(extension.expiry.items()),
        "holds": dict(sorted(extension.holds.items())),
        "by_wid": {wid: dict(c) for wid, c in sorted(extension.by_wid.items())},
        "by_key": dict(extension.by_key),
    }
