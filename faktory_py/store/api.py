"""The store interface the job semantics are written against.

`MemoryStore` is the embedded default. Another backend (Redis, later) implements the same
contract: read access to the structures below, and `commit(ops)`, which must make the ops
durable and visible atomically and return a position `durable()` can wait for. The op
vocabulary is documented by `MemoryStore.apply` (one `_op_<name>` method per op).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from .job_queue import encode
from .sorted_set import SortedJobSet

Job = dict[str, Any]
Op = dict[str, Any]

#: the sorted sets of jobs besides `working`
JOB_SETS = ("scheduled", "retries", "dead")


def enqueue_op(job: dict[str, Any]) -> dict[str, Any]:
    """The op that appends `job` to its queue (queues store jobs encoded, see job_queue)."""
    return {"op": "enqueue", "queue": job["queue"], "raws": [encode(job)]}


class Reservation(NamedTuple):
    """A fetched job being worked on (Faktory's `working` set entry)."""

    job: dict[str, Any]
    wid: str
    reserved_at: float
    expires_at: float


class Store(Protocol):
    #: known queues (including empty ones) → pending jobs, next to fetch first
    queues: Mapping[str, Sequence[Job]]
    paused: set[str]
    #: "scheduled", "retries", "dead" → jobs scored by when they are due / expire
    sets: Mapping[str, SortedJobSet]
    #: jid → Reservation, scored by expiry
    working: SortedJobSet
    processed: int
    failures: int
    history: Mapping[str, list[int]]
    #: hooks for the trio layer: wake fetchers of a queue; wake the timer for a due time
    on_enqueue: Callable[[str], None] | None
    on_due: Callable[[float], None] | None

    def commit(self, ops: list[Op]) -> int:
        """Make `ops` durable and applied, atomically; returns a durability position."""

    def snapshot(self) -> Iterator[list[Op]]:
        """Op records that rebuild the current state (for compaction or migration)."""
