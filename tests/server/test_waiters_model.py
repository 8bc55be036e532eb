"""Model-based test of the FETCH waiters (server/waiters.py) with parked FETCHes, as the I/O
loop drives them: no job sits in a queue while a FETCH waiting on that queue sleeps.

A hypothesis state machine parks FETCHes on one or two queues, pushes jobs (`notify`), lets
a FETCH that did not wait take a job first (a quicker FETCH of the same turn), tries woken
FETCHes again as the loop does (take a job of its queues in order, else `rewait`, and
`top_up` the queue that woke it, as `Dispatcher.retry_fetch` does), ends waits (`unpark`:
time up, peer gone) and runs turns that hold the wakes (`hold` … `release`, then `top_up`).
The jobs are counted here; after every step each queue's jobs are at most the FETCHes woken
for it, or no FETCH waiting on it sleeps; and every wake goes to the FETCHes that have waited
longest.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from faktory_py.server.waiters import Parked, QueueWaiters

QUEUES = ("a", "b")
CHOICES = st.sampled_from([("a",), ("b",), ("a", "b"), ("b", "a")])


class WaitersMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.waiters = QueueWaiters()
        self.jobs = dict.fromkeys(QUEUES, 0)
        #: every FETCH parked and not ended, in the order they began to wait
        self.live: list[Parked] = []

    def _park(self, queues: tuple[str, ...]) -> None:
        self.live.append(self.waiters.park(queues, None, lambda parked: None))

    def _top_up(self, queue: str) -> None:
        self._wakes_in_order(queue, lambda: self.waiters.top_up(queue, self.jobs[queue]))

    def _wakes_in_order(self, queue: str, wake: Callable[[], None]) -> None:
        """Run `wake`: the FETCHes it wakes for `queue` must be the ones asleep on it that
        have waited longest (`live` is in the order they began to wait; one that waits on in
        its place keeps it)."""
        asleep = [p for p in self.live if p.woken_by is None and queue in p.queues]
        wake()
        woken = [p for p in asleep if p.woken_by is not None]
        assert woken == asleep[:len(woken)], f"a FETCH on {queue!r} was woken before one that waited longer"

    @rule(queues=CHOICES)
    def fetch(self, queues: tuple[str, ...]) -> None:
        """A FETCH: a job of its queues if one is there (the quicker FETCH), else it parks."""
        for queue in queues:
            if self.jobs[queue]:
                self.jobs[queue] -= 1
                return
        self._park(queues)

    @rule(queue=st.sampled_from(QUEUES))
    def push(self, queue: str) -> None:
        self.jobs[queue] += 1
        self._wakes_in_order(queue, lambda: self.waiters.notify(queue))

    @precondition(lambda self: any(p.woken_by is not None for p in self.live))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        """A woken FETCH tried again (the loop's `_settle`): a job of its queues, in order,
        or it waits on in its place."""
        woken = [p for p in self.live if p.woken_by is not None]
        parked = data.draw(st.sampled_from(woken))
        if not any(self.jobs[q] for q in parked.queues) and self.waiters.rewait(parked):
            return
        self.live.remove(parked)
        woken_by = self.waiters.claim(parked)
        assert woken_by is not None
        taken = next((q for q in parked.queues if self.jobs[q]), None)
        assert taken is not None  # (`rewait` refuses only once stopped, or for a wake_all queue)
        self.jobs[taken] -= 1
        self._top_up(woken_by)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def unpark(self, data: st.DataObject) -> None:
        """A parked FETCH's time is up, or its peer left: a wake it got passes on."""
        parked = data.draw(st.sampled_from(self.live))
        self.live.remove(parked)
        self.waiters.unpark(parked)

    @rule(steps=st.lists(st.tuples(st.sampled_from(["push", "fetch"]), CHOICES), max_size=4))
    def turn(self, steps: list[tuple[str, tuple[str, ...]]]) -> None:
        """An I/O loop turn: its PUSHes and FETCHes with the wakes held, then the queues
        `release` names topped up with the jobs left (`Dispatcher.wake`)."""
        self.waiters.hold()
        for verb, queues in steps:
            if verb == "push":
                self.push(queues[0])
            else:
                self.fetch(queues)
        for queue in self.waiters.release():
            self._top_up(queue)

    @invariant()
    def no_job_beside_a_sleeping_fetch(self) -> None:
        for queue in QUEUES:
            woken = sum(p.woken_by == queue for p in self.live)
            if self.jobs[queue] > woken:
                sleeping = [p for p in self.live if p.woken_by is None and queue in p.queues]
                assert not sleeping, f"{self.jobs[queue]} jobs in {queue!r}, {woken} woken, a FETCH asleep on it"

    @invariant()
    def every_wait_is_counted(self) -> None:
        assert self.waiters.statistics().fetches_waiting == len(self.live)


TestWaiters = WaitersMachine.TestCase
TestWaiters.settings = settings(max_examples=1000, stateful_step_count=30, deadline=None)
