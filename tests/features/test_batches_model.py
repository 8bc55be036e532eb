"""Model-based test of batches: Manager + MemoryStore + Batches against a plain reference.

A hypothesis state machine interleaves BATCH NEW (top-level and child batches), member
PUSH/PUSHB (from producers and from worker processes that do or do not hold a job within
the batch), BATCH OPEN, BATCH COMMIT, FETCH, ACK, FAIL, MUTATE requeues, members and
callbacks that end without running (MUTATE discard/kill/clear of the scheduled and retry
sets, QUEUE REMOVE, deleting queued jobs as the web UI does), FLUSH, the clock (uncommitted
batches expiring, done batches forgotten after the retention, reservations expiring,
retries coming back) and restarts from the journal or a snapshot. The reference model below is written from the rules in
faktory_py/features/batches/feature.py's docstring with plain recursion over the batch tree (no counters,
no propagation), so it checks the implementation's incremental bookkeeping. After every
step: each batch's total/pending/failed, callback states and phase match; each callback
was enqueued exactly once if its state says so and never otherwise; complete before
success; never before commit; under the strict policy nothing is added to a batch once a
callback was enqueued, and every refused addition changed nothing at all.

Job movement itself (which reservation expired, when a retry comes back) is the
lifecycle model's business (tests/core/test_lifecycle_model.py); here it is observed from the
store and fed to the batch model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from faktory_py.features.batches.feature import Batches, batch_table
from faktory_py.errors import ClientError
from faktory_py.core.lifecycle import Manager
from faktory_py.core.registry import Registry
from faktory_py.store import job_queue
from faktory_py.store.memory import MemoryStore
from faktory_py.util.timefmt import format_time
from helpers.model_replay import due_times, holdings, replay, roundtrip, snapshot_records, working_jids

BASE_NOW = 1_700_000_000.0
TTL = 600.0
RETENTION = 200.0
WIDS = ("", "w1", "w2")
MEMBER_QUEUE, CALLBACK_QUEUE = "default", "cb"


def store_state(store: MemoryStore) -> dict[str, Any]:
    return {**holdings(store), "counters": (store.statistics().processed, store.statistics().failures)}


# --- the reference model -----------------------------------------------------------------


@dataclass
class MBatch:
    bid: str
    parent: str
    expires_at: float
    callbacks: dict[str, str]  # kind → callback jid
    committed: bool = False
    st: dict[str, str] = field(default_factory=lambda: {"complete": "", "success": ""})
    #: member jid → "new" (never ran), "failing" (last run failed), "ok" (succeeded)
    members: dict[str, str] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    alive: bool = True
    #: when every callback it has was ACKed (then it is forgotten RETENTION later)
    done_at: float | None = None
    #: once forgotten: (settled for complete, settled for success) as its parent last counted them
    frozen: tuple[bool, bool] | None = None
    #: (total, children) when the first callback was enqueued
    closed_at: tuple[int, int] | None = None

    @property
    def closed(self) -> bool:
        return any(self.st.values())

    def counts(self) -> tuple[int, int, int]:
        states = list(self.members.values())
        return len(states), sum(s != "ok" for s in states), states.count("failing")


@dataclass
class Model:
    policy: str
    now: float = BASE_NOW
    batches: dict[str, MBatch] = field(default_factory=dict)
    member_of: dict[str, str] = field(default_factory=dict)
    callback_of: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: reserved jid → (wid, (bid, is_callback) it counts within, or None)
    reserved: dict[str, tuple[str, tuple[str, bool] | None]] = field(default_factory=dict)
    #: callback jids in the order they were enqueued (kept across FLUSH: the op log is)
    fired: list[str] = field(default_factory=list)

    def alive(self, bid: str) -> MBatch | None:
        batch = self.batches.get(bid)
        return batch if batch is not None and batch.alive else None

    def kids(self, b: MBatch) -> list[MBatch]:
        """The children a batch waits for: live ones and forgotten (done) ones, not the open
        ones that expired."""
        return [k for k in (self.batches[c] for c in b.children) if k.alive or k.frozen is not None]

    # the rules, recursively
    def executed(self, b: MBatch) -> bool:
        return (b.committed and all(s != "new" for s in b.members.values())
                and all(self.settled_complete(k) for k in self.kids(b)))

    def succeeded(self, b: MBatch) -> bool:
        return (b.committed and all(s == "ok" for s in b.members.values())
                and all(self.settled_success(k) for k in self.kids(b)))

    def complete_done(self, b: MBatch) -> bool:
        return b.st["complete"] == "2" if "complete" in b.callbacks else self.executed(b)

    def success_done(self, b: MBatch) -> bool:
        if "success" in b.callbacks:
            return b.st["success"] == "2"
        return self.succeeded(b) and self.complete_done(b)

    def settled_complete(self, b: MBatch) -> bool:
        if b.frozen is not None:
            return b.frozen[0]
        busy = "success" in b.callbacks and b.st["success"] != "2" and (
            b.st["success"] == "1" or (self.succeeded(b) and self.complete_done(b)))
        return self.complete_done(b) and not busy

    def settled_success(self, b: MBatch) -> bool:
        if b.frozen is not None:
            return b.frozen[1]
        return self.success_done(b)

    def phase(self, b: MBatch) -> str:
        if not b.committed:
            return "open"
        if not b.closed:
            return "committed"
        if all(b.st[kind] == "2" for kind in b.callbacks):
            return "done"
        return "callbacks"

    def settle(self) -> None:
        """Enqueue every callback whose condition holds (firing changes no condition)."""
        for b in reversed([b for b in self.batches.values() if b.alive]):
            if not b.committed:
                continue
            if "complete" in b.callbacks and b.st["complete"] == "" and self.executed(b):
                self._fire(b, "complete")
            if ("success" in b.callbacks and b.st["success"] == "" and self.succeeded(b)
                    and self.complete_done(b)):
                assert "complete" not in b.callbacks or b.st["complete"] == "2"
                self._fire(b, "success")
        for b in self.batches.values():
            if b.alive and b.done_at is None and self.phase(b) == "done":
                b.done_at = self.now
                event("batch done")

    def _fire(self, b: MBatch, kind: str) -> None:
        assert b.committed
        if b.closed_at is None:
            b.closed_at = (len(b.members), len(b.children))
        b.st[kind] = "1"
        self.fired.append(b.callbacks[kind])
        event(f"fired {kind}")

    # immutability
    def ancestry(self, bid: str) -> list[str]:
        out = []
        while bid:
            out.append(bid)
            b = self.alive(bid)
            if b is None:
                break
            bid = b.parent
        return out

    def within(self, bid: str, wid: str) -> bool:
        for rwid, key in self.reserved.values():
            if key is None or (wid and rwid != wid):
                continue
            holder, is_callback = key
            start = holder
            if is_callback:
                b = self.alive(holder)
                start = b.parent if b is not None else ""
            if bid in self.ancestry(start):
                return True
        return False

    def refusal(self, bid: str, wid: str) -> str | None:
        """None if something may be added to `bid` by `wid`, else the rule that refuses."""
        b = self.alive(bid)
        if b is None:
            return "No such batch"
        if self.policy == "permissive":
            return None
        if b.closed:
            return "is closed"
        if not b.committed or self.within(bid, wid):
            return None
        return "is committed"

    def holder_key(self, jid: str) -> tuple[str, bool] | None:
        if jid in self.member_of and self.alive(self.member_of[jid]):
            return self.member_of[jid], False
        if jid in self.callback_of and self.alive(self.callback_of[jid][0]):
            return self.callback_of[jid][0], True
        return None

    def finished(self, jid: str, ok: bool, ended: bool = True) -> None:
        """A job's run is over: it succeeded (`ok`) or not, and left for good (`ended`) or
        will be retried. A member that did not succeed is failing; a callback that left for
        good, however, is over ("2")."""
        self.reserved.pop(jid, None)
        bid = self.member_of.get(jid)
        if bid is not None:
            b = self.alive(bid)
            if b is not None:
                b.members[jid] = "ok" if ok else "failing"
        elif ended and jid in self.callback_of:
            bid, kind = self.callback_of[jid]
            b = self.alive(bid)
            if b is not None and b.st[kind] == "1":
                b.st[kind] = "2"
        self.settle()

    def expire_due(self) -> None:
        for b in self.batches.values():
            if b.alive and not b.committed and b.expires_at <= self.now:
                b.alive = False
                event("batch expired")
        forgotten = [b for b in self.batches.values()
                     if b.alive and b.done_at is not None and b.done_at + RETENTION <= self.now]
        for b, flags in [(b, (self.settled_complete(b), self.settled_success(b))) for b in forgotten]:
            b.alive, b.frozen = False, flags
            event("done batch forgotten")
        self.settle()


# --- the machine -------------------------------------------------------------------------

time_steps = st.one_of(st.integers(0, 120).map(float), st.integers(120, 2500).map(float))


class BatchMachine(RuleBasedStateMachine):
    POLICY = "strict"

    def __init__(self) -> None:
        super().__init__()
        self.model = Model(self.POLICY)
        self.journal: list[list[dict[str, Any]]] = []
        self.oplog: list[dict[str, Any]] = []  # every committed op, never compacted
        self.bid_serial = 0
        self.jid_serial = 0
        self.rng = random.Random(7)
        self.store, self.ext, self.manager = self._build()

    # --- plumbing -------------------------------------------------------------------

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        record = roundtrip(ops)
        self.journal.append(record)
        self.oplog.extend(record)
        return len(self.journal)

    def _new_bid(self) -> str:
        self.bid_serial += 1
        return f"b-{self.bid_serial:06d}"

    def _new_cb_jid(self) -> str:
        self.jid_serial += 1
        return f"cbjid-{self.jid_serial:06d}"

    def _new_jid(self) -> str:
        self.jid_serial += 1
        return f"job-{self.jid_serial:08d}"

    def _build(self) -> tuple[MemoryStore, Batches, Manager]:
        store = MemoryStore(sink=self._sink)
        ext = Batches(store, self.POLICY, TTL, RETENTION, bids=self._new_bid, jids=self._new_cb_jid)
        return store, ext, Manager(store, self.rng, Registry([ext.feature()]))

    @property
    def now(self) -> float:
        return self.model.now

    def _pick_bid(self, data: st.DataObject) -> str:
        """Mostly a live batch; sometimes an expired or unknown one."""
        alive = [bid for bid, b in self.model.batches.items() if b.alive][-6:]
        gone = [bid for bid, b in self.model.batches.items() if not b.alive][-2:] + ["b-unknown"]
        if alive and data.draw(st.integers(0, 9), label="live?") < 8:
            return data.draw(st.sampled_from(alive), label="bid")
        return data.draw(st.sampled_from(gone), label="bid")

    def _expect_refused(self, refusal: str, bid: str, call) -> None:  # type: ignore[no-untyped-def]
        before = len(self.oplog)
        state = store_state(self.store), batch_table(self.ext)
        with pytest.raises(ClientError) as info:
            call()
        assert str(info.value).startswith(f"Batch {bid} {refusal}" if refusal != "No such batch"
                                          else f"No such batch {bid}"), str(info.value)
        assert len(self.oplog) == before, "a refused request journaled something"
        assert (store_state(self.store), batch_table(self.ext)) == state
        event(f"refused: {refusal}")

    # --- rules ----------------------------------------------------------------------

    @rule(data=st.data(), kinds=st.sampled_from(["complete", "success", "both", "both", "none"]),
          wid=st.sampled_from(WIDS), with_parent=st.booleans(), go_style=st.booleans())
    def new_batch(self, data: st.DataObject, kinds: str, wid: str, with_parent: bool, go_style: bool) -> None:
        payload: dict[str, Any] = {"description": "d"}
        if go_style:
            payload["bid"] = ""  # the Go client always sends it
        parent = self._pick_bid(data) if with_parent else ""
        if parent:
            payload["parent_bid"] = parent
        given: dict[str, str] = {}
        for kind in ("complete", "success"):
            if kinds in (kind, "both"):
                job: dict[str, Any] = {"jobtype": f"On{kind}", "queue": CALLBACK_QUEUE}
                if data.draw(st.booleans(), label=f"{kind} has jid"):
                    job["jid"] = given[kind] = self._new_jid()
                if data.draw(st.booleans(), label=f"{kind} has args"):
                    job["args"] = [kind]
                payload[kind] = job

        def call() -> str:
            bid, ops = self.ext.new(payload, wid, self.now)
            self.store.commit(ops)
            return bid

        if kinds == "none":
            before = len(self.oplog)
            with pytest.raises(ClientError, match="needs a success or complete callback"):
                call()
            assert len(self.oplog) == before
            return
        refusal = self.model.refusal(parent, wid) if parent else None
        if refusal is not None:
            self._expect_refused(refusal, parent, call)
            return
        bid = call()
        record = self.ext.batches[bid]
        callbacks = {}
        for kind in ("complete", "success"):
            job = getattr(record, kind)
            if kinds in (kind, "both"):
                assert job is not None
                if kind in given:
                    assert job["jid"] == given[kind]
                assert job["custom"] == {"_bid": bid} and job["queue"] == CALLBACK_QUEUE
                callbacks[kind] = job["jid"]
                self.model.callback_of[job["jid"]] = (bid, kind)
            else:
                assert job is None
        self.model.batches[bid] = MBatch(bid, parent, self.now + TTL, callbacks)
        if parent:
            self.model.batches[parent].children.append(bid)
            event("child batch")
        self.model.settle()

    def _member(self, bid: Any, retry: int, reserve_for: int, at: float | None) -> dict[str, Any]:
        job: dict[str, Any] = {"jid": self._new_jid(), "jobtype": "Work", "args": [],
                               "queue": MEMBER_QUEUE, "retry": retry, "reserve_for": reserve_for}
        if bid is not None:
            job["custom"] = {"bid": bid, "track": 1}
        if at is not None:
            job["at"] = format_time(at)
        return job

    @rule(data=st.data(), wid=st.sampled_from(WIDS), retry=st.sampled_from([0, 1, 2]),
          reserve_for=st.sampled_from([60, 1800]), scheduled=st.integers(0, 5),
          bulk=st.integers(0, 3))
    def push(self, data: st.DataObject, wid: str, retry: int, reserve_for: int, scheduled: int,
             bulk: int) -> None:
        bid = self._pick_bid(data)
        at = self.now + 30 if scheduled == 0 else None
        if bulk == 0:  # PUSHB of a few members of the same batch (each one judged on its own)
            raws = [self._member(bid, retry, reserve_for, at) for _ in range(2)]
            before = len(self.oplog)
            errors, _ = self.manager.push_bulk(raws, self.now, wid)
            refusal = self.model.refusal(bid, wid)
            if refusal is not None:
                assert set(errors) == {r["jid"] for r in raws}
                assert all(refusal in e for e in errors.values()), errors
                assert len(self.oplog) == before
                event(f"PUSHB refused: {refusal}")
                return
            assert errors == {}
            for raw in raws:
                self._joined(raw["jid"], bid)
            return
        raw = self._member(bid, retry, reserve_for, at)
        refusal = self.model.refusal(bid, wid)
        if refusal is not None:
            self._expect_refused(refusal, bid, lambda: self.manager.push(raw, self.now, wid))
            return
        self.manager.push(raw, self.now, wid)
        self._joined(raw["jid"], bid)

    def _joined(self, jid: str, bid: str) -> None:
        b = self.model.batches[bid]
        b.members[jid] = "new"
        self.model.member_of[jid] = bid
        event("joined a committed batch" if b.committed else "joined an open batch")
        self.model.settle()

    @initialize(commit_root=st.booleans(), commit_child=st.booleans(), members=st.integers(0, 2))
    def a_tree(self, commit_root: bool, commit_child: bool, members: int) -> None:
        """Start from a parent with a child batch, each with members, maybe committed."""
        root = self._make_batch("", {"complete": "OnRoot", "success": "OnRootOk"})
        child = self._make_batch(root, {"success": "OnChild"})
        for bid, commit in ((child, commit_child), (root, commit_root)):
            for _ in range(members):
                raw = self._member(bid, 1, 1800, None)
                self.manager.push(raw, self.now)
                self._joined(raw["jid"], bid)
            if commit:
                self.store.commit(self.ext.commit(bid, self.now))
                self.model.batches[bid].committed = True
                self.model.settle()

    def _make_batch(self, parent: str, callbacks: dict[str, str]) -> str:
        payload: dict[str, Any] = {kind: {"jobtype": jobtype, "queue": CALLBACK_QUEUE}
                                   for kind, jobtype in callbacks.items()}
        if parent:
            payload["parent_bid"] = parent
        bid, ops = self.ext.new(payload, "", self.now)
        self.store.commit(ops)
        jids = {}
        for kind in callbacks:
            jids[kind] = getattr(self.ext.batches[bid], kind)["jid"]
            self.model.callback_of[jids[kind]] = (bid, kind)
        self.model.batches[bid] = MBatch(bid, parent, self.now + TTL, jids)
        if parent:
            self.model.batches[parent].children.append(bid)
        self.model.settle()
        return bid

    @rule(data=st.data(), action=st.sampled_from(["push", "push", "open", "child"]),
          caller=st.sampled_from(["same", "producer", "other"]))
    def from_a_job(self, data: st.DataObject, action: str, caller: str) -> None:
        """Worker w1 fetches a job, then it (or a producer, or worker w2) adds to its batch
        or an ancestor: the "from within" paths. The job stays reserved."""
        job, _ = self.manager.fetch([MEMBER_QUEUE, CALLBACK_QUEUE], "w1", self.now)
        if job is None:
            return
        jid = job["jid"]
        self.model.reserved[jid] = ("w1", self.model.holder_key(jid))
        if jid in self.model.member_of:
            start = self.model.member_of[jid]
        elif jid in self.model.callback_of:
            b = self.model.alive(self.model.callback_of[jid][0])
            start = b.parent if b is not None else ""
        else:
            return
        chain = self.model.ancestry(start)
        if not chain:
            return
        bid = data.draw(st.sampled_from(chain), label="target")
        wid = {"same": "w1", "producer": "", "other": "w2"}[caller]
        refusal = self.model.refusal(bid, wid)
        event(f"{action} by {caller}: {refusal or 'allowed'}")
        if action == "open":
            if refusal is not None:
                self._expect_refused(refusal, bid, lambda: self.ext.open(bid, wid, self.now))
            else:
                assert self.ext.open(bid, wid, self.now) == bid
        elif action == "push":
            raw = self._member(bid, 1, 1800, None)
            if refusal is not None:
                self._expect_refused(refusal, bid, lambda: self.manager.push(raw, self.now, wid))
            else:
                self.manager.push(raw, self.now, wid)
                self._joined(raw["jid"], bid)
        else:
            payload = {"parent_bid": bid, "success": {"jobtype": "OnChild", "queue": CALLBACK_QUEUE}}

            def call() -> str:
                child, ops = self.ext.new(payload, wid, self.now)
                self.store.commit(ops)
                return child

            if refusal is not None:
                self._expect_refused(refusal, bid, call)
                return
            child = call()
            cb = self.ext.batches[child].success
            assert cb is not None
            self.model.callback_of[cb["jid"]] = (child, "success")
            self.model.batches[child] = MBatch(child, bid, self.now + TTL, {"success": cb["jid"]})
            self.model.batches[bid].children.append(child)
            self.model.settle()

    @rule(wid=st.sampled_from(WIDS))
    def push_plain_or_bad(self, wid: str) -> None:
        self.manager.push(self._member(None, 1, 1800, None), self.now, wid)
        with pytest.raises(ClientError, match="custom.bid must be a batch id string"):
            self.manager.push(self._member(7, 1, 1800, None), self.now, wid)

    @rule(data=st.data(), wid=st.sampled_from(WIDS))
    def open_batch(self, data: st.DataObject, wid: str) -> None:
        bid = self._pick_bid(data)
        refusal = self.model.refusal(bid, wid)
        if refusal is not None:
            self._expect_refused(refusal, bid, lambda: self.ext.open(bid, wid, self.now))
            return
        before = len(self.oplog)
        assert self.ext.open(bid, wid, self.now) == bid
        assert len(self.oplog) == before  # OPEN is a check, not a change
        event("opened from within" if self.model.batches[bid].committed else "opened uncommitted")

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        bid = self._pick_bid(data)
        b = self.model.alive(bid)
        if b is None:
            self._expect_refused("No such batch", bid, lambda: self.ext.commit(bid, self.now))
            return
        ops = self.ext.commit(bid, self.now)
        if b.committed:
            assert ops == []  # idempotent
            event("commit again")
        self.store.commit(ops)
        b.committed = True
        self.model.settle()

    @rule(wid=st.sampled_from(WIDS), order=st.permutations([MEMBER_QUEUE, CALLBACK_QUEUE]))
    def fetch(self, wid: str, order: list[str]) -> None:
        job, _ = self.manager.fetch(list(order), wid, self.now)
        if job is None:
            return
        assert "bid" not in (job.get("custom") or {}) or job["jid"] in self.model.member_of
        self.model.reserved[job["jid"]] = (wid, self.model.holder_key(job["jid"]))

    @precondition(lambda self: self.store.statistics().working)
    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data: st.DataObject, ok: bool) -> None:
        jid = data.draw(st.sampled_from(sorted(working_jids(self.store))), label="jid")
        if ok:
            self.manager.ack(jid, self.now)
        else:
            self.manager.fail(jid, "E", "m", [], self.now)
        self.model.finished(jid, ok, ok or self._left(jid))

    def _left(self, jid: str) -> bool:
        """After a failure: did the job leave for good (not waiting in the retry set)?"""
        return self.store.set_entry("retries", jid) is None

    @rule(queue=st.sampled_from([MEMBER_QUEUE, CALLBACK_QUEUE, CALLBACK_QUEUE]))
    def run_one(self, queue: str) -> None:
        """A worker runs the next job of a queue to success at once (batches reach `done`)."""
        job, _ = self.manager.fetch([queue], "w2", self.now)
        if job is None:
            return
        self.manager.ack(job["jid"], self.now)
        self.model.finished(job["jid"], True)

    @rule(target_set=st.sampled_from(["retries", "dead"]))
    def requeue(self, target_set: str) -> None:
        self.manager.mutate({"cmd": "requeue", "target": target_set}, self.now)

    @rule(data=st.data(), cmd=st.sampled_from(["discard", "kill", "clear"]),
          target_set=st.sampled_from(["scheduled", "scheduled", "retries"]))
    def take_out_of_a_set(self, data: st.DataObject, cmd: str, target_set: str) -> None:
        """MUTATE discard/kill (some entries) or clear: the jobs end without running again."""
        jids = sorted(jid for _score, jid, _job in self.store.set_entries(target_set))
        if cmd == "clear":
            self.manager.mutate({"cmd": "clear", "target": target_set}, self.now)
        else:
            jids = data.draw(st.lists(st.sampled_from(jids), min_size=1, unique=True), label="jids") if jids else []
            self.manager.mutate({"cmd": cmd, "target": target_set, "filter": {"jids": jids}}, self.now)
        for jid in jids:
            event(f"{cmd} from {target_set}")
            self.model.finished(jid, False)

    @rule(data=st.data(), queue=st.sampled_from([MEMBER_QUEUE, CALLBACK_QUEUE]), whole=st.booleans())
    def delete_queued(self, data: st.DataObject, queue: str, whole: bool) -> None:
        """QUEUE REMOVE, or the web UI deleting some queued jobs: they end without running."""
        jids = [job["jid"] for job in self.store.queued(queue)]
        if whole:
            self.manager.remove([queue], self.now)
        else:
            jids = data.draw(st.lists(st.sampled_from(jids), min_size=1, unique=True), label="jids") if jids else []
            self.manager.delete_queued(queue, jids, self.now)
        for jid in jids:
            event("queue removed" if whole else "queued job deleted")
            self.model.finished(jid, False)

    @rule(chance=st.integers(0, 15))
    def flush(self, chance: int) -> None:
        if chance:
            return
        self.manager.flush()
        self.model = Model(self.POLICY, now=self.now, fired=self.model.fired)
        assert not self.ext.batches and not self.ext.holds

    @rule(step=time_steps)
    def advance(self, step: float) -> None:
        target = self.now + step
        for due in due_times(self.manager, target):
            self.model.now = max(self.now, due)
            working = working_jids(self.store)
            self.manager.run_due(self.now)
            for jid in sorted(working - working_jids(self.store)):
                event("reservation expired")
                self.model.finished(jid, False, self._left(jid))
            self.model.expire_due()
        self.model.now = target
        self.model.expire_due()

    def _rebuild(self, records: list[list[dict[str, Any]]]) -> None:
        store, ext, manager = self._build()
        replay(store, records)
        assert store_state(store) == store_state(self.store)
        assert batch_table(ext) == batch_table(self.ext)
        self.store, self.ext, self.manager = store, ext, manager

    @rule()
    def restart_from_journal(self) -> None:
        self._rebuild(self.journal)

    @rule()
    def restart_from_snapshot(self) -> None:
        records = snapshot_records(self.store)
        self._rebuild(records)
        self.journal = records

    # --- invariants -----------------------------------------------------------------

    @invariant()
    def batches_match_model(self) -> None:
        alive = {bid for bid, b in self.model.batches.items() if b.alive}
        assert set(self.ext.batches) == alive
        for bid, b in self.model.batches.items():
            if not b.alive:
                with pytest.raises(ClientError, match=f"^No such batch {bid}$"):
                    self.ext.status(bid, self.now)
                continue
            status = self.ext.status(bid, self.now)
            total, pending, failed = b.counts()
            assert (status["total"], status["pending"], status["failed"]) == (total, pending, failed), bid
            assert (status["complete_st"], status["success_st"]) == (b.st["complete"], b.st["success"]), bid
            assert status.get("parent_bid", "") == b.parent
            assert self.ext.batches[bid].phase == self.model.phase(b)

    @invariant()
    def callbacks_enqueued_exactly_once(self) -> None:
        """First enqueues (no failure block yet) per callback jid, from the op log."""
        first: dict[str, int] = {}
        enqueued = [job for op in self.oplog if op["op"] == "enqueue" for job in map(job_queue.decode, op["raws"])]
        for job in enqueued:
            if "_bid" in (job.get("custom") or {}) and "failure" not in job:
                first[job["jid"]] = first.get(job["jid"], 0) + 1
        assert sorted(first) == sorted(self.model.fired), (first, self.model.fired)
        assert all(n == 1 for n in first.values()), first
        for job in enqueued:
            assert "bid" not in (job.get("custom") or {}) or "_bid" not in job["custom"]

    @invariant()
    def nothing_added_after_a_callback(self) -> None:
        if self.POLICY != "strict":
            return
        for b in self.model.batches.values():
            if b.closed_at is not None:
                assert (len(b.members), len(b.children)) == b.closed_at, b.bid

    @invariant()
    def holds_are_reservations(self) -> None:
        working = working_jids(self.store)
        assert set(self.ext.holds) <= working
        assert sum(self.ext.by_key.values()) == len(self.ext.holds)

    @invariant()
    def nothing_overdue(self) -> None:
        due = self.manager.next_due()
        assert due is None or due > self.now


class PermissiveBatchMachine(BatchMachine):
    POLICY = "permissive"


_settings = settings(max_examples=200, stateful_step_count=50, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
BatchMachine.TestCase.settings = _settings
PermissiveBatchMachine.TestCase.settings = _settings
TestStrictBatches = BatchMachine.TestCase
TestPermissiveBatches = PermissiveBatchMachine.TestCase
