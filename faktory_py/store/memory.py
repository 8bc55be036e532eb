"""The embedded store: all state in memory, every change journaled before it is applied.

The job semantics (`faktory_py.core.lifecycle`) never change state directly: they compute a list
of small operations ("ops": the records of `store.api`, or features' dicts with an `op` tag)
and `commit` them. `commit`
hands the ops to the journal first and only then applies them, and replay applies the
very same ops, so a store rebuilt from its journal cannot drift from the live one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from .api import (
    JOB_SETS, Counters, DeclareQueue, Done, Drop, Enqueue, EnqueuePacked, Extend, Flush, Job, Op, Pause, QueueObserver,
    Release, RemoveQueue, Reservation, ReservationObserver, Reserve, RestoreReservation, Resume, SetAdd, SetClear, SetRemove,
    StateOwner, StoreOp,
    StoreStatistics, decode_op, is_store_op,
)
from .job_queue import JobQueue, unpack
from .sorted_set import LazyJobSet, SortedJobSet

#: builds a `Reservation` from a tuple of its fields, as its NamedTuple constructor does but in
#: half the time (every FETCH makes one)
_new_reservation = tuple.__new__
#: How many queued jobs a snapshot packs into one journal record; other ops count as
#: 16 (a set entry or reservation holds a decoded job, several times a queued one).
_SNAPSHOT_CHUNK = 8192
_OP_WEIGHT = 16


class MemoryStore:
    """In-memory queues, sorted sets, reservations and counters.

    `sink` receives each committed op list (the journal) and returns a durability
    position; `on_enqueue(queue)` and `on_due(score)` let the trio layer wake fetchers
    and timers without this module knowing about trio. They come with the constructor, or
    with `wire` once the server may commit (a standby follows a log into a store whose
    sink refuses, server/ha/standby.py). The containers are private: every
    reader, above store/ and in tests, goes through the `Store` methods, so a backend that
    keeps them elsewhere (Redis) serves the same callers.
    """

    def __init__(
        self,
        sink: Callable[[list[Op]], int] | None = None,
        on_enqueue: Callable[[str], None] | None = None,
        on_due: Callable[[float], None] | None = None,
    ) -> None:
        self._sink = sink
        self._on_enqueue = on_enqueue
        self._on_due = on_due
        self._queues: dict[str, JobQueue] = {}
        self._paused: set[str] = set()
        self._sets: dict[str, SortedJobSet] = {name: SortedJobSet() for name in JOB_SETS}
        #: the reservations, by expiry: a LazyJobSet, as every job enters and leaves it
        self._working = LazyJobSet()
        self._processed = 0
        self._failures = 0
        #: day ("YYYY-MM-DD") → [processed, failures]
        self._history: dict[str, list[int]] = {}
        #: features' state (`register_state`), in registration order, and by the ops they own
        self._owners: list[StateOwner] = []
        self._owner_of: dict[str, StateOwner] = {}
        #: indexes derived from the reservations (`observe_reservations`)
        self._observers: list[ReservationObserver] = []
        #: indexes derived from the queued jobs (`observe_queues`)
        self._queue_observers: list[QueueObserver] = []

    def wire(self, sink: Callable[[list[Op]], int], on_enqueue: Callable[[str], None],
             on_due: Callable[[float], None]) -> None:
        """Attach the live sink and hooks (replacing the constructor's)."""
        self._sink, self._on_enqueue, self._on_due = sink, on_enqueue, on_due

    def register_state(self, owner: StateOwner) -> None:
        """Route `owner.op_names` to `owner.apply`; snapshots and FLUSH include its state."""
        for name in owner.op_names:
            if name in self._owner_of or is_store_op(name):
                raise ValueError(f"op {name!r} already has an owner")
        self._owners.append(owner)
        self._owner_of.update(dict.fromkeys(owner.op_names, owner))

    def observe_reservations(self, observer: ReservationObserver) -> None:
        """Call `observer` wherever a reservation begins (`_hold`) or ends (`_end`, `_flush`)."""
        self._observers.append(observer)

    def observe_queues(self, observer: QueueObserver) -> None:
        """Call `observer` wherever jobs enter a queue (`_enqueue`) or leave one (`_take`,
        `_remove_queue`, `_flush`)."""
        self._queue_observers.append(observer)

    def unobserve(self, observer: ReservationObserver | QueueObserver) -> None:
        """Take `observer` out of both lists of observers (by identity)."""
        self._observers = [o for o in self._observers if o is not observer]
        self._queue_observers = [o for o in self._queue_observers if o is not observer]

    # --- changing state -------------------------------------------------------------

    def commit(self, ops: Sequence[StoreOp | Op]) -> int:
        """Journal then apply `ops` atomically; returns the journal position to wait for.

        The sink gets every op in its journal form; an op the store cannot apply is refused
        (KeyError) before anything is journaled.
        """
        if len(ops) == 1 and not isinstance(only := ops[0], dict):  # (PUSH, FETCH and ACK of most jobs)
            position = 0 if self._sink is None else self._sink([only.encode()])
            self._APPLY[type(only)](self, only)
            return position
        if not ops:
            return 0
        journaled = [self._checked(op) if isinstance(op, dict) else op.encode() for op in ops]
        position = 0 if self._sink is None else self._sink(journaled)
        apply, store_op = self._APPLY, self.apply
        for op in ops:  # a store op straight to its function (`apply`'s second half)
            if isinstance(op, dict):
                store_op(op)
            else:
                apply[type(op)](self, op)
        return position

    def _checked(self, op: Op) -> Op:
        """`op` itself, once it is known that `apply` can take it: an owner's op, or a store
        op in its journal form (KeyError otherwise)."""
        if op["op"] not in self._owner_of:
            decode_op(op)
        return op

    def apply(self, op: StoreOp | Op) -> None:
        """Apply one op to memory (live commits and journal replay both come here)."""
        if isinstance(op, dict):
            owner = self._owner_of.get(op["op"])
            if owner is None:
                op = decode_op(op)
            else:
                due = owner.apply(op)
                if due is not None and self._on_due is not None:
                    self._on_due(due)
                return
        self._APPLY[type(op)](self, op)

    def _queue(self, name: str) -> JobQueue:
        """The queue `name`, made known if it was not."""
        pending = self._queues.get(name)
        if pending is None:
            pending = self._queues[name] = JobQueue()
        return pending

    def _enqueue(self, op: Enqueue) -> None:
        first = self._queue(op.queue).extend(op.raws)
        if self._queue_observers:
            for observer in self._queue_observers:
                observer.enqueued(op.queue, first, op.raws)
        if self._on_enqueue is not None:
            self._on_enqueue(op.queue)

    def _enqueue_packed(self, op: EnqueuePacked) -> None:
        pending = self._queue(op.queue)
        first = pending.end
        pending.extend_packed(op.data, op.ends)
        for observer in self._queue_observers:
            observer.enqueued(op.queue, first, unpack(op.data, op.ends))
        if self._on_enqueue is not None:
            self._on_enqueue(op.queue)

    def _declare_queue(self, op: DeclareQueue) -> None:
        self._queues.setdefault(op.queue, JobQueue())

    def _set_add(self, op: SetAdd) -> None:
        self._sets[op.set].add(op.job["jid"], op.score, op.job)
        if self._on_due is not None:
            self._on_due(op.score)

    def _set_remove(self, op: SetRemove) -> None:
        self._sets[op.set].remove(op.jid)

    def _set_clear(self, op: SetClear) -> None:
        self._sets[op.set].clear()

    def _reserve(self, op: Reserve) -> None:
        job = self._take(op.queue, op.jid)
        self._hold(job, op.wid, op.reserved_at, op.expires_at)

    def _drop(self, op: Drop) -> None:
        """A job an extension refused at fetch time (e.g. expired) leaves its queue."""
        self._take(op.queue, op.jid)

    def _take(self, queue: str, jid: str) -> Job:
        job, position = self._queues[queue].pop(jid)
        for observer in self._queue_observers:
            observer.taken(queue, position, job)
        return job

    def _restore_reservation(self, op: RestoreReservation) -> None:
        self._hold(op.job, op.wid, op.reserved_at, op.expires_at)

    def _hold(self, job: Job, wid: str, reserved_at: float, expires_at: float) -> None:
        res = _new_reservation(Reservation, (job, wid, reserved_at, expires_at))
        self._working.add(job["jid"], expires_at, res)
        if self._on_due is not None:
            self._on_due(expires_at)
        for observer in self._observers:
            due = observer.reserved(res)
            if due is not None and self._on_due is not None:
                self._on_due(due)

    def _extend(self, op: Extend) -> None:
        found = self._working.get(op.jid)
        if found is not None:
            res = found[1]._replace(expires_at=op.expires_at)
            self._working.add(op.jid, op.expires_at, res)

    def _end(self, jid: str) -> None:
        """The one place a single reservation ends (ACK, FAIL, expiry, an operator's MUTATE)."""
        self._working.remove(jid)
        for observer in self._observers:
            observer.ended(jid)

    def _done(self, op: Done) -> None:
        self._end(op.jid)
        daily = self._history.setdefault(op.day, [0, 0])
        self._processed += 1
        daily[0] += 1
        if op.failed:
            self._failures += 1
            daily[1] += 1

    def _release(self, op: Release) -> None:
        self._end(op.jid)

    def _pause(self, op: Pause) -> None:
        self._paused.update(q for q in op.queues if q in self._queues)

    def _resume(self, op: Resume) -> None:
        for queue in op.queues:
            if queue in self._paused:
                self._paused.discard(queue)
                if self._on_enqueue is not None and self._queues.get(queue):
                    self._on_enqueue(queue)

    def _remove_queue(self, op: RemoveQueue) -> None:
        if self._queues.pop(op.queue, None) is not None:
            for observer in self._queue_observers:
                observer.emptied(op.queue)
        self._paused.discard(op.queue)

    def _flush(self, op: Flush) -> None:
        """Wipe jobs, sets, reservations, pauses and counters; queue names stay known."""
        for name, queue in self._queues.items():
            queue.clear()
            for observer in self._queue_observers:
                observer.emptied(name)
        self._paused.clear()
        for job_set in self._sets.values():
            job_set.clear()
        self._working.clear()
        for observer in self._observers:
            observer.cleared()
        self._processed = self._failures = 0
        self._history.clear()
        for owner in self._owners:
            owner.flush()

    def _counters(self, op: Counters) -> None:
        self._processed = op.processed
        self._failures = op.failures
        self._history = {day: list(pair) for day, pair in op.history.items()}

    _APPLY: ClassVar[dict[type[StoreOp], Callable[[MemoryStore, Any], None]]] = {
        Enqueue: _enqueue, EnqueuePacked: _enqueue_packed, DeclareQueue: _declare_queue, SetAdd: _set_add, SetRemove: _set_remove,
        SetClear: _set_clear, Reserve: _reserve, Drop: _drop, RestoreReservation: _restore_reservation,
        Extend: _extend, Done: _done, Release: _release, Pause: _pause, Resume: _resume,
        RemoveQueue: _remove_queue, Flush: _flush, Counters: _counters,
    }

    # --- reading (the `Store` protocol documents each method) ---------------------------

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            queues={name: len(jobs) for name, jobs in self._queues.items()},
            paused=frozenset(self._paused),
            scheduled=len(self._sets["scheduled"]), retries=len(self._sets["retries"]),
            dead=len(self._sets["dead"]), working=len(self._working),
            processed=self._processed, failures=self._failures,
        )

    def daily_counts(self) -> dict[str, tuple[int, int]]:
        return {day: (processed, failed) for day, (processed, failed) in self._history.items()}

    def queue_names(self) -> list[str]:
        return list(self._queues)

    def has_queue(self, queue: str) -> bool:
        return queue in self._queues

    def queue_size(self, queue: str) -> int:
        pending = self._queues.get(queue)
        return 0 if pending is None else len(pending)

    def is_paused(self, queue: str) -> bool:
        return queue in self._paused

    def queue_head(self, queue: str) -> Job | None:
        pending = self._queues.get(queue)
        return pending.head() if pending else None

    def queue_head_stored(self, queue: str) -> tuple[Job, bytes] | None:
        pending = self._queues.get(queue)
        return pending.head_stored() if pending else None

    def queue_job(self, queue: str, position: int) -> Job | None:
        pending = self._queues.get(queue)
        return None if pending is None else pending.at(position)

    def queue_positioned(self, queue: str) -> Iterator[tuple[int, bytes]]:
        pending = self._queues.get(queue)
        return iter(()) if pending is None else pending.positioned()

    def queue_page(self, queue: str, offset: int, limit: int) -> list[Job]:
        pending = self._queues.get(queue)
        return [] if pending is None else pending.page(offset, limit)

    def queued(self, queue: str) -> Iterator[Job]:
        return iter(self._queues.get(queue, ()))

    def set_size(self, name: str) -> int:
        return len(self._sets[name])

    def set_entry(self, name: str, jid: str) -> tuple[float, Job] | None:
        return self._sets[name].get(jid)

    def set_page(self, name: str, offset: int, limit: int) -> list[tuple[float, str, Job]]:
        return self._sets[name].page(offset, limit)

    def set_entries(self, name: str) -> Iterator[tuple[float, str, Job]]:
        return self._sets[name].items()

    def set_due(self, name: str, now: float) -> list[tuple[float, str, Job]]:
        return self._sets[name].due(now)

    def reservation(self, jid: str) -> Reservation | None:
        found = self._working.get(jid)
        return None if found is None else found[1]

    def reservations(self) -> Iterator[Reservation]:
        return (res for _score, _jid, res in self._working.items())

    def reservation_page(self, offset: int, limit: int) -> list[Reservation]:
        return [res for _score, _jid, res in self._working.page(offset, limit)]

    def reservations_due(self, now: float) -> list[Reservation]:
        return [res for _score, _jid, res in self._working.due(now)]

    def next_due(self) -> float | None:
        scores = [job_set.first_score() for job_set in self._sets.values()]
        scores.append(self._working.first_score())
        due = [score for score in scores if score is not None]
        return min(due) if due else None

    # --- snapshots ------------------------------------------------------------------

    def snapshot(self) -> Iterator[list[Op]]:
        """Op lists, in their journal form, that rebuild the current state (journal compaction).

        The containers are copied here, synchronously (cheap: jobs, and queues' full
        chunks of them, are immutable and shared), so the returned iterator may be consumed later in a worker thread
        while the live store keeps changing.
        """
        queues = {name: jobs.frozen() for name, jobs in self._queues.items()}
        paused = sorted(self._paused)
        sets = {name: job_set.copy() for name, job_set in self._sets.items()}
        working = self._working.copy()
        counters = Counters(self._processed, self._failures,
                            {day: list(pair) for day, pair in self._history.items()})
        extensions = [owner.snapshot() for owner in self._owners]

        def records() -> Iterator[StoreOp]:
            yield counters
            for name, runs in queues.items():
                yield DeclareQueue(name)
                for data, ends in runs:
                    if ends:
                        yield EnqueuePacked(name, data, ends.tolist())
            if paused:
                yield Pause(paused)
            for name, job_set in sets.items():
                for score, _jid, job in job_set.items():
                    yield SetAdd(name, score, job)
            for _score, _jid, res in working.items():
                yield RestoreReservation(res.job, res.wid, res.reserved_at, res.expires_at)

        def ops() -> Iterator[Op]:
            for record in records():
                yield record.encode()
            for extension_ops in extensions:
                yield from extension_ops

        def chunks() -> Iterator[list[Op]]:
            chunk: list[Op] = []
            weight = 0
            for op in ops():
                chunk.append(op)
                weight += len(op["ends"]) if op["op"] == "enqueue_packed" else _OP_WEIGHT
                if weight >= _SNAPSHOT_CHUNK:
                    yield chunk
                    chunk, weight = [], 0
            if chunk:
                yield chunk

        return chunks()
