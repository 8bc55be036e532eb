"""Batches that cannot get stuck (issue 13, item 4): one test per gap.

* a member that never runs — discarded or killed by MUTATE from the scheduled set, deleted
  by QUEUE REMOVE, deleted from the web UI — counts as failed, so `complete` fires;
* finished batches are forgotten `[batches] retention` seconds after they are done;
* callback jobs go through the push hooks (unique, expiry, tracking) like any PUSH, and a
  callback that will never run (refused as not unique, expired, deleted) is over.

The rules are faktory_py/features/batches/feature.py's docstring and protocol/spec.md §10.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from faktory_py import config
from faktory_py.commands.batch import BatchCommand
from faktory_py.commands.dispatch import Session
from faktory_py.config import BatchesConfig, ConfigError
from faktory_py.core.lifecycle import Manager
from faktory_py.core.registry import Registry
from faktory_py.core.workers import WorkerRegistry
from faktory_py.errors import ClientError
from faktory_py.features.batches.feature import Batches, batch_table
from faktory_py.features.expiry import ExpiringJobs
from faktory_py.features.tracking import JobTracking
from faktory_py.features.unique import UniqueJobs, lock_table
from faktory_py.store.memory import MemoryStore
from faktory_py.util.timefmt import format_time
from faktory_py.web import views
from faktory_py.web.state import WebState
from test_batches import World, cb


def scheduled(w: World, bid: str, jid: str, delay: float = 3600) -> None:
    w.push(bid, jid, at=format_time(w.now + delay))


# --- a member that never runs ends as failed --------------------------------------------------


def test_scheduled_member_discarded_by_mutate_counts_as_failed() -> None:
    w = World()
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    w.push(bid, "member-0001")
    scheduled(w, bid, "member-0002")
    w.commit(bid)
    w.manager.ack(w.fetch()["jid"], w.now)
    assert w.counts(bid) == (2, 1, 0) and w.st(bid) == ("", "")
    w.manager.mutate({"cmd": "discard", "target": "scheduled", "filter": {"jids": ["member-0002"]}}, w.now)
    assert w.counts(bid) == (2, 1, 1)
    assert w.st(bid) == ("1", "")  # every member ran or never will: complete
    assert w.fetch("cb")["jobtype"] == "Done"


def test_scheduled_members_cleared_or_killed_count_as_failed() -> None:
    w = World()
    cleared = w.new(complete=cb("ClearedDone"))
    scheduled(w, cleared, "member-0001")
    killed = w.new(complete=cb("KilledDone"))
    scheduled(w, killed, "member-0002", delay=7200)
    w.commit(cleared)
    w.commit(killed)
    w.manager.mutate({"cmd": "kill", "target": "scheduled", "filter": {"jids": ["member-0002"]}}, w.now)
    assert w.counts(killed) == (1, 1, 1) and w.st(killed) == ("1", "")
    assert w.st(cleared) == ("", "")
    w.manager.mutate({"cmd": "clear", "target": "scheduled"}, w.now)
    assert w.counts(cleared) == (1, 1, 1) and w.st(cleared) == ("1", "")


def test_a_member_killed_or_deleted_from_the_retry_set_is_not_counted_twice() -> None:
    w = World()
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    w.push(bid, "member-0001", retry=3)
    w.push(bid, "member-0002", retry=3)
    w.push(bid, "member-0003")
    w.commit(bid)
    for _ in range(2):
        w.manager.fail(w.fetch()["jid"], "E", "boom", [], w.now)
    assert w.counts(bid) == (3, 3, 2) and w.st(bid) == ("", "")
    w.manager.mutate({"cmd": "kill", "target": "retries", "filter": {"jids": ["member-0001"]}}, w.now)
    w.manager.mutate({"cmd": "discard", "target": "retries", "filter": {"jids": ["member-0002"]}}, w.now)
    assert w.counts(bid) == (3, 3, 2) and w.st(bid) == ("", "")  # they had failed already
    w.manager.ack(w.fetch()["jid"], w.now)
    assert w.counts(bid) == (3, 2, 2) and w.st(bid) == ("1", "")


def test_members_removed_with_their_queue_count_as_failed() -> None:
    w = World()
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    for jid in ("member-0001", "member-0002"):
        w.push(bid, jid, queue="work")
    w.push(bid, "member-0003")
    w.commit(bid)
    w.manager.remove(["work"], w.now)
    assert w.counts(bid) == (3, 3, 2) and w.st(bid) == ("", "")
    w.manager.ack(w.fetch()["jid"], w.now)
    assert w.counts(bid) == (3, 2, 2) and w.st(bid) == ("1", "")
    w.manager.ack(w.fetch("cb")["jid"], w.now)
    assert w.st(bid) == ("2", "")  # two members never ran: no success


class FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


async def test_members_deleted_from_the_web_ui_count_as_failed() -> None:
    """The queue page's delete, and delete on the Scheduled and Retries pages."""
    w = World()
    manager: Manager = w.manager

    async def durable(position: int) -> None:
        pass

    state = WebState(manager, WorkerRegistry(60), manager.features, FixedClock(w.now), info=lambda now: {},
                     refusal=lambda: None, durable=durable)
    queued = w.new(complete=cb("QueuedDone"))
    w.push(queued, "member-0001", queue="work")
    w.push(queued, "member-0002", queue="work")
    waiting = w.new(complete=cb("ScheduledDone"))
    scheduled(w, waiting, "member-0003")
    retrying = w.new(complete=cb("RetryDone"), success=cb("RetryOk"))
    w.push(retrying, "member-0004", retry=3, queue="r")
    for bid in (queued, waiting, retrying):
        w.commit(bid)
    w.manager.fail(w.fetch("r")["jid"], "E", "boom", [], w.now)
    assert w.st(retrying) == ("1", "")

    await state.delete_queued("work", ["member-0001"])
    assert w.counts(queued) == (2, 2, 1) and w.st(queued) == ("", "")
    await state.delete_queued("work", ["member-0002"])
    assert w.counts(queued) == (2, 2, 2) and w.st(queued) == ("1", "")

    await state.change_set("scheduled", "delete", ["all"])
    assert w.counts(waiting) == (1, 1, 1) and w.st(waiting) == ("1", "")

    await state.change_set("retries", "delete", ["all"])
    assert w.counts(retrying) == (1, 1, 1) and w.st(retrying) == ("1", "")  # no double count


# --- callbacks go through the push hooks ------------------------------------------------------


def hooked() -> World:
    return World(extra=(ExpiringJobs, UniqueJobs, JobTracking))


@pytest.mark.parametrize("custom, message", [
    ({"expires_in": "soon"}, 'invalid complete callback: expires_in must be a number of seconds: "soon"'),
    ({"unique_for": -1}, "invalid complete callback: unique_for must be a positive number of seconds: -1"),
    ({"unique_for": 5, "unique_until": "never"},
     'invalid complete callback: unique_until must be "success" or "start": "never"'),
])
def test_a_callback_the_prepare_hooks_refuse_is_refused_at_batch_new(custom: dict[str, Any], message: str) -> None:
    """Checked when the batch is made, as a PUSH would be, not found out when it fires."""
    w = hooked()
    with pytest.raises(ClientError, match=f"^{message}$"):
        w.new(complete=cb("Done", custom=custom))
    assert w.journal == [] and w.ext.batches == {}


def test_a_callback_with_expires_in_gets_its_expires_at_when_it_fires() -> None:
    w = hooked()
    bid = w.new(complete=cb("Done", custom={"expires_in": 30}))
    w.now += 100  # the expiry counts from the fire, not from BATCH NEW
    w.commit(bid)
    [done] = w.store.queued("cb")
    assert done["custom"] == {"_bid": bid, "expires_at": format_time(w.now + 30)}
    w.now += 31
    job, _ = w.manager.fetch(["cb"], "w1", w.now)
    assert job is None  # dropped at FETCH like any expired job


def test_a_tracked_callback_is_tracked() -> None:
    w = hooked()
    tracking = w.manager.features.find(JobTracking)
    assert tracking is not None
    bid = w.new(complete=cb("Done", custom={"track": 1}))
    w.commit(bid)
    jid = w.ext.batches[bid].complete["jid"]  # type: ignore[index]
    assert tracking.progress(jid, w.now)["state"] == "enqueued"
    w.fetch("cb")
    assert tracking.progress(jid, w.now)["state"] == "working"
    w.manager.ack(jid, w.now)
    assert tracking.progress(jid, w.now)["state"] == "success"


def test_a_unique_callback_takes_its_lock() -> None:
    w = hooked()
    unique = w.manager.features.find(UniqueJobs)
    assert unique is not None
    bid = w.new(complete=cb("Done", custom={"unique_for": 60}))
    w.commit(bid)
    jid = w.ext.batches[bid].complete["jid"]  # type: ignore[index]
    assert [owner for _expires, owner in lock_table(unique).values()] == [jid]
    w.manager.ack(w.fetch("cb")["jid"], w.now)
    assert lock_table(unique) == {}


def test_a_unique_callback_whose_twin_is_queued_is_not_enqueued_twice_and_the_batch_goes_on() -> None:
    """Two batches with the same unique complete callback (a cleanup job): the second one's is
    refused as not unique, counts as finished ("2"), and its success callback follows."""
    w = hooked()
    cleanup: dict[str, Any] = cb("Cleanup", custom={"unique_for": 600})
    first = w.new(complete=cleanup)
    second = w.new(complete=cleanup, success=cb("Ok"))
    w.commit(first)
    assert w.st(first) == ("1", "")
    w.commit(second)
    assert w.st(second) == ("2", "1")
    assert [j["jobtype"] for j in w.store.queued("cb")] == ["Cleanup", "Ok"]
    assert w.ext.batches[second].phase == "callbacks"


def test_a_callback_that_expires_unrun_is_over_and_the_batch_goes_on_to_done() -> None:
    """A callback given `expires_in` that no worker fetched in time is dropped at FETCH like
    any job; for its batch it is over ("2"), as an ACK would make it, so the success callback
    follows and the batch becomes done (and will be forgotten) instead of waiting forever."""
    w = hooked()
    bid = w.new(complete=cb("Done", custom={"expires_in": 30}), success=cb("Ok"))
    w.commit(bid)
    assert w.st(bid) == ("1", "")
    w.now += 31
    assert w.fetch("cb")["jobtype"] == "Ok"  # "Done" expired and was dropped on the way
    assert w.st(bid) == ("2", "1")


def test_a_callback_deleted_or_killed_is_over() -> None:
    w = World()
    deleted = w.new(complete=cb("Done"), success=cb("Ok"))
    w.commit(deleted)
    [done] = w.store.queued("cb")
    w.manager.delete_queued("cb", [done["jid"]], w.now)
    assert w.st(deleted) == ("2", "1")
    killed = w.new(success=cb("Ok2", queue="cb2", retry=1))
    w.commit(killed)
    w.manager.fail(w.fetch("cb2")["jid"], "E", "boom", [], w.now)
    assert w.st(killed) == ("", "1")  # it will be retried: not over
    w.manager.mutate({"cmd": "kill", "target": "retries"}, w.now)
    assert w.st(killed) == ("", "2") and w.ext.batches[killed].phase == "done"


# --- finished batches are forgotten -----------------------------------------------------------


def done_batch(w: World) -> str:
    """A batch with one member and a complete callback, run to `done` at w.now."""
    bid = w.new(complete=cb("Done"))
    w.push(bid, "member-0001")
    w.commit(bid)
    w.manager.ack(w.fetch()["jid"], w.now)
    w.manager.ack(w.fetch("cb")["jid"], w.now)
    assert w.ext.batches[bid].phase == "done"
    return bid


def test_a_done_batch_is_forgotten_after_the_retention() -> None:
    w = World(retention=3600)
    w.now += 50
    bid = done_batch(w)
    done_at = w.now
    assert w.manager.next_due() == done_at + 3600
    w.manager.run_due(done_at + 3599.5)
    assert w.ext.status(bid, done_at + 3599.5)["complete_st"] == "2"
    with pytest.raises(ClientError, match=f"^No such batch {bid}$"):
        w.ext.status(bid, done_at + 3600)  # unknown from then on, even before the timer ran
    w.now = done_at + 3600
    w.manager.run_due(w.now)
    assert bid not in w.ext.batches and w.manager.next_due() is None
    command = BatchCommand(w.ext, w.store, SimpleNamespace(now=lambda: w.now))
    for line in (f"STATUS {bid}", f"COMMIT {bid}", f"OPEN {bid}"):
        with pytest.raises(ClientError, match=f"^No such batch {bid}$"):
            command(Session(conn_id=1), line)
    with pytest.raises(ClientError, match=f"^No such batch {bid}$"):
        w.push(bid, "member-0002")
    assert views.batch_page(w.ext, 1).rows == []  # the web UI's list no longer shows it


def test_a_batch_is_kept_until_it_is_done() -> None:
    """Committed with a callback still to run (its success waits for a failing member)."""
    w = World(retention=60)
    bid = w.new(complete=cb("Done"), success=cb("Ok"))
    w.push(bid, "member-0001", retry=3)
    w.commit(bid)
    w.manager.fail(w.fetch()["jid"], "E", "boom", [], w.now)
    w.manager.ack(w.fetch("cb")["jid"], w.now)
    assert w.st(bid) == ("2", "")
    w.now += 1000
    w.manager.run_due(w.now)
    assert w.st(bid) == ("2", "")


def test_a_forgotten_child_leaves_its_parents_waits_as_they_were() -> None:
    """A done child whose member was discarded never settles for success: forgetting it must
    not let the parent's success fire (an expired *open* child, by contrast, is let go)."""
    w = World(retention=60)
    parent = w.new(complete=cb("ParentDone"), success=cb("ParentOk"))
    child = w.new(parent=parent, complete=cb("ChildDone"))
    w.push(child, "child-job-01", retry=0)
    w.commit(child)
    w.commit(parent)
    w.manager.fail(w.fetch()["jid"], "E", "m", [], w.now)
    w.manager.ack(w.fetch("cb")["jid"], w.now)  # ChildDone: the child is done
    w.manager.ack(w.fetch("cb")["jid"], w.now)  # ParentDone
    assert w.st(parent) == ("2", "")
    w.now += 60
    w.manager.run_due(w.now)
    assert child not in w.ext.batches
    assert w.st(parent) == ("2", "") and w.store.queue_size("cb") == 0


def test_the_forgetting_is_journaled_and_replayed() -> None:
    w = World(retention=600)
    first = done_batch(w)
    w.now += 300
    second = w.new(complete=cb("Done"))
    w.commit(second)
    w.manager.ack(w.fetch("cb")["jid"], w.now)  # done 300 s after the first
    w.now += 300
    w.manager.run_due(w.now)
    assert first not in w.ext.batches and set(w.ext.batches) == {second}

    for records in (w.journal, list(w.store.snapshot())):
        store = MemoryStore()
        ext = Batches(store, BatchesConfig.policy, BatchesConfig.uncommitted_ttl, 600)
        manager = Manager(store, features=Registry([ext.feature()]))
        for record in records:
            for op in record:
                store.apply(op)
        assert batch_table(ext) == batch_table(w.ext)
        assert manager.next_due() == w.now + 300  # the second one's time, rebuilt
        store.commit(manager.features.timed[0].run_due(w.now + 300))
        assert ext.batches == {}


def test_retention_is_configured(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()

    def load(toml: str) -> BatchesConfig:
        (conf_d / "batches.toml").write_text(toml)
        return config.load(["-c", str(tmp_path)], {}).batches

    assert load("[batches]\nretention = 60\n").retention == 60.0
    assert load("").retention == 86400.0
    for bad in ("retention = 0", "retention = -1", 'retention = "1d"', "retention = true"):
        with pytest.raises(ConfigError, match=r"^\[batches\] retention must be a positive number of seconds"):
            load(f"[batches]\n{bad}\n")
