"""The store interface the job semantics are written against.

`MemoryStore` is the embedded default. Another backend (Redis, later) implements the same
contract: read access to the structures below, and `commit(ops)`, which must make the ops
durable and visible atomically and return a position `durable()` can wait for. The op
vocabulary is documented by `MemoryStore.apply` (one `_op_<name>` method per op).

Features keep state of their own (unique locks, tracking records, batches) under the same
rules as the store's: changed only by ops, rebuilt by replay, part of every snapshot, wiped
by FLUSH. They hand it to the store with `register_state(owner)` (see `StateOwner`), and
keep jobs or keys ordered by a time in a `SortedJobSet`, offered here so that nothing above
store/ imports the store's modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from .job_queue import encode
from .sorted_set import SortedJobSet

__all__ = ["JOB_SETS", "Job", "Op", "Reservation", "SortedJobSet", "StateOwner", "Store", "enqueue_op"]

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


class StateOwner(Protocol):
    """State a feature keeps in the store's care (`Store.register_state`).

    The store routes every op whose tag is in `op_names` to `apply`, on live commits and
    journal replay alike, so the owner's state cannot drift from its journal.
    """

    #: the op tags this owner applies; no two owners (nor the store) share one
    op_names: tuple[str, ...]

    def apply(self, op: Op) -> float | None:
        """Apply one of the owner's ops; return the time of timed work the op added (the
        store tells its `on_due` observer, so the due timer wakes for it), else None."""

    def snapshot(self) -> Iterator[Op]:
        """Ops that rebuild the owner's state. The state is copied when this is called
        (synchronously); the iterator may be consumed later, in another thread."""

    def flush(self) -> None:
        """FLUSH: wipe the state (an applied `flush` op calls this)."""


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

    def register_state(self, owner: StateOwner) -> None:
        """Let `owner` apply its ops and take part in snapshots and FLUSH; before any replay."""

    def snapshot(self) -> Iterator[list[Op]]:
        """Op records that rebuild the current state, owners' included (for compaction or migration)."""
