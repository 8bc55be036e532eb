"""Blocked FETCHes, served first come, first served.

Faktory's FETCH is a Redis BRPOP: the client that has waited longest gets the next job.
We keep one FIFO of waiters per queue and wake one waiter per job enqueued. A woken
waiter may end up not taking that job (a job in a queue it prefers came too, another
fetcher was quicker, or it was cancelled); so after each woken fetch the caller calls
`top_up` with what is left in the queue, and a job never sits in a queue while one of
its waiters sleeps. When the server stops (`stop`), every wait ends at once, with None (its
FETCH answers `$-1`): no task per waiting FETCH has to watch for the stop.

A waiter is a task asleep in `wait`, or a *parked* FETCH (`park`): one the batched I/O loop
(server/ioloop.py) keeps without a task of its own, woken by a callback instead of an
event. Both kinds share each queue's one FIFO, so the longest waiting FETCH gets the next
job whichever path serves its connection; the owner of a parked waiter ends it with
`claim` (woken: it fetches next) or `unpark` (it will not fetch: a wake it got passes on),
or keeps it waiting in its place with `rewait` (woken, but the job was gone; a task in `wait`
does that itself, told by `still_waits`).

The loop runs a whole turn of commands at once, and a FETCH in it often takes the job that a
PUSH before it would have woken a waiter for. So during its turn it `hold`s the wakes:
`notify` only notes the queue, and `release` hands the loop the queues to `top_up` for the
jobs still there once the turn's commands ran — a waiter is woken only for a job left for it.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

import trio


class _Waiter:
    """A task asleep in `QueueWaiters.wait`."""

    __slots__ = ("queues", "woken_by", "gone", "dropped", "since", "event")

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = queues
        #: the queue whose job woke it (None: not woken, or woken by `stop`)
        self.woken_by: str | None = None
        #: its wait is over (its FIFO entries are skipped and compacted away)
        self.gone = False
        #: the FIFOs of its other queues that a job passed it over in while it was woken:
        #: it left them then, and `rewait` puts it back in its place
        self.dropped: list[str] = []
        #: when it began to wait, as a count (`QueueWaiters._enter`): its place in every FIFO
        self.since = 0
        self.event = trio.Event()

    def fire(self) -> None:
        self.event.set()

    def rearm(self) -> None:
        """Wait to be woken again (`QueueWaiters.rewait`)."""
        self.event = trio.Event()


class Parked(_Waiter):
    """A FETCH waiting without a task (`QueueWaiters.park`): woken by calling `on_wake(self)`
    once (by a job, or by `stop`); `owner` is whatever its parker needs to find it again."""

    __slots__ = ("owner", "on_wake", "fired")

    def __init__(self, queues: Sequence[str], owner: Any, on_wake: Callable[[Parked], None]) -> None:
        super().__init__(queues)
        self.owner = owner
        self.on_wake = on_wake
        self.fired = False

    def fire(self) -> None:
        if not self.fired:
            self.fired = True
            self.on_wake(self)

    def rearm(self) -> None:
        self.fired = False


@dataclass(frozen=True)
class WaitersStatistics:
    """What `QueueWaiters.statistics()` reports (INFO's `server.fetches_waiting`, spec.md §3 INFO)."""

    #: FETCHes waiting right now (asleep in `wait` or parked), whatever their number of queues
    fetches_waiting: int


class QueueWaiters:
    """queue name → FIFO of waiting fetchers (entries of finished waits are skipped)."""

    def __init__(self, wake_all: Container[str] = frozenset()) -> None:
        #: queues whose every waiter is woken per job or freed slot, not just the longest
        #: waiting: those with a per-worker throttle, where a waiter's worker may be at its
        #: limit while another's is not (a woken waiter that cannot take the job does not
        #: pass the wake on, so waking one could leave an able waiter asleep)
        self.wake_all = wake_all
        self._queues: dict[str, deque[_Waiter]] = {}
        #: queue → waiters woken for it that have not fetched yet
        self._woken: Counter[str] = Counter()
        self._waiting = 0
        #: queue → waiters of it whose wait is not over (woken or not): what `_compact`
        #: compares its FIFO's length with, without a scan
        self._live: dict[str, int] = {}
        #: every waiter asleep in `wait` or parked, whatever its queues (`stop` wakes them all)
        self._asleep: set[_Waiter] = set()
        self._stopped = False
        self._entered = itertools.count()
        #: while held (`hold`): the queues `notify` and `top_up` were told of, in order
        self._held: dict[str, None] | None = None

    def statistics(self) -> WaitersStatistics:
        """How many fetchers wait: lets a test (or an operator) see a FETCH is blocked."""
        return WaitersStatistics(fetches_waiting=self._waiting)

    def notify(self, queue: str) -> None:
        """One job arrived in `queue` (or it was resumed, or a throttle slot of it ended):
        wake its longest waiter (every waiter, for a queue in `wake_all`), or, while wakes
        are held, note the queue for `release`."""
        everyone = queue in self.wake_all
        if self._held is not None and not everyone:
            self._held[queue] = None
            return
        waiting = self._queues.get(queue)
        while waiting:
            waiter = waiting.popleft()
            if waiter.woken_by is None and not waiter.gone:
                waiter.woken_by = queue
                self._woken[queue] += 1
                waiter.fire()
                if not everyone:
                    break
            elif not waiter.gone:  # woken for another of its queues
                waiter.dropped.append(queue)
        if waiting is not None and not waiting:
            del self._queues[queue]

    def top_up(self, queue: str, available: int) -> None:
        """Wake enough waiters of `queue` for the `available` jobs it holds (while wakes are
        held, `release` names the queue instead)."""
        if self._held is not None and queue not in self.wake_all:
            self._held[queue] = None
            return
        while self._woken[queue] < available and self._queues.get(queue):
            self.notify(queue)

    def hold(self) -> None:
        """Note the queues `notify` is told of instead of waking anyone, until `release` (the
        I/O loop's turn, module doc). A queue in `wake_all` still wakes at once: whether a
        waiter's worker may take its job is for that waiter to find out."""
        self._held = {}

    def release(self) -> list[str]:
        """Stop holding wakes: the queues told of meanwhile that have waiters, which the
        caller must `top_up` with the jobs FETCHes may take there now."""
        held, self._held = self._held, None
        queues = self._queues
        return [] if not held else [queue for queue in held if queue in queues]

    def stop(self) -> None:
        """The server stops: every wait, now and from now on, ends at once with None."""
        self._stopped = True
        for waiter in list(self._asleep):
            waiter.fire()

    async def wait(self, queues: Sequence[str], still_waits: Callable[[], bool] | None = None) -> str | None:
        """Sleep until woken for one of `queues` (none: only `stop` ends the wait); returns
        the queue that woke us, or None once the server stops. Woken while `still_waits()`
        says a FETCH would only wait again (a quicker one took the job), it sleeps on in its
        place (`rewait`).

        The caller must then fetch and call `top_up` for that queue.
        """
        if self._stopped:
            await trio.lowlevel.checkpoint()
            return None
        waiter = _Waiter(queues)
        self._enter(waiter)
        try:
            await waiter.event.wait()
            while still_waits is not None and still_waits() and self.rewait(waiter):
                await waiter.event.wait()
        except BaseException:
            self.unpark(waiter)
            raise
        return self.claim(waiter)

    def park(self, queues: Sequence[str], owner: Any, on_wake: Callable[[Parked], None]) -> Parked:
        """Wait for one of `queues` without a task: `on_wake(parked)` is called once, when a
        job wakes it or the server stops (at once, from inside `park`, if it has stopped).
        `on_wake` runs inside `notify` (in the middle of a command that enqueues a job), so
        it must only take note; the owner then ends the wait with `claim` or `unpark`."""
        parked = Parked(queues, owner, on_wake)
        self._enter(parked)
        if self._stopped:
            parked.fire()
        return parked

    def rewait(self, waiter: _Waiter) -> bool:
        """A woken FETCH whose job another FETCH took first (one that arrived after the wake,
        before the woken one could try again): it waits on in its place, in the FIFO it was
        woken from (and in those of its other queues whose jobs passed it over while it was
        woken), before every FETCH that began to wait after it. So the longest waiting FETCH
        still gets the next job, as a Redis BRPOP would (Faktory's FETCH). False when it
        cannot (the server stops, or its queue wakes every waiter): the owner `claim`s it
        and waits anew instead."""
        queue = waiter.woken_by
        if self._stopped or waiter.gone or queue is None or queue in self.wake_all:
            return False
        self._woken[queue] -= 1
        waiter.woken_by = None
        waiter.rearm()
        self._put_back(queue, waiter)
        for other in waiter.dropped:
            self._put_back(other, waiter)
        waiter.dropped.clear()
        return True

    def _put_back(self, queue: str, waiter: _Waiter) -> None:
        """Back into the FIFO of `queue`, before every waiter that began to wait after it
        (near the head: it was at the head when it was woken or passed over)."""
        fifo = self._queues.setdefault(queue, deque())
        since = waiter.since
        fifo.insert(next((at for at, other in enumerate(fifo) if other.since > since), len(fifo)), waiter)

    def claim(self, waiter: _Waiter) -> str | None:
        """End a woken wait: the queue that woke it (the caller must fetch and `top_up`
        it), or None when it was `stop`."""
        self._leave(waiter)
        if waiter.woken_by is None:
            return None
        self._woken[waiter.woken_by] -= 1
        return waiter.woken_by

    def unpark(self, waiter: _Waiter) -> None:
        """End a wait that will not fetch (its FETCH timed out, or its peer left): a wake it
        got passes on to the next waiter of that queue."""
        if waiter.gone:
            return
        self._leave(waiter)
        if waiter.woken_by is not None:
            self._woken[waiter.woken_by] -= 1
            self.notify(waiter.woken_by)

    def _enter(self, waiter: _Waiter) -> None:
        waiter.since = next(self._entered)
        live = self._live
        for queue in waiter.queues:
            self._queues.setdefault(queue, deque()).append(waiter)
            live[queue] = live.get(queue, 0) + 1
        self._waiting += 1
        self._asleep.add(waiter)

    def _leave(self, waiter: _Waiter) -> None:
        self._waiting -= 1
        self._asleep.discard(waiter)
        waiter.gone = True
        live = self._live
        for queue in waiter.queues:
            left = live[queue] - 1
            if left:
                live[queue] = left
            else:
                del live[queue]
            self._compact(queue, left)

    def _compact(self, queue: str, live: int) -> None:
        """Drop finished waits from the front (and, when they are most, everywhere) of a
        queue's FIFO, so fetchers timing out on an idle queue do not pile up. (`live`: the
        queue's waits not over, some maybe out of the FIFO already: woken, not yet claimed.)"""
        waiting = self._queues.get(queue)
        if waiting is None:
            return
        while waiting and waiting[0].gone:
            waiting.popleft()
        if len(waiting) > 64 and len(waiting) > 2 * live:
            waiting = deque(w for w in waiting if not w.gone)
            self._queues[queue] = waiting
        if not waiting:
            del self._queues[queue]
