"""Blocked FETCHes, served first come, first served.

Faktory's FETCH is a Redis BRPOP: the client that has waited longest gets the next job.
We keep one FIFO of waiters per queue and wake one waiter per job enqueued. A woken
waiter may end up not taking that job (a job in a queue it prefers came too, another
fetcher was quicker, or it was cancelled); so after each woken fetch the caller calls
`top_up` with what is left in the queue, and a job never sits in a queue while one of
its waiters sleeps. When the server stops (`stop`), every wait ends at once, with None (its
FETCH answers `$-1`): no task per waiting FETCH has to watch for the stop.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Container, Sequence
from dataclasses import dataclass

import trio


class _Waiter:
    __slots__ = ("event", "woken_by", "gone")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.woken_by: str | None = None
        self.gone = False


@dataclass(frozen=True)
class WaitersStatistics:
    """What `QueueWaiters.statistics()` reports (INFO's `server.fetches_waiting`, spec.md §3 INFO)."""

    #: FETCHes asleep in `wait` right now, whatever their number of queues
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
        #: every waiter asleep in `wait`, whatever its queues (`stop` wakes them all)
        self._asleep: set[_Waiter] = set()
        self._stopped = False

    def statistics(self) -> WaitersStatistics:
        """How many fetchers wait: lets a test (or an operator) see a FETCH is blocked."""
        return WaitersStatistics(fetches_waiting=self._waiting)

    def notify(self, queue: str) -> None:
        """One job arrived in `queue` (or it was resumed, or a throttle slot of it ended):
        wake its longest waiter (every waiter, for a queue in `wake_all`)."""
        waiting = self._queues.get(queue)
        everyone = queue in self.wake_all
        while waiting:
            waiter = waiting.popleft()
            if waiter.woken_by is None and not waiter.gone:
                waiter.woken_by = queue
                self._woken[queue] += 1
                waiter.event.set()
                if not everyone:
                    break
        if waiting is not None and not waiting:
            del self._queues[queue]

    def top_up(self, queue: str, available: int) -> None:
        """Wake enough waiters of `queue` for the `available` jobs it holds."""
        while self._woken[queue] < available and self._queues.get(queue):
            self.notify(queue)

    def stop(self) -> None:
        """The server stops: every wait, now and from now on, ends at once with None."""
        self._stopped = True
        for waiter in self._asleep:
            waiter.event.set()

    async def wait(self, queues: Sequence[str]) -> str | None:
        """Sleep until woken for one of `queues` (none: only `stop` ends the wait); returns
        the queue that woke us, or None once the server stops.

        The caller must then fetch and call `top_up` for that queue.
        """
        if self._stopped:
            await trio.lowlevel.checkpoint()
            return None
        waiter = _Waiter()
        for queue in queues:
            self._queues.setdefault(queue, deque()).append(waiter)
        self._waiting += 1
        self._asleep.add(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.woken_by is not None:  # woken but will not fetch: pass it on
                self._woken[waiter.woken_by] -= 1
                self.notify(waiter.woken_by)
            raise
        finally:
            self._waiting -= 1
            self._asleep.discard(waiter)
            waiter.gone = True
            for queue in queues:
                self._compact(queue)
        if waiter.woken_by is None:  # `stop`
            return None
        self._woken[waiter.woken_by] -= 1
        return waiter.woken_by

    def _compact(self, queue: str) -> None:
        """Drop finished waits from the front (and, when they are most, everywhere) of a
        queue's FIFO, so fetchers timing out on an idle queue do not pile up."""
        waiting = self._queues.get(queue)
        if waiting is None:
            return
        while waiting and waiting[0].gone:
            waiting.popleft()
        if len(waiting) > 64 and sum(w.gone for w in waiting) * 2 > len(waiting):
            waiting = deque(w for w in waiting if not w.gone)
            self._queues[queue] = waiting
        if not waiting:
            del self._queues[queue]
