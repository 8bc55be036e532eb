"""The queued jobs of limited queues by class, FIFO per class: how FETCH skips a full
partition without scanning the queue (protocol/spec.md §11.3, §11.8).

A job's class (`rules.JobClass`) says every slot and rate window it needs; two jobs of one
class are held back by exactly the same ones, so FETCH only has to look at the oldest job
of each class of a queue: the oldest of those whose class has room is the job to hand out.
Per queue, a heap orders the classes by the position of their oldest job. A class found
without room in some (rule, partition) — its `concurrency` reached or its rate window
full — leaves the heap, *parked* on that key, until the key has room again (a slot ends, a
window opens: `unpark`); a class only the fetcher's own `worker` limit holds back is stepped
over and stays. So a FETCH costs O(log C + k) for the C classes of the queue and the k it
steps over, plus, once per parking, the O(log C) of moving a full class out and back in —
whatever the number of jobs.

The index is derived from the store's queues (a `store.api.QueueObserver`): jobs enter and
leave it where they enter and leave their queue, on live commits and journal replay alike,
so a restart rebuilds it; a configuration reload classifies the queued jobs again
(`rebuild`, O(queued jobs of limited queues)). Only queues some rule may select are
indexed: the others keep FETCH's head path, which costs what it did before limits existed.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator

from ...store.api import Job, Store
from ...store.api import decode_queued as decode
from .rules import JobClass, Rules, SlotKey


class _Queue:
    """One indexed queue: class → the positions of its jobs, oldest first, and the heap of
    the classes that may have room. (Nothing else per job: a job taken out is classified
    again to find its class, which costs less than a map of position → class would cost
    memory for every queued job.)"""

    __slots__ = ("fifos", "heap", "parked")

    def __init__(self) -> None:
        self.fifos: dict[JobClass, deque[int]] = {}
        #: (position of its oldest job, class) of every class not parked; entries whose
        #: position is no longer its class's oldest are stale, skipped when met
        self.heap: list[tuple[int, JobClass]] = []
        #: class → the key it waits for room in (out of the heap meanwhile)
        self.parked: dict[JobClass, SlotKey] = {}


class ClassIndex:
    """The index of every queue the rules may select (a `QueueObserver`)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._queues: dict[str, _Queue] = {}
        #: slot key → the indexed queues holding jobs that need it, with how many classes
        #: there need it (a freed slot wakes those queues' FETCHes)
        self._queues_of: dict[SlotKey, Counter[str]] = {}
        #: slot key → the (queue, class) parked on it
        self._parked_on: dict[SlotKey, set[tuple[str, JobClass]]] = {}

    def rebuild(self, rules: Rules, store: Store) -> None:
        """Classify every queued job again under `rules` (a configuration reload)."""
        self.rules = rules
        self._queues.clear()
        self._queues_of.clear()
        self._parked_on.clear()
        for queue in store.queue_names():
            if self.rules.of_queue(queue):
                for position, raw in store.queue_positioned(queue):
                    self._add(queue, position, raw)

    # --- the store's queues changing (the store calls these) --------------------------

    def enqueued(self, queue: str, first: int, raws: Iterable[bytes]) -> None:
        if not self.rules.by_name or not self.rules.of_queue(queue):  # no rule: no call on PUSH
            return
        for offset, raw in enumerate(raws):
            self._add(queue, first + offset, raw)

    def taken(self, queue: str, position: int, job: Job) -> None:
        if not self._queues:
            return
        indexed = self._queues.get(queue)
        if indexed is None:
            return
        job_class = self._class_of(queue, job)
        fifo = indexed.fifos.get(job_class)
        if fifo is None:  # a job the index never held: no commit may fail for an index's sake
            return
        if fifo[0] == position:
            fifo.popleft()
            if fifo and job_class not in indexed.parked:
                heapq.heappush(indexed.heap, (fifo[0], job_class))
        else:  # a job deleted from the middle (the web UI): rare, and it scanned the queue already
            try:
                fifo.remove(position)
            except ValueError:
                return
        if not fifo:
            del indexed.fifos[job_class]
            self._gone(queue, indexed, job_class)
            if not indexed.fifos:
                del self._queues[queue]

    def emptied(self, queue: str) -> None:
        indexed = self._queues.pop(queue, None)
        for job_class in () if indexed is None else list(indexed.fifos):
            self._gone(queue, indexed, job_class)

    def _class_of(self, queue: str, job: Job | bytes) -> JobClass:
        """The class of a job of `queue` (`job` decoded or not: decoded only if its class
        depends on it: its jobtype, its partitions)."""
        job_class = self.rules.fixed_class(queue)
        if job_class is None:
            job_class = self.rules.class_of(decode(job) if isinstance(job, bytes) else job)
        return job_class

    def _add(self, queue: str, position: int, raw: bytes) -> None:
        job_class = self._class_of(queue, raw)
        indexed = self._queues.get(queue)
        if indexed is None:
            indexed = self._queues[queue] = _Queue()
        fifo = indexed.fifos.get(job_class)
        if fifo is None:
            fifo = indexed.fifos[job_class] = deque()
            for key in job_class:
                self._queues_of.setdefault(key, Counter())[queue] += 1
            heapq.heappush(indexed.heap, (position, job_class))
        fifo.append(position)

    def _gone(self, queue: str, indexed: _Queue, job_class: JobClass) -> None:
        """`queue` holds no job of `job_class` any more."""
        key = indexed.parked.pop(job_class, None)
        if key is not None:
            self._unpark_one(key, queue, job_class)
        for key in job_class:
            holders = self._queues_of[key]
            holders[queue] -= 1
            if not holders[queue]:
                del holders[queue]
                if not holders:
                    del self._queues_of[key]

    # --- reading ----------------------------------------------------------------------

    def pick(self, queue: str, blocked_by: Callable[[JobClass], SlotKey | None],
             fits: Callable[[JobClass], bool]) -> int | None:
        """The position of the oldest job of `queue` whose class has room: no key in
        `blocked_by` it (a full one, which the class is parked on) and `fits` it (the
        fetcher's own limits). None if there is none. Looks at the classes in the order of
        their oldest job, no job decoded."""
        indexed = self._queues.get(queue)
        if indexed is None:
            return None
        heap, fifos, parked = indexed.heap, indexed.fifos, indexed.parked
        stepped_over = []
        picked = None
        while heap:
            position, job_class = heap[0]
            fifo = fifos.get(job_class)
            if fifo is None or fifo[0] != position or job_class in parked:
                heapq.heappop(heap)  # stale
            elif (full := blocked_by(job_class)) is not None:
                heapq.heappop(heap)
                parked[job_class] = full
                self._parked_on.setdefault(full, set()).add((queue, job_class))
            elif not fits(job_class):
                stepped_over.append(heapq.heappop(heap))
            else:
                picked = position
                break
        for entry in stepped_over:
            heapq.heappush(heap, entry)
        return picked

    def unpark(self, key: SlotKey) -> None:
        """`key` has room again: the classes parked on it go back to their queue's heap
        (one still held back by another key is parked on that one at the next FETCH)."""
        for queue, job_class in self._parked_on.pop(key, ()):
            indexed = self._queues[queue]
            del indexed.parked[job_class]
            heapq.heappush(indexed.heap, (indexed.fifos[job_class][0], job_class))

    def _unpark_one(self, key: SlotKey, queue: str, job_class: JobClass) -> None:
        parked = self._parked_on[key]
        parked.discard((queue, job_class))
        if not parked:
            del self._parked_on[key]

    def classes(self, queue: str) -> Iterator[tuple[JobClass, int]]:
        """(class, jobs queued) of every class of `queue`."""
        indexed = self._queues.get(queue)
        return iter(()) if indexed is None else ((c, len(f)) for c, f in indexed.fifos.items())

    def queues_needing(self, key: SlotKey) -> list[str]:
        """The queues holding jobs that need a slot (or a grant) of `key`."""
        return list(self._queues_of.get(key, ()))

    def queues(self) -> list[str]:
        """The indexed queues holding jobs."""
        return list(self._queues)
