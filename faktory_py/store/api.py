"""The store interface the job semantics are written against.

`MemoryStore` is the embedded default. Another backend (Redis, later) implements the same
contract (`Store`, checked by tests/store/): read methods and `statistics()` instead of
exposed containers, and `commit(ops)`, which must make the ops durable and visible
atomically and return a position `durable()` can wait for. The op vocabulary is documented
by `MemoryStore.apply` (one `_op_<name>` method per op).

Features keep state of their own (unique locks, tracking records, batches) under the same
rules as the store's: changed only by ops, rebuilt by replay, part of every snapshot, wiped
by FLUSH. They hand it to the store with `register_state(owner)` (see `StateOwner`), and
keep jobs or keys ordered by a time in a `SortedJobSet`, offered here so that nothing above
store/ imports the store's modules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .job_queue import encode
from .sorted_set import SortedJobSet

__all__ = ["JOB_SETS", "Job", "Op", "Reservation", "SortedJobSet", "StateOwner", "Store", "StoreStatistics",
           "enqueue_op"]

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


@dataclass(frozen=True)
class StoreStatistics:
    """The store's counts at one instant (`Store.statistics()`): what INFO and the web UI show."""

    #: every known queue, empty ones too, in the order they became known → its pending jobs
    queues: Mapping[str, int]
    paused: frozenset[str]
    #: entries of the sorted sets (JOB_SETS) and reservations (Faktory's `working` set)
    scheduled: int
    retries: int
    dead: int
    working: int
    #: jobs ended since the last FLUSH (ACK, FAIL, reservation expiry), and of those, failed
    processed: int
    failures: int


class Store(Protocol):
    """A backend: the ops it applies, what it reads back, the state features register.

    A backend is built with its observers, which it calls as ops are applied (never during
    a read): `sink(ops) -> position` takes each committed op list before it is applied (the
    op log; nothing above store/ assumes it is a local file), `on_enqueue(queue)` wakes the
    fetchers of a queue that gained jobs or was resumed, `on_due(when)` wakes the due timer
    for an entry that becomes due at `when`.

    Queues hand out their jobs oldest first. The sorted sets (JOB_SETS) and the
    reservations are ordered by score (when an entry is due; for a reservation, when it
    expires), then jid.
    """

    def commit(self, ops: list[Op]) -> int:
        """Make `ops` durable and applied, atomically; returns a durability position."""

    def register_state(self, owner: StateOwner) -> None:
        """Let `owner` apply its ops and take part in snapshots and FLUSH; before any replay."""

    def snapshot(self) -> Iterator[list[Op]]:
        """Op records that rebuild the current state, owners' included (for compaction or migration)."""

    def statistics(self) -> StoreStatistics: ...

    def daily_counts(self) -> dict[str, tuple[int, int]]:
        """UTC day ("YYYY-MM-DD") → (processed, failures) that day, since the last FLUSH."""

    # --- queues ---------------------------------------------------------------------

    def queue_names(self) -> list[str]:
        """Every known queue, empty ones too, in the order they became known."""

    def has_queue(self, queue: str) -> bool: ...

    def queue_size(self, queue: str) -> int:
        """Pending jobs of `queue` (0 for an unknown queue)."""

    def is_paused(self, queue: str) -> bool: ...

    def queue_head(self, queue: str) -> Job | None:
        """The job FETCH would take next from `queue` (paused or not), None if there is none."""

    def queue_page(self, queue: str, offset: int, limit: int) -> list[Job]:
        """Up to `limit` pending jobs from position `offset`, next to fetch first."""

    def queued(self, queue: str) -> Iterator[Job]:
        """Every pending job of `queue`, next to fetch first (empty for an unknown queue)."""

    # --- sorted sets (JOB_SETS) -----------------------------------------------------

    def set_size(self, name: str) -> int: ...

    def set_entry(self, name: str, jid: str) -> tuple[float, Job] | None:
        """(score, job) of the entry `jid` of set `name`, None if it has none."""

    def set_page(self, name: str, offset: int, limit: int) -> list[tuple[float, str, Job]]:
        """Up to `limit` (score, jid, job) from position `offset`, touching only those."""

    def set_entries(self, name: str) -> Iterator[tuple[float, str, Job]]:
        """Every (score, jid, job) of set `name`, in order."""

    def set_due(self, name: str, now: float) -> list[tuple[float, str, Job]]:
        """The entries of `name` with a score <= now, in order (a list: callers change the set)."""

    # --- reservations ---------------------------------------------------------------

    def reservation(self, jid: str) -> Reservation | None: ...

    def reservations(self) -> Iterator[Reservation]:
        """Every reservation, by expiry."""

    def reservation_page(self, offset: int, limit: int) -> list[Reservation]: ...

    def reservations_due(self, now: float) -> list[Reservation]:
        """Reservations expired at `now` (expires_at <= now), by expiry."""

    def next_due(self) -> float | None:
        """The earliest score of the sorted sets and reservations (None when all are empty)."""
