"""Show that a read touches only what it returns: count lookups, refuse whole-set walks.

How the web UI's pages stay fast with 100k entries is asserted structurally with these,
not with timers.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from faktory_py.store.job_queue import JobQueue
from faktory_py.store.memory import MemoryStore
from faktory_py.store.sorted_set import SortedJobSet


class CountingDict(dict):
    """Counts item lookups (`d[key]`): how many entries a read touched."""

    lookups = 0

    def __getitem__(self, key: Any) -> Any:
        CountingDict.lookups += 1
        return super().__getitem__(key)


class NoScan(SortedJobSet):
    """A set that fails the test if anything iterates all of it (`__class__` may be swapped in)."""

    __slots__ = ()

    def items(self) -> Any:
        raise AssertionError("a read iterated the whole set")

    def due(self, now: float) -> Any:
        raise AssertionError("a read iterated the whole set")


def private_set(store: MemoryStore, name: str) -> SortedJobSet:
    """The store's own sorted set `name`, to fill with 100k entries at once and to `guard`.

    Test-only: it reaches into MemoryStore's private containers (nothing else may).
    """
    return store._sets[name]


def private_queue(store: MemoryStore, name: str) -> JobQueue:
    """The store's own queue `name`, to make it refuse iteration (test-only, as `private_set`)."""
    return store._queues[name]


def guard(job_set: SortedJobSet) -> SortedJobSet:
    """Turn `job_set` itself into a counting, scan-refusing set."""
    job_set._by_jid = CountingDict(job_set._by_jid)
    job_set.__class__ = NoScan
    return job_set


class NoScanQueue(JobQueue):
    """A queue that fails the test if anything reads past its head; counts the head reads."""

    __slots__ = ()
    heads = 0

    def __iter__(self) -> Any:
        raise AssertionError("a read iterated the whole queue")

    def page(self, start: int, count: int) -> Any:
        raise AssertionError("a read paged through the queue")

    def frozen(self) -> Any:
        raise AssertionError("a read copied the whole queue")

    def positioned(self) -> Any:
        raise AssertionError("a read iterated the whole queue")

    def head(self) -> Any:
        NoScanQueue.heads += 1
        return super().head()


class _NoIterationDeque(deque):  # type: ignore[type-arg]
    """A queue's chunks of jobs that fail the test if anything walks them (indexing one stays
    allowed)."""

    def __iter__(self) -> Any:
        raise AssertionError("a read walked the queue's jobs")


def refuse_walks(queue: JobQueue) -> JobQueue:
    """Make `queue`'s own jobs refuse any walk, its scans for a jid included (test-only: it
    reaches into the queue's private deque of chunks)."""
    queue._chunks = _NoIterationDeque(queue._chunks)
    return queue


def guard_queue(queue: JobQueue) -> JobQueue:
    """Turn `queue` itself into a head-counting, scan-refusing queue."""
    queue.__class__ = NoScanQueue
    return queue
