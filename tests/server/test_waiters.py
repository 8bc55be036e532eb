"""Blocked FETCHes are served first come, first served, and no job waits beside a sleeping waiter."""

from __future__ import annotations

import trio
import trio.testing

from faktory_py.server.waiters import QueueWaiters, WaitersStatistics


async def _waiter(waiters: QueueWaiters, queues: list[str], name: str, woken: list[tuple[str, str]]) -> None:
    woken.append((name, await waiters.wait(queues)))


async def test_longest_waiter_is_woken_first() -> None:
    waiters, woken = QueueWaiters(), []
    async with trio.open_nursery() as nursery:
        for name in ("first", "second", "third"):
            nursery.start_soon(_waiter, waiters, ["q"], name, woken)
            await trio.testing.wait_all_tasks_blocked()
        for _ in range(3):
            waiters.notify("q")
            await trio.testing.wait_all_tasks_blocked()
    assert woken == [("first", "q"), ("second", "q"), ("third", "q")]


async def test_one_job_wakes_one_waiter() -> None:
    waiters, woken = QueueWaiters(), []
    async with trio.open_nursery() as nursery:
        for name in ("a", "b"):
            nursery.start_soon(_waiter, waiters, ["q", "other"], name, woken)
            await trio.testing.wait_all_tasks_blocked()
        waiters.notify("q")
        await trio.testing.wait_all_tasks_blocked()
        assert woken == [("a", "q")]
        waiters.notify("other")
    assert woken == [("a", "q"), ("b", "other")]


async def test_top_up_wakes_one_waiter_per_job_left() -> None:
    waiters, woken = QueueWaiters(), []
    async with trio.open_nursery() as nursery:
        for name in ("a", "b", "c", "d"):
            nursery.start_soon(_waiter, waiters, ["q"], name, woken)
            await trio.testing.wait_all_tasks_blocked()
        waiters.notify("q")  # e.g. a resumed queue holding three jobs
        await trio.testing.wait_all_tasks_blocked()
        waiters.top_up("q", 2)  # "a" took one; two are left
        await trio.testing.wait_all_tasks_blocked()
        names = [name for name, _ in woken]  # woken together: they may run in any order
        assert names[0] == "a" and sorted(names[1:]) == ["b", "c"]
        waiters.top_up("q", 0)
        await trio.testing.wait_all_tasks_blocked()
        assert len(woken) == 3
        nursery.cancel_scope.cancel()


async def test_a_cancelled_wake_up_passes_to_the_next_waiter() -> None:
    waiters, woken = QueueWaiters(), []
    async with trio.open_nursery() as nursery:
        doomed = trio.CancelScope()
        nursery.start_soon(_cancellable, waiters, doomed)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_waiter, waiters, ["q"], "next", woken)
        await trio.testing.wait_all_tasks_blocked()
        doomed.cancel()  # the first waiter is cancelled, and before it gets to run...
        waiters.notify("q")  # ...a job wakes it: the wake-up must reach the next waiter
    assert woken == [("next", "q")]


async def _cancellable(waiters: QueueWaiters, scope: trio.CancelScope) -> None:
    with scope:
        await waiters.wait(["q"])


async def test_statistics_count_each_waiting_fetch_once() -> None:
    waiters, woken = QueueWaiters(), []
    assert waiters.statistics() == WaitersStatistics(fetches_waiting=0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_waiter, waiters, ["q", "other"], "two queues", woken)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_waiter, waiters, ["other"], "one queue", woken)
        doomed = trio.CancelScope()
        nursery.start_soon(_cancellable, waiters, doomed)
        await trio.testing.wait_all_tasks_blocked()
        assert waiters.statistics().fetches_waiting == 3
        doomed.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert waiters.statistics().fetches_waiting == 2
        waiters.notify("q")
        await trio.testing.wait_all_tasks_blocked()
        assert waiters.statistics().fetches_waiting == 1
        waiters.notify("other")
    assert waiters.statistics().fetches_waiting == 0
    assert [name for name, _ in woken] == ["two queues", "one queue"]


async def test_stop_ends_every_wait_and_every_later_one() -> None:
    """A stopping server's waiting FETCHes answer at once: every wait ends with None, one
    on no queue at all (a quiet worker's) too, and so does any wait begun afterwards; a
    waiter a job woke first still gets its queue."""
    waiters, woken = QueueWaiters(), []
    async with trio.open_nursery() as nursery:
        for name, queues in (("served", ["q"]), ("q", ["q"]), ("quiet", [])):
            nursery.start_soon(_waiter, waiters, queues, name, woken)
            await trio.testing.wait_all_tasks_blocked()
        waiters.notify("q")
        waiters.stop()
    assert sorted(woken, key=str) == [("q", None), ("quiet", None), ("served", "q")]
    assert waiters.statistics().fetches_waiting == 0
    with trio.testing.assert_checkpoints():
        assert await waiters.wait(["q"]) is None


async def test_parked_and_task_waiters_share_one_fifo() -> None:
    """A parked FETCH (the I/O loop's, without a task) waits its turn among task waiters,
    and its wake is only noted (`on_wake`) until its owner claims it."""
    waiters, woken, fired = QueueWaiters(), [], []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_waiter, waiters, ["q"], "first", woken)
        await trio.testing.wait_all_tasks_blocked()
        parked = waiters.park(["q"], "second", fired.append)
        nursery.start_soon(_waiter, waiters, ["q"], "third", woken)
        await trio.testing.wait_all_tasks_blocked()
        assert waiters.statistics().fetches_waiting == 3
        waiters.notify("q")
        await trio.testing.wait_all_tasks_blocked()
        assert woken == [("first", "q")] and fired == []
        waiters.notify("q")
        assert fired == [parked] and parked.owner == "second"
        assert waiters.claim(parked) == "q"
        waiters.notify("q")
    assert woken == [("first", "q"), ("third", "q")]
    assert waiters.statistics().fetches_waiting == 0


async def test_an_unparked_fetch_passes_its_wake_on() -> None:
    """A parked FETCH woken but ended without fetching (its peer left, its time was up)
    hands the job's wake to the next waiter; one not woken just leaves the FIFO."""
    waiters, woken, fired = QueueWaiters(), [], []
    async with trio.open_nursery() as nursery:
        idle = waiters.park(["q"], "idle", fired.append)
        waiters.unpark(idle)
        leaving = waiters.park(["q"], "leaving", fired.append)
        nursery.start_soon(_waiter, waiters, ["q"], "next", woken)
        await trio.testing.wait_all_tasks_blocked()
        waiters.notify("q")
        assert fired == [leaving]
        waiters.unpark(leaving)
    assert woken == [("next", "q")] and fired == [leaving]
    assert waiters.statistics().fetches_waiting == 0


def test_a_woken_fetch_that_found_its_job_gone_keeps_its_place() -> None:
    """`rewait`: the longest waiting FETCH gets the next job still, as after a BRPOP; once
    the server stops it cannot, and the owner claims it instead."""
    waiters, fired = QueueWaiters(), []
    oldest = waiters.park(["q"], "oldest", fired.append)
    newer = waiters.park(["q"], "newer", fired.append)
    waiters.notify("q")
    assert fired == [oldest]
    assert waiters.rewait(oldest)  # a FETCH that came after took the job
    waiters.notify("q")
    assert fired == [oldest, oldest]
    assert waiters.claim(oldest) == "q"
    assert waiters.statistics().fetches_waiting == 1
    waiters.notify("q")
    assert fired[-1] is newer
    waiters.stop()
    assert not waiters.rewait(newer) and waiters.claim(newer) == "q"
    assert waiters.statistics().fetches_waiting == 0 and not waiters._queues and not waiters._live


def test_a_fetch_that_waits_on_keeps_its_place_in_its_other_queues_too() -> None:
    """A FETCH of two queues, woken for one: a job of the other passes it over (it is
    awake). Both jobs go to quicker FETCHes; it waits on, and the next job of either queue
    wakes it (tests/server/test_waiters_model.py found it asleep beside a job)."""
    waiters, fired = QueueWaiters(), []
    both = waiters.park(["a", "b"], "both", fired.append)
    waiters.notify("a")
    waiters.notify("b")  # passes `both` over: it is awake, woken for "a"
    assert fired == [both]
    assert waiters.rewait(both)  # both jobs were taken by FETCHes that came after
    waiters.notify("b")
    assert fired == [both, both] and both.woken_by == "b"
    assert waiters.rewait(both)
    waiters.notify("a")
    assert fired == [both, both, both] and both.woken_by == "a"


def test_fetches_that_wait_on_keep_the_order_they_began_to_wait_in() -> None:
    """Two jobs wake the two oldest FETCHes; quicker FETCHes take both jobs; the woken ones
    wait on, whichever is tried first, in the order they began to wait: the next job goes
    to the oldest."""
    for first_tried in (0, 1):
        waiters, fired = QueueWaiters(), []
        oldest, older, newest = (waiters.park(["q"], name, fired.append) for name in ("oldest", "older", "newest"))
        waiters.top_up("q", 2)
        assert fired == [oldest, older]
        woken = [oldest, older]
        for parked in (woken[first_tried], woken[1 - first_tried]):
            assert waiters.rewait(parked)
        waiters.notify("q")
        assert fired[2:] == [oldest]
        waiters.notify("q")
        assert fired[3:] == [older]


def test_held_wakes_name_the_queues_to_top_up_and_wake_no_one_meanwhile() -> None:
    """`hold`/`release` (the I/O loop's turn): a job wakes no one while held; `release`
    names each queue told of that has waiters, once, in order; a `wake_all` queue (a
    per-worker throttle's) still wakes every waiter at once."""
    waiters, fired = QueueWaiters(wake_all={"per-worker"}), []
    a = waiters.park(["a"], "a", fired.append)
    b = waiters.park(["b"], "b", fired.append)
    pw = waiters.park(["per-worker"], "pw", fired.append)
    waiters.hold()
    for queue in ("b", "nobody-waits", "a", "b", "per-worker"):
        waiters.notify(queue)
    waiters.top_up("a", 5)
    assert fired == [pw]
    assert waiters.release() == ["b", "a"]
    assert fired == [pw]  # the caller tops up: here a FETCH of the turn took "b"'s job
    waiters.top_up("a", 1)
    waiters.top_up("b", 0)
    assert fired == [pw, a]
    waiters.notify("b")  # no longer held
    assert fired == [pw, a, b]
    assert waiters.release() == []


async def test_a_task_woken_for_a_job_that_was_gone_keeps_its_place() -> None:
    """`wait(..., still_waits)`: a task woken while its FETCH would only wait again sleeps
    on at the head of the FIFO, and gets the next wake before a task that waited less."""
    waiters, woken, gone = QueueWaiters(), [], [True]

    async def oldest() -> None:
        woken.append(("oldest", await waiters.wait(["q"], lambda: gone.pop() if gone else False)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(oldest)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_waiter, waiters, ["q"], "newer", woken)
        await trio.testing.wait_all_tasks_blocked()
        waiters.notify("q")  # a quicker FETCH takes the job before "oldest" runs: `gone`
        await trio.testing.wait_all_tasks_blocked()
        assert woken == [] and waiters.statistics().fetches_waiting == 2
        waiters.notify("q")
        await trio.testing.wait_all_tasks_blocked()
        assert woken == [("oldest", "q")]
        waiters.notify("q")
    assert woken == [("oldest", "q"), ("newer", "q")]


def test_stop_wakes_every_parked_fetch_once_and_every_later_one_at_once() -> None:
    waiters, fired = QueueWaiters(), []
    served = waiters.park(["q"], "served", fired.append)
    stopped = waiters.park([], "quiet", fired.append)
    waiters.notify("q")
    waiters.stop()
    assert fired == [served, stopped]  # the one a job woke is not woken twice
    assert waiters.claim(served) == "q" and waiters.claim(stopped) is None
    later = waiters.park(["q"], "later", fired.append)
    assert fired[-1] is later and waiters.claim(later) is None
    assert waiters.statistics().fetches_waiting == 0


def test_finished_waits_do_not_pile_up_behind_a_live_one() -> None:
    """FETCHes timing out behind one that still waits: the FIFO is compacted (from the
    queue's count of live waits, without a scan) and the live one is still woken first."""
    waiters = QueueWaiters()
    fired: list[str] = []
    first = waiters.park(["q"], "first", lambda parked: fired.append(parked.owner))
    later = [waiters.park(["q"], f"w{i}", lambda parked: fired.append(parked.owner)) for i in range(200)]
    for parked in later[:150]:
        waiters.unpark(parked)
    assert len(waiters._queues["q"]) <= 2 * 51
    assert waiters.statistics().fetches_waiting == 51
    waiters.notify("q")
    assert fired == ["first"]
    assert waiters.claim(first) == "q"
    for parked in later[150:]:
        waiters.unpark(parked)
    assert "q" not in waiters._queues and not waiters._live
