"""Batches without sockets: the callback rules, nesting, immutability and expiry, by example.

The random interleavings are in tests/features/test_batches_model.py; these are the cases worth
spelling out (each one a sentence of faktory_py/features/batches/feature.py's docstring).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from faktory_py.commands.batch import BatchCommand
from faktory_py.commands.dispatch import Session
from faktory_py.features.batches.feature import Batches, batch_table
from faktory_py import config
from faktory_py.config import BatchesConfig, ConfigError
from faktory_py.features.expiry import ExpiringJobs
from faktory_py.errors import ClientError
from faktory_py.core.lifecycle import Manager
from faktory_py.core.registry import Registry
from faktory_py.store.memory import MemoryStore
from faktory_py.util.timefmt import format_time

NOW = 1_700_000_000.0


class World:
    """A store, the batches extension and a manager, with a few conveniences."""

    def __init__(self, policy: str = "strict", ttl: float = 1800.0, extra: tuple = (),
                 retention: float = 86400.0) -> None:
        self.journal: list[list[dict[str, Any]]] = []
        self.store = MemoryStore(sink=self._sink)
        self.serial = 0
        others = [make(self.store) for make in extra]
        self.ext = Batches(self.store, policy, ttl, retention, bids=self._bid)
        self.manager = Manager(self.store, features=Registry(f.feature() for f in [*others, self.ext]))
        self.now = NOW

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.journal.append(ops)
        return len(self.journal)

    def _bid(self) -> str:
        self.serial += 1
        return f"b-test{self.serial:04d}"

    def new(self, wid: str = "", parent: str = "", **callbacks: dict[str, Any] | None) -> str:
        payload: dict[str, Any] = {"description": "t", **callbacks}
        if parent:
            payload["parent_bid"] = parent
        bid, ops = self.ext.new(payload, wid, self.now)
        self.store.commit(ops)
        return bid

    def push(self, bid: str, jid: str, wid: str = "", queue: str = "default", **fields: Any) -> None:
        job = {"jid": jid, "jobtype": "Work", "args": [], "queue": queue,
               "custom": {"bid": bid}, **fields}
        self.manager.push(job, self.now, wid)

    def commit(self, bid: str) -> None:
        self.store.commit(self.ext.commit(bid, self.now))

    def fetch(self, queue: str = "default", wid: str = "w1") -> dict[str, Any]:
        job, _ = self.manager.fetch([queue], wid, self.now)
        assert job is not None, f"nothing in {queue}"
        return job

    def nothing_in(self, queue: str) -> None:
        assert not self.store.queue_size(queue)

    def st(self, bid: str) -> tuple[str, str]:
        status = self.ext.status(bid, self.now)
        return status["complete_st"], status["success_st"]

    def counts(self, bid: str) -> tuple[int, int, int]:
        status = self.ext.status(bid, self.now)
        return status["total"], status["pending"], status["failed"]


def cb(jobtype: str, queue: str = "cb", **fields: Any) -> dict[str, Any]:
    return {"jobtype": jobtype, "queue": queue, **fields}


def test_callbacks_wait_for_commit_then_complete_before_success() -> None:
    w = World()
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    w.push(bid, "member-0001")
    w.push(bid, "member-0002")
    for _ in range(2):
        w.manager.ack(w.fetch()["jid"], w.now)
    assert w.st(bid) == ("", "") and w.counts(bid) == (2, 0, 0)  # not committed: nothing fires
    w.nothing_in("cb")
    w.commit(bid)
    assert w.st(bid) == ("1", "")
    done = w.fetch("cb")
    assert done["jobtype"] == "Done"
    assert done["custom"] == {"_bid": bid}  # no custom.bid: not a member of anything
    w.nothing_in("cb")  # success waits for the complete callback's ACK
    w.manager.ack(done["jid"], w.now)
    assert w.st(bid) == ("2", "1")
    ok = w.fetch("cb")
    assert ok["jobtype"] == "Ok"
    w.manager.ack(ok["jid"], w.now)
    assert w.st(bid) == ("2", "2")
    assert w.ext.batches[bid].phase == "done"


def test_empty_batch_fires_at_commit() -> None:
    w = World()
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    assert w.st(bid) == ("", "")
    w.commit(bid)
    assert w.st(bid) == ("1", "")
    w.commit(bid)  # idempotent: nothing fires twice
    assert w.store.queue_size("cb") == 1


def test_only_success_callback_fires_when_all_succeeded() -> None:
    w = World()
    bid = w.new(success=cb("Ok"))
    w.push(bid, "member-0001")
    w.commit(bid)
    w.manager.ack(w.fetch()["jid"], w.now)
    assert w.st(bid) == ("", "1")


def test_retrying_failure_counts_as_run_for_complete_and_success_comes_after_the_retry() -> None:
    w = World()
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    w.push(bid, "member-0001", retry=3)
    w.commit(bid)
    w.manager.fail(w.fetch()["jid"], "E", "boom", [], w.now)
    assert w.counts(bid) == (1, 1, 1)
    assert w.st(bid) == ("1", "")  # executed at least once: complete
    w.manager.ack(w.fetch("cb")["jid"], w.now)
    assert w.st(bid) == ("2", "")  # the member has not succeeded yet
    w.manager.mutate({"cmd": "requeue", "target": "retries"}, w.now)
    retried = w.fetch()
    assert retried["failure"]["retry_count"] == 0
    w.manager.ack(retried["jid"], w.now)
    assert w.counts(bid) == (1, 0, 0)
    assert w.st(bid) == ("2", "1")


def test_dead_member_never_lets_success_fire_but_complete_does() -> None:
    w = World()
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    w.push(bid, "member-0001", retry=0)
    w.commit(bid)
    w.manager.fail(w.fetch()["jid"], "E", "boom", [], w.now)  # retry 0: discarded
    assert w.counts(bid) == (1, 1, 1)
    w.manager.ack(w.fetch("cb")["jid"], w.now)
    assert w.st(bid) == ("2", "")
    assert w.ext.batches[bid].phase == "callbacks"


def test_expired_reservation_is_a_failure() -> None:
    w = World()
    bid = w.new(complete=cb("Done"))
    w.push(bid, "member-0001", reserve_for=60)
    w.commit(bid)
    w.fetch()
    w.manager.run_due(w.now + 60)
    assert w.counts(bid) == (1, 1, 1)
    assert w.st(bid) == ("1", "")


def test_failing_callback_stays_enqueued_and_blocks_success() -> None:
    w = World()
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    w.commit(bid)
    w.manager.fail(w.fetch("cb")["jid"], "E", "callback broke", [], w.now)
    assert w.st(bid) == ("1", "")
    w.manager.mutate({"cmd": "requeue", "target": "retries"}, w.now)
    w.manager.ack(w.fetch("cb")["jid"], w.now)  # its retry succeeds
    assert w.st(bid) == ("2", "1")


def test_nested_child_callback_runs_before_the_parents() -> None:
    """Ruby's nested test: every job ACKed, the child's success callback comes first, and
    only its ACK lets the parent's fire."""
    w = World()
    parent = w.new(success=cb("ParentOk"))
    w.push(parent, "parent-job-1")
    child = w.new(parent=parent, success=cb("ChildOk"))
    w.push(child, "child-job-01")
    w.commit(child)
    w.commit(parent)
    while w.store.queue_size("default"):
        w.manager.ack(w.fetch()["jid"], w.now)
    assert w.st(child) == ("", "1") and w.st(parent) == ("", "")
    child_cb = w.fetch("cb")
    assert child_cb["jobtype"] == "ChildOk"
    w.nothing_in("cb")
    w.manager.ack(child_cb["jid"], w.now)
    assert w.st(parent) == ("", "1")
    assert w.fetch("cb")["jobtype"] == "ParentOk"


def test_parent_complete_does_not_wait_for_a_child_that_cannot_succeed() -> None:
    w = World()
    parent = w.new(complete=cb("ParentDone"))
    child = w.new(parent=parent, complete=cb("ChildDone"), success=cb("ChildOk"))
    w.push(child, "child-job-01", retry=0)
    w.commit(child)
    w.commit(parent)
    w.manager.fail(w.fetch()["jid"], "E", "m", [], w.now)
    w.manager.ack(w.fetch("cb")["jid"], w.now)  # ChildDone
    assert w.st(child) == ("2", "")
    assert w.st(parent) == ("1", "")  # the child's success will not come: not waited for


def test_total_counts_direct_members_only() -> None:
    w = World()
    parent = w.new(success=cb("P"))
    w.push(parent, "parent-job-1")
    child = w.new(parent=parent, success=cb("C"))
    w.push(child, "child-job-01")
    w.push(child, "child-job-02")
    grandchild = w.new(parent=child, success=cb("G"))
    w.push(grandchild, "grandchild-1")
    assert [w.counts(b)[0] for b in (parent, child, grandchild)] == [1, 2, 1]
    assert w.ext.status(grandchild, w.now)["parent_bid"] == child
    assert "parent_bid" not in w.ext.status(parent, w.now)


# --- immutability ---------------------------------------------------------------------------


def test_committed_batch_refuses_outsiders_and_accepts_its_running_jobs_process() -> None:
    w = World()
    bid = w.new(complete=cb("Done"))
    w.push(bid, "member-0001", wid="")  # open: anyone
    w.commit(bid)
    for wid in ("", "w2"):
        with pytest.raises(ClientError, match=rf"^Batch {bid} is committed: .*from within"):
            w.push(bid, "member-0002", wid=wid)
        with pytest.raises(ClientError, match=rf"^Batch {bid} is committed"):
            w.ext.open(bid, wid, w.now)
        with pytest.raises(ClientError, match=rf"^Batch {bid} is committed"):
            w.new(wid=wid, parent=bid, success=cb("C"))
    w.fetch(wid="w1")  # worker process w1 now runs member-0001
    with pytest.raises(ClientError, match="and worker w2 works none$"):
        w.push(bid, "member-0002", wid="w2")
    assert w.ext.open(bid, "w1", w.now) == bid
    w.push(bid, "member-0002", wid="w1")  # any connection of w1 (identity is the wid)
    w.push(bid, "member-0003", wid="")  # a producer while a job of the batch runs
    child = w.new(wid="w1", parent=bid, success=cb("C"))
    assert w.counts(bid) == (3, 3, 0)
    w.commit(bid)  # commit again: fine
    assert w.ext.status(child, w.now)["parent_bid"] == bid


def test_a_descendants_job_is_within_the_ancestors() -> None:
    w = World()
    root = w.new(complete=cb("R"))
    child = w.new(parent=root, complete=cb("C"))
    grandchild = w.new(parent=child, complete=cb("G"))
    w.push(grandchild, "grandchild-1")
    for bid in (grandchild, child, root):
        w.commit(bid)
    w.fetch(wid="w1")
    for bid in (root, child, grandchild):
        assert w.ext.open(bid, "w1", w.now) == bid
    w.push(root, "root-job-001", wid="w1")
    assert w.counts(root) == (1, 1, 0)


def test_a_childs_callback_may_reopen_the_parent() -> None:
    """Sidekiq's workflow pattern: step 1's success callback adds step 2 to the parent."""
    w = World()
    overall = w.new(success=cb("Shipped"))
    step1 = w.new(parent=overall, success=cb("Step1Done"))
    w.push(step1, "step1-job-01")
    w.commit(step1)
    w.commit(overall)
    w.manager.ack(w.fetch()["jid"], w.now)
    step1_done = w.fetch("cb", wid="w9")
    assert step1_done["jobtype"] == "Step1Done"
    with pytest.raises(ClientError, match=rf"^Batch {step1} is closed"):
        w.push(step1, "too-late-001", wid="w9")  # its own batch is closed
    step2 = w.new(wid="w9", parent=overall, success=cb("Step2Done"))
    w.push(step2, "step2-job-01", wid="w9")
    w.commit(step2)
    w.manager.ack(step1_done["jid"], w.now)
    assert w.st(overall) == ("", "")  # waits for step 2 now
    w.manager.ack(w.fetch()["jid"], w.now)
    w.manager.ack(w.fetch("cb")["jid"], w.now)  # Step2Done
    assert w.fetch("cb")["jobtype"] == "Shipped"


def test_nothing_is_added_once_a_callback_was_enqueued_even_from_within() -> None:
    w = World()
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    w.push(bid, "member-0001", retry=2)
    w.commit(bid)
    w.manager.fail(w.fetch(wid="w1")["jid"], "E", "m", [], w.now)
    assert w.st(bid) == ("1", "")
    w.manager.mutate({"cmd": "requeue", "target": "retries"}, w.now)
    w.fetch(wid="w1")  # the member runs again: w1 is within the batch, but it is closed
    before = list(w.journal)
    for call in (lambda: w.push(bid, "member-0002", wid="w1"), lambda: w.ext.open(bid, "w1", w.now),
                 lambda: w.new(wid="w1", parent=bid, complete=cb("C"))):
        with pytest.raises(ClientError, match=rf"^Batch {bid} is closed: a callback has been enqueued"):
            call()
    assert w.journal == before and w.counts(bid) == (1, 1, 1)


def test_pushb_judges_each_job() -> None:
    w = World()
    bid = w.new(complete=cb("Done"))
    w.commit(bid)
    errors, _ = w.manager.push_bulk([
        {"jid": "plain-job-01", "jobtype": "A", "args": []},
        {"jid": "member-0001", "jobtype": "A", "args": [], "custom": {"bid": bid}},
        {"jid": "member-0002", "jobtype": "A", "args": [], "custom": {"bid": "b-nope"}},
    ], w.now)
    assert errors == {"member-0001": f"Batch {bid} is closed: a callback has been enqueued, "
                                     "so nothing can be added to it",
                      "member-0002": "No such batch b-nope"}
    assert [j["jid"] for j in w.store.queued("default")] == ["plain-job-01"]


def test_permissive_policy_allows_what_enterprise_allows() -> None:
    w = World(policy="permissive")
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    w.commit(bid)
    assert w.st(bid) == ("1", "")
    assert w.ext.open(bid, "", w.now) == bid
    w.push(bid, "member-0001")
    w.push(bid, "member-0002")
    w.commit(bid)
    assert w.counts(bid) == (2, 2, 0) and w.st(bid) == ("1", "")
    child = w.new(parent=bid, complete=cb("C"))
    w.commit(child)
    assert w.st(child) == ("1", "")
    assert w.store.queue_size("cb") == 2  # callbacks still fire once each


def test_unknown_batches() -> None:
    w = World()
    for call in (lambda: w.ext.open("b-nope", "", w.now), lambda: w.ext.commit("b-nope", w.now),
                 lambda: w.ext.status("b-nope", w.now), lambda: w.push("b-nope", "member-0001"),
                 lambda: w.new(parent="b-nope", success=cb("S"))):
        with pytest.raises(ClientError, match="^No such batch b-nope$"):
            call()
    with pytest.raises(ClientError, match="^custom.bid must be a batch id string: 12$"):
        w.manager.push({"jid": "member-0001", "jobtype": "A", "args": [], "custom": {"bid": 12}}, w.now)
    w.manager.push({"jid": "member-0001", "jobtype": "A", "args": [], "custom": {"bid": ""}}, w.now)


# --- BATCH NEW's payload ------------------------------------------------------------------


def test_callback_jobs_are_completed_and_never_members() -> None:
    w = World()
    bid = w.new(complete={"jobtype": "Done"},  # pyfaktory: no jid; Go: "args":null
                success={"jid": "given-jid-001", "jobtype": "Ok", "args": None, "queue": "q",
                         "custom": {"bid": "b-other", "x": 1}, "at": format_time(NOW + 3600)})
    batch = w.ext.batches[bid]
    assert batch.complete is not None and batch.success is not None
    assert len(batch.complete["jid"]) == 24 and batch.complete["queue"] == "default"
    assert batch.complete["args"] == [] and batch.complete["retry"] == 25
    assert batch.success["jid"] == "given-jid-001"
    assert batch.success["custom"] == {"x": 1, "_bid": bid}
    assert "at" not in batch.success and "enqueued_at" not in batch.success


@pytest.mark.parametrize("payload, message", [
    ("{}", "BATCH NEW needs a success or complete callback job"),
    ('{"success":null,"complete":null}', "BATCH NEW needs a success or complete callback job"),
    ("[1]", "invalid BATCH NEW [1]"),
    ("nope", "invalid BATCH NEW nope"),
    ('{"bid":"b-mine","success":{"jobtype":"S"}}', "BATCH NEW must not carry a bid: the server assigns it"),
    ('{"success":{"jobtype":"S"},"parent_bid":5}', "parent_bid must be a batch id string: 5"),
    ('{"success":{"jobtype":"S"},"description":[]}', "description must be a string: []"),
    ('{"success":"S"}', 'invalid success callback: it must be a job object, not "S"'),
    ('{"complete":{"args":[]}}', "invalid complete callback: jobs must have a jobtype parameter"),
    ('{"complete":{"jobtype":"C","jid":"short"}}',
     "invalid complete callback: jobs must have a reasonable jid parameter"),
    ('{"complete":{"jobtype":"C","queue":"bad queue"}}', 'invalid complete callback: cannot get "bad queue" queue'),
])
def test_batch_new_refusals(payload: str, message: str) -> None:
    """Through the command (commands/batch.py decodes the object, the feature checks it)."""
    w = World()
    command = BatchCommand(w.ext, w.store, SimpleNamespace(now=lambda: w.now))
    with pytest.raises(ClientError) as info:
        command(Session(conn_id=1), "NEW " + payload)
    assert str(info.value).startswith(message)
    assert w.journal == [] and w.ext.batches == {}


# --- time, drops, flush, restarts -------------------------------------------------------


def test_uncommitted_batch_expires_without_callbacks_and_stops_blocking_its_parent() -> None:
    w = World(ttl=600)
    parent = w.new(complete=cb("ParentDone"))
    child = w.new(parent=parent, complete=cb("ChildDone"))
    w.commit(parent)  # no members, but it waits for its child, which is never committed
    w.push(child, "child-job-01")
    assert w.st(parent) == ("", "")
    assert w.manager.next_due() == NOW + 600
    w.manager.run_due(NOW + 599.5)
    assert w.ext.status(child, NOW + 599.5)["total"] == 1
    w.now = NOW + 600
    w.manager.run_due(w.now)
    with pytest.raises(ClientError, match=f"No such batch {child}"):
        w.ext.status(child, w.now)
    with pytest.raises(ClientError, match=f"No such batch {child}"):
        w.ext.commit(child, w.now)
    assert w.st(parent) == ("1", "")
    assert [j["jobtype"] for j in w.store.queued("cb")] == ["ParentDone"]
    w.manager.ack(w.fetch()["jid"], w.now)  # the orphaned member still runs; no effect
    assert w.manager.next_due() is None


def test_member_dropped_at_fetch_because_it_expired_counts_as_failed() -> None:
    w = World(extra=(ExpiringJobs,))
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    w.push(bid, "member-0001", custom={"bid": bid, "expires_in": 5})
    w.commit(bid)
    w.now += 10
    job, _ = w.manager.fetch(["default"], "w1", w.now)
    assert job is None
    assert w.counts(bid) == (1, 1, 1) and w.st(bid) == ("1", "")


def test_flush_forgets_batches() -> None:
    w = World()
    bid = w.new(complete=cb("Done"))
    w.push(bid, "member-0001")
    w.fetch()
    w.manager.flush()
    assert batch_table(w.ext) == batch_table(World().ext)
    with pytest.raises(ClientError, match="No such batch"):
        w.ext.status(bid, w.now)


def test_replay_and_snapshot_rebuild_everything() -> None:
    w = World()
    parent = w.new(complete=cb("P"), success=cb("PS"))
    child = w.new(parent=parent, success=cb("C"))
    w.push(child, "child-job-01", retry=1)
    w.push(parent, "parent-job-1")
    w.commit(parent)
    w.fetch(wid="w1")
    job = w.fetch(wid="w2")
    w.manager.fail(job["jid"], "E", "m", [], w.now)
    for records in (w.journal, list(w.store.snapshot())):
        store = MemoryStore()
        ext = Batches(store, BatchesConfig.policy, BatchesConfig.uncommitted_ttl, BatchesConfig.retention)
        for record in records:
            for op in record:
                store.apply(op)
        assert batch_table(ext) == batch_table(w.ext)


def test_config(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()

    def load(toml: str) -> BatchesConfig:
        (conf_d / "batches.toml").write_text(toml)
        return config.load(["-c", str(tmp_path)], {}).batches

    assert load('[batches]\npolicy = "permissive"\nuncommitted_ttl = 60\n') == BatchesConfig("permissive", 60.0)
    assert load("") == BatchesConfig("strict", 30 * 60.0)
    for bad in ('policy = "lax"', "uncommitted_ttl = 0", 'uncommitted_ttl = "1h"', "uncommitted_ttl = true"):
        with pytest.raises(ConfigError, match=r"^\[batches\]"):
            load(f"[batches]\n{bad}\n")
