"""The store interface the job semantics are written against.

`MemoryStore` is the embedded default. Another backend (Redis, later) implements the same
contract (`Store`, checked by tests/store/): read methods and `statistics()` instead of
exposed containers, and `commit(ops)`, which must make the ops durable and visible
atomically and return a position `durable()` can wait for. The op vocabulary is the
records below (`StoreOp`), each encoding to the dict the journal holds for it.

Features keep state of their own (unique locks, tracking records, batches) under the same
rules as the store's: changed only by ops, rebuilt by replay, part of every snapshot, wiped
by FLUSH. They hand it to the store with `register_state(owner)` (see `StateOwner`), and
keep jobs or keys ordered by a time in a `SortedJobSet`, offered here so that nothing above
store/ imports the store's modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar, dataclass_transform

from .job_queue import decode as decode_queued
from .job_queue import encode
from .sorted_set import SortedJobSet

__all__ = [
    "JOB_SETS", "AnyOp", "Job", "Op", "QueueObserver", "Reservation", "ReservationObserver", "SortedJobSet", "StateOwner", "Store",
    "StoreStatistics", "StoreOp", "decode_op", "decode_queued", "enqueue_op", "is_store_op",
    "Enqueue", "EnqueuePacked", "DeclareQueue", "SetAdd", "SetRemove", "SetClear", "Reserve", "Drop",
    "RestoreReservation", "Extend", "Done", "Release", "Pause", "Resume", "RemoveQueue", "Flush", "Counters",
]

Job = dict[str, Any]
#: an op in its journal form, `{"op": <tag>, <field>: <value>, ...}` (features' ops are written so)
Op = dict[str, Any]

#: the sorted sets of jobs besides `working`
JOB_SETS = ("scheduled", "retries", "dead")


# --- the op vocabulary ------------------------------------------------------------------
# One record per op the store applies itself. Field names and their order are the op's
# journal form (`encode()`: {"op": tag, field: value, ...}), so the journal stays what it
# was; `decode_op` reads that form back (replay). Features' ops stay in the journal form and
# go to their `StateOwner`.
#
# Records are built, encoded and applied several times per job on the command path, so they
# are plain `__slots__` classes whose `__init__` and `encode` are generated per record (as
# dataclasses generate theirs): a frozen dataclass costs ~0.5 µs more per record, its
# `__init__` going through `object.__setattr__` and a generic `encode` through `getattr`.
# They are values all the same: never changed once built (type checkers see them frozen),
# equal when of the same type with equal fields.

_BY_TAG: dict[str, type[StoreOp]] = {}


class StoreOp:
    """One change to the store's own state (see the records below)."""

    __slots__ = ()
    #: the op's `"op"` tag in the journal
    tag: ClassVar[str]
    #: the fields, in their journal order
    _keys: ClassVar[tuple[str, ...]]

    def encode(self) -> Op:
        """The journal form: exactly the dict journaled for this op (generated per record)."""
        raise NotImplementedError

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, key) for key in self._keys)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # fields hold lists and dicts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in zip(self._keys, self._values()))})"


_Record = TypeVar("_Record", bound=type[StoreOp])


def _generated(keys: tuple[str, ...], tag: str) -> dict[str, Any]:
    """`__init__` and `encode` for a record with fields `keys`, journaled as `tag`."""
    assigns = "".join(f"\n    self.{key} = {key}" for key in keys) or "\n    pass"
    items = "".join(f", {key!r}: self.{key}" for key in keys)
    source = (f"def __init__(self{''.join(f', {key}' for key in keys)}):{assigns}\n"
              f"def encode(self):\n    return {{'op': {tag!r}{items}}}\n")
    namespace: dict[str, Any] = {}
    exec(source, {}, namespace)  # noqa: S102 -- the source is made of field names only
    return namespace


@dataclass_transform(frozen_default=True)
def _op(tag: str) -> Callable[[_Record], _Record]:
    """Make a StoreOp subclass a record journaled as `tag`, its fields its annotations."""
    def make(cls: _Record) -> _Record:
        keys = tuple(cls.__dict__.get("__annotations__", {}))
        namespace = {name: value for name, value in vars(cls).items() if name not in ("__dict__", "__weakref__")}
        methods = _generated(keys, tag)
        for method in methods.values():
            method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        namespace.update(methods, __slots__=keys, tag=tag, _keys=keys)
        record = type(cls)(cls.__name__, cls.__bases__, namespace)
        _BY_TAG[tag] = record
        return record
    return make


class UnknownOp(KeyError):
    """A journal op whose tag no store op and no feature takes: most likely a journal written
    by a newer faktory_py (a KeyError, so callers that check ops keep catching it)."""

    def __str__(self) -> str:
        return f"unknown journal op {self.args[0]!r} (written by a newer faktory_py?)"


def decode_op(op: Op) -> StoreOp:
    """A store op from its journal form; KeyError for a tag or field the store does not know."""
    record = _BY_TAG.get(op["op"])
    if record is None:
        raise UnknownOp(op["op"])
    return record(*[op[key] for key in record._keys])


def is_store_op(tag: str) -> bool:
    """Is `tag` an op of the store's own vocabulary (which no StateOwner may take)?"""
    return tag in _BY_TAG


@_op("enqueue")
class Enqueue(StoreOp):
    """Append jobs, encoded (job_queue), to a queue; the queue becomes known."""

    queue: str
    raws: list[bytes]


@_op("enqueue_packed")
class EnqueuePacked(StoreOp):
    """Append jobs packed as a queue keeps them: their encoded bytes back to back, and where
    each ends in them. Snapshots write queues so (`JobQueue.frozen`): one object per few
    hundred jobs for the journal to pack and unpack instead of one per job, and replay adds
    most runs to the queue as they are. The queue becomes known."""

    queue: str
    data: bytes
    ends: list[int]


@_op("declare_queue")
class DeclareQueue(StoreOp):
    """Make a queue known, empty (snapshots keep empty queues)."""

    queue: str


@_op("zadd")
class SetAdd(StoreOp):
    """Put a job into a sorted set (JOB_SETS), replacing its entry with the same jid."""

    set: str
    score: float
    job: Job


@_op("zrem")
class SetRemove(StoreOp):
    set: str
    jid: str


@_op("zclear")
class SetClear(StoreOp):
    set: str


@_op("reserve")
class Reserve(StoreOp):
    """Take a job out of its queue into a reservation (FETCH)."""

    queue: str
    jid: str
    wid: str
    reserved_at: float
    expires_at: float


@_op("drop")
class Drop(StoreOp):
    """Take a job out of its queue without running it (refused at FETCH, deleted)."""

    queue: str
    jid: str


@_op("reservation")
class RestoreReservation(StoreOp):
    """A reservation as a snapshot holds it."""

    job: Job
    wid: str
    reserved_at: float
    expires_at: float


@_op("extend")
class Extend(StoreOp):
    """Move a reservation's expiry (nothing if it ended meanwhile)."""

    jid: str
    expires_at: float


@_op("done")
class Done(StoreOp):
    """A reservation ended by ACK (failed=False) or FAIL/expiry (failed=True), counted on `day`."""

    jid: str
    day: str
    failed: bool


@_op("release")
class Release(StoreOp):
    """A reservation ended by an operator (MUTATE on the `working` target: the job is
    requeued, killed or discarded), counted as neither processed nor failed: it did not run
    to an end."""

    jid: str


@_op("pause")
class Pause(StoreOp):
    """Pause the known queues of `queues`."""

    queues: list[str]


@_op("resume")
class Resume(StoreOp):
    queues: list[str]


@_op("remove_queue")
class RemoveQueue(StoreOp):
    """Forget a queue and its jobs."""

    queue: str


@_op("flush")
class Flush(StoreOp):
    """Wipe jobs, sets, reservations, pauses, counters and owners' state; queue names stay."""


@_op("counters")
class Counters(StoreOp):
    """The totals and the daily history (day → [processed, failures]) as a snapshot holds them."""

    processed: int
    failures: int
    history: dict[str, list[int]]


#: what `Store.commit` takes: the store's records, and ops in their journal form (features')
AnyOp = StoreOp | Op


def enqueue_op(job: dict[str, Any]) -> Enqueue:
    """The op that appends `job` to its queue (queues store jobs encoded, see job_queue)."""
    return Enqueue(job["queue"], [encode(job)])


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


class ReservationObserver(Protocol):
    """An index derived from the reservations (`Store.observe_reservations`), e.g. throttle
    occupancy (protocol/spec.md §11.2).

    The store calls it exactly where a reservation begins (FETCH, or a snapshot's or the
    journal's replay of one) and where one ends (ACK, FAIL, expiry, FLUSH), on live commits
    and replay alike: the index is never a second piece of state some path can forget to
    update, and a restart rebuilds it from the journaled reservations.
    """

    def reserved(self, res: Reservation) -> float | None:
        """A reservation began; return the time of timed work it adds (the store tells its
        `on_due` observer, so the due timer wakes for it), else None."""

    def ended(self, jid: str) -> None:
        """The reservation of `jid` ended."""

    def cleared(self) -> None:
        """FLUSH ended every reservation."""


class QueueObserver(Protocol):
    """An index derived from the queued jobs (`Store.observe_queues`), e.g. throttles' jobs
    by class (protocol/spec.md §11.8): told of every job that enters or leaves a queue, with
    its *position* (a number that is the job's own while it is queued, larger for later jobs;
    `Store.queue_job` reads the job at one), on live commits and replay alike, so a restart
    rebuilds it as it was."""

    def enqueued(self, queue: str, first: int, raws: Iterable[bytes]) -> None:
        """`raws` (encoded jobs, `decode_queued` reads one; an iterator over a packed run
        when a snapshot is replayed) were appended to `queue`, the first at position
        `first`, the next ones after it."""

    def taken(self, queue: str, position: int, job: Job) -> None:
        """`job`, at `position`, left `queue` (reserved or dropped)."""

    def emptied(self, queue: str) -> None:
        """Every job of `queue` left it (QUEUE REMOVE, FLUSH)."""


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

    def commit(self, ops: Sequence[AnyOp]) -> int:
        """Make `ops` durable and applied, atomically; returns a durability position.

        Store ops are records (`StoreOp`); features' ops, and store ops in their journal
        form, are dicts. The sink gets every op in its journal form."""

    def apply(self, op: AnyOp) -> None:
        """Apply one op without handing it to the sink: replay of the op log or a snapshot."""

    def register_state(self, owner: StateOwner) -> None:
        """Let `owner` apply its ops and take part in snapshots and FLUSH; before any replay."""

    def observe_reservations(self, observer: ReservationObserver) -> None:
        """Tell `observer` of every reservation that begins or ends from now on; before any replay."""

    def observe_queues(self, observer: QueueObserver) -> None:
        """Tell `observer` of every job that enters or leaves a queue from now on; before any replay."""

    def unobserve(self, observer: ReservationObserver | QueueObserver) -> None:
        """Tell `observer` nothing more (nothing if it is not observing). Observing again
        later, it must first rebuild its index from the read methods: what happened
        meanwhile is not told again."""

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

    def queue_head_stored(self, queue: str) -> tuple[Job, bytes] | None:
        """`queue_head`, with the job's JSON as the queue holds it (what FETCH answers: the
        same document `encode_job` would write, without writing it again)."""

    def queue_job(self, queue: str, position: int) -> Job | None:
        """The job at `position` of `queue` (see `QueueObserver`), None if it left; reserving
        it next costs no scan of the queue."""

    def queue_positioned(self, queue: str) -> Iterator[tuple[int, bytes]]:
        """(position, encoded job) of every pending job of `queue`, next to fetch first (an
        index rebuilding itself after a configuration reload)."""

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
