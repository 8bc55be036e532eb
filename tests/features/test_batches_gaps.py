"""Batches that cannot get stuck (issue 13, item 4): one test per gap.

* a member that never runs — discarded or killed by MUTATE from the scheduled set, deleted
  by QUEUE REMOVE, deleted from the web UI — counts as failed, so `complete` fires;
* finished batches are forgotten `[batches] retention` seconds after they are done;
* callback jobs go through the push hooks (unique, expiry, tracking) like any PUSH.

The rules are faktory_py/features/batches/feature.py's docstring and protocol/spec.md §10.
"""

from __future__ import annotations

from faktory_py.core.lifecycle import Manager
from faktory_py.core.workers import WorkerRegistry
from faktory_py.util.timefmt import format_time
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
