"""Batch dependencies, `custom.after: [{"bid": …}]`, without sockets (protocol/spec.md §14.2,
§14.3; the reference's C-T13): a dependent is released inside the step in which its batch
reaches the moment its policy waits for (success, or complete), whether or not that batch
declares the callback; a batch gone before it succeeded fails its edges. Every test ends by
rebuilding the store from its journal and from a snapshot (`World.check_replay`)."""

from __future__ import annotations

from typing import Any

import pytest

from faktory_py.errors import ClientError
from faktory_py.features.batches.feature import Batches
from test_workflows import World, jid


@pytest.fixture
def world() -> World:
    return World()


def batches_of(world: World) -> Batches:
    batches = world.manager.features.find(Batches)
    assert batches is not None
    return batches


def new_batch(world: World, parent: str = "", **callbacks: str) -> str:
    """A batch with the named callbacks (kind → jid), under `parent` if given."""
    payload: dict[str, Any] = {kind: {"jid": cb, "jobtype": kind.title(), "args": [], "queue": "callbacks"}
                               for kind, cb in callbacks.items()}
    if parent:
        payload["parent_bid"] = parent
    bid, ops = batches_of(world).new(payload, "", world.now)
    world.store.commit(ops)
    return bid


def commit(world: World, bid: str) -> None:
    world.store.commit(batches_of(world).commit(bid, world.now))


def ack_callback(world: World, cb: str) -> None:
    job, _ = world.manager.fetch(["callbacks"], "w1", world.now)
    assert job is not None and job["jid"] == cb, job
    world.manager.ack(cb, world.now)


def callbacks(world: World) -> list[str]:
    return world.queued("callbacks")


def test_released_in_the_step_the_success_callback_is_enqueued(world: World) -> None:
    bid = new_batch(world, success="successcb")
    world.push("m", custom={"bid": bid})
    world.push("n", custom={"bid": bid})
    world.push("d", after=[{"bid": bid}], queue="after")
    commit(world, bid)
    assert world.held() == [jid("d")]
    world.ack("m")
    assert world.held() == [jid("d")] and callbacks(world) == []
    world.check_replay()
    world.ack("n")
    assert callbacks(world) == ["successcb"] and world.held() == []
    released = world.run("d", queue="after")
    assert released["custom"]["_after"] == {bid: {"bid": bid, "outcome": "success"}}
    assert world.wf.deps(jid("d"))["after"] == []  # released: no longer held
    world.check_replay()


def test_without_a_success_callback_success_is_when_it_would_be_enqueued(world: World) -> None:
    """A batch with only a complete callback succeeds once its members succeeded and that
    callback is over (a success callback waits for it)."""
    bid = new_batch(world, complete="completecb")
    world.push("m", custom={"bid": bid})
    world.push("d", after=[{"bid": bid}], queue="after")
    commit(world, bid)
    assert world.wf.deps(jid("d"))["after"] == [{"bid": bid, "state": "pending"}]
    world.ack("m")
    assert callbacks(world) == ["completecb"] and world.held() == [jid("d")]
    assert world.wf.deps(jid("d"))["after"] == [{"bid": bid, "state": "complete"}]
    ack_callback(world, "completecb")
    assert world.held() == [] and world.queued("after") == [jid("d")]
    world.check_replay()


def test_policy_complete_is_released_at_the_complete_moment(world: World) -> None:
    bid = new_batch(world, complete="completecb", success="successcb")
    world.push("m", custom={"bid": bid}, retry=0)
    world.push("n", custom={"bid": bid})
    world.push("c", after=[{"bid": bid}], custom={"after_policy": "complete"}, queue="after")
    world.push("s", after=[{"bid": bid}], queue="after")
    commit(world, bid)
    world.fail("m")  # discarded
    assert world.held() == [jid("c"), jid("s")]
    world.ack("n")  # every member ran, one failed
    assert callbacks(world) == ["completecb"]
    assert world.held() == [jid("s")] and world.queued("after") == [jid("c")]
    released = world.run("c", queue="after")
    assert released["custom"]["_after"] == {bid: {"bid": bid, "outcome": "complete"}}
    world.check_replay()
    ack_callback(world, "completecb")
    # the batch never succeeds: a success-policy dependent waits (MUTATE `held` ends it)
    assert world.held() == [jid("s")]
    world.check_replay()


def test_policy_complete_and_success_in_one_step(world: World) -> None:
    bid = new_batch(world, success="successcb")
    world.push("m", custom={"bid": bid})
    world.push("c", after=[{"bid": bid}], custom={"after_policy": "complete"}, queue="after")
    world.push("s", after=[{"bid": bid}], queue="after")
    commit(world, bid)
    world.ack("m")
    assert world.held() == [] and world.queued("after") == [jid("c"), jid("s")]
    assert world.run("c", queue="after")["custom"]["_after"][bid]["outcome"] == "complete"
    assert world.run("s", queue="after")["custom"]["_after"][bid]["outcome"] == "success"
    world.check_replay()


def test_child_batches_must_succeed_first(world: World) -> None:
    parent = new_batch(world, success="parentcb")
    child = new_batch(world, parent=parent, success="childcb1")
    world.push("p", custom={"bid": parent})
    world.push("k", custom={"bid": child})
    world.push("d", after=[{"bid": parent}], queue="after")
    world.push("e", after=[{"bid": child}], queue="after")
    commit(world, child)
    commit(world, parent)
    world.ack("p")
    assert world.held() == [jid("d"), jid("e")]
    world.ack("k")  # the child succeeds; the parent waits for the child's callback to be over
    assert world.held() == [jid("d")] and world.queued("after") == [jid("e")]
    world.check_replay()
    ack_callback(world, "childcb1")
    assert callbacks(world) == ["parentcb"] and world.held() == []
    assert world.queued("after") == [jid("e"), jid("d")]
    world.check_replay()


def test_a_batch_that_reached_its_moment_counts_at_push(world: World) -> None:
    bid = new_batch(world, success="successcb")
    world.push("m", custom={"bid": bid})
    commit(world, bid)
    world.ack("m")
    world.push("d", after=[{"bid": bid}, "x"], queue="after")  # x unknown: still held
    assert world.wf.held[jid("d")].outcomes == {f"bid:{bid}": "success"}
    world.push("x")
    world.ack("x")
    assert world.run("d", queue="after")["custom"]["_after"] == {
        bid: {"bid": bid, "outcome": "success"}, jid("x"): {"outcome": "success"}}
    world.check_replay()


def test_an_uncommitted_batch_is_waited_for_an_empty_one_succeeds_at_commit(world: World) -> None:
    bid = new_batch(world, success="successcb")
    world.push("d", after=[{"bid": bid}], queue="after")
    assert world.held() == [jid("d")]
    commit(world, bid)  # empty: its success callback fires at COMMIT, in the same step
    assert callbacks(world) == ["successcb"] and world.queued("after") == [jid("d")]
    world.check_replay()


def test_an_unknown_bid_is_refused_as_a_member_push_is(world: World) -> None:
    with pytest.raises(ClientError) as err:
        world.push("d", after=[{"bid": "b-nope"}])
    assert str(err.value) == "No such batch b-nope"
    assert world.journal == []


@pytest.mark.parametrize(("after", "message"), [
    ([{"bid": 7}], 'custom.after must be an array of job ids or {"jid"|"bid": id} objects'),
    ([{"bid": ""}], 'custom.after must be an array of job ids or {"jid"|"bid": id} objects'),
    (["bid:b-123456"], 'custom.after must be an array of job ids or {"jid"|"bid": id} objects'),
])
def test_bad_batch_dependencies_are_refused(world: World, after: Any, message: str) -> None:
    with pytest.raises(ClientError) as err:
        world.manager.push({"jid": "cccccccc", "jobtype": "W", "args": [], "custom": {"after": after}}, world.now)
    assert str(err.value) == message


def test_a_member_cannot_depend_on_its_own_batch(world: World) -> None:
    bid = new_batch(world, success="successcb")
    with pytest.raises(ClientError) as err:
        world.push("m", after=[{"bid": bid}], custom={"bid": bid})
    assert str(err.value) == f"custom.after: a job cannot depend on its own batch {bid}"


def test_a_batch_gone_before_it_succeeded_fails_its_edges(world: World) -> None:
    """An uncommitted batch expires (30 min): a success-policy dependent is killed, a
    complete-policy one released with the outcome `failed`."""
    bid = new_batch(world, success="successcb")
    world.push("s", after=[{"bid": bid}], queue="after")
    world.push("c", after=[{"bid": bid}], custom={"after_policy": "complete"}, queue="after")
    world.advance(1800)
    assert batches_of(world).moments(bid, world.now) is None
    dead = world.dead("s")
    assert dead is not None and dead["failure"]["errtype"] == "DependencyFailed"
    assert dead["failure"]["message"] == f"dependency {bid} failed"
    assert world.run("c", queue="after")["custom"]["_after"] == {bid: {"bid": bid, "outcome": "failed"}}
    world.check_replay()


def test_a_forgotten_batch_keeps_the_outcome_its_dependents_saw(world: World) -> None:
    """Resolution happened before retention forgot the batch: the dependent still held on
    another edge keeps the batch's outcome, and a new push naming the bid is refused."""
    bid = new_batch(world, success="successcb")
    world.push("m", custom={"bid": bid})
    world.push("d", after=[{"bid": bid}, "x"], queue="after")
    commit(world, bid)
    world.ack("m")
    ack_callback(world, "successcb")
    world.push("x")
    world.advance(86400 + 1)  # the done batch is forgotten after its retention
    assert batches_of(world).moments(bid, world.now) is None
    assert world.held() == [jid("d")]
    with pytest.raises(ClientError):
        world.push("e", after=[{"bid": bid}])
    world.ack("x")
    assert world.run("d", queue="after")["custom"]["_after"][bid] == {"bid": bid, "outcome": "success"}
    world.check_replay()


def test_a_dependent_killed_as_its_batch_expires_counts_in_that_same_step(world: World) -> None:
    """D, a member of P, waits on P's uncommitted child C. C's expiry removes it from P and
    kills D (success policy) in one step: P counts D as failed in the plan that removed C,
    so P completes and fires its complete callback once."""
    parent = new_batch(world, complete="parentcb")
    child = new_batch(world, parent=parent, success="childcb1")
    world.push("d", after=[{"bid": child}], custom={"bid": parent})
    commit(world, parent)
    world.advance(1800)
    assert world.dead("d") is not None
    status = batches_of(world).status(parent, world.now)
    assert (status["total"], status["pending"], status["failed"], status["complete_st"]) == (1, 1, 1, "1")
    assert callbacks(world) == ["parentcb"]
    world.check_replay()


def test_a_member_killed_by_policy_as_another_member_dies_counts_too(world: World) -> None:
    """x and d are members of P, d after x. x's FAIL (retry 0) kills d in the same step: the
    batches' end hook hears of both in one plan, so P counts two failures and completes."""
    parent = new_batch(world, complete="parentcb")
    world.push("x", retry=0, custom={"bid": parent})
    world.push("d", after=["x"], custom={"bid": parent})
    commit(world, parent)
    world.fail("x")
    status = batches_of(world).status(parent, world.now)
    assert (status["pending"], status["failed"], status["complete_st"]) == (2, 2, "1")
    assert callbacks(world) == ["parentcb"]
    world.check_replay()
