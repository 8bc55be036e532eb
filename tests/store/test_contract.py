"""The store contract: what any backend must do, checked through `store.api` only.

Every test takes `make_store` (the `backend` fixture's factory) and drives a store by
`commit` and the read methods, as the job semantics do; nothing here looks at a backend's
containers. Today the one backend is `MemoryStore`; a new one (the op log on Redis, say)
joins by adding itself to `BACKENDS` and must pass the whole module unchanged.

The op records are pinned to their journal form too (`test_every_op_encodes_to_its_journal_form`):
old journals must replay, whatever the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faktory_py.store import api
from faktory_py.store.api import (
    JOB_SETS, Counters, DeclareQueue, Done, Drop, Enqueue, EnqueuePacked, Extend, Flush, Op, Pause, Release, RemoveQueue,
    Reservation, Reserve, RestoreReservation, Resume, SetAdd, SetClear, SetRemove, Store, StoreOp,
    decode_op, enqueue_op,
)
from faktory_py.store.memory import MemoryStore

NOW = 1_780_000_000.0
DAY = "2026-05-28"

MakeStore = Callable[..., Store]
#: backend name → factory taking the constructor's observers (sink, on_enqueue, on_due)
BACKENDS: dict[str, MakeStore] = {"memory": MemoryStore}


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest) -> MakeStore:
    return BACKENDS[request.param]


def job(jid: str, queue: str = "default", **fields: Any) -> dict[str, Any]:
    return {"jid": jid, "jobtype": "T", "args": [jid], "queue": queue, **fields}


def roundtrip(ops: Any) -> Any:
    """What an op log does to a record: pack it and read it back."""
    return msgpack.unpackb(msgpack.packb(ops, use_bin_type=True), raw=False)


def observed(store: Store) -> dict[str, Any]:
    """Everything the read methods show, in comparable form."""
    return {
        "statistics": store.statistics(),
        "queues": {name: (store.is_paused(name), list(store.queued(name))) for name in store.queue_names()},
        "sets": {name: list(store.set_entries(name)) for name in JOB_SETS},
        "reservations": list(store.reservations()),
        "daily": store.daily_counts(),
        "next_due": store.next_due(),
    }


def replayed(make_store: MakeStore, records: Iterator[list[Op]], *owners: Callable[[Store], Any]) -> Store:
    """A fresh store (with fresh owners registered) that applied `records` as an op log gives them back."""
    fresh = make_store()
    for owner in owners:
        owner(fresh)
    for record in records:
        for op in roundtrip(record):
            fresh.apply(op)
    return fresh


class Tally:
    """A minimal state owner: key → count, with an optional due time per op."""

    op_names = ("tally",)

    def __init__(self, store: Store) -> None:
        self.counts: dict[str, int] = {}
        store.register_state(self)

    def apply(self, op: Op) -> float | None:
        self.counts[op["key"]] = op["n"]
        return op.get("due")

    def snapshot(self) -> Iterator[Op]:
        counts = dict(self.counts)
        return ({"op": "tally", "key": key, "n": n} for key, n in counts.items())

    def flush(self) -> None:
        self.counts.clear()


class Log:
    """A sink that keeps every committed record, as an op log would."""

    def __init__(self) -> None:
        self.records: list[list[Op]] = []

    def __call__(self, ops: list[Op]) -> int:
        self.records.append(roundtrip(ops))
        return len(self.records)


# --- the op vocabulary --------------------------------------------------------------------

JOURNAL_FORMS: list[tuple[StoreOp, Op]] = [
    (Enqueue("q", [b"{}"]), {"op": "enqueue", "queue": "q", "raws": [b"{}"]}),
    (EnqueuePacked("q", b"{}{}", [2, 4]), {"op": "enqueue_packed", "queue": "q", "data": b"{}{}", "ends": [2, 4]}),
    (DeclareQueue("q"), {"op": "declare_queue", "queue": "q"}),
    (SetAdd("dead", 1.5, job("a" * 8)), {"op": "zadd", "set": "dead", "score": 1.5, "job": job("a" * 8)}),
    (SetRemove("retries", "a" * 8), {"op": "zrem", "set": "retries", "jid": "a" * 8}),
    (SetClear("scheduled"), {"op": "zclear", "set": "scheduled"}),
    (Reserve("q", "a" * 8, "w1", 1.0, 2.0),
     {"op": "reserve", "queue": "q", "jid": "a" * 8, "wid": "w1", "reserved_at": 1.0, "expires_at": 2.0}),
    (Drop("q", "a" * 8), {"op": "drop", "queue": "q", "jid": "a" * 8}),
    (RestoreReservation(job("a" * 8), "w1", 1.0, 2.0),
     {"op": "reservation", "job": job("a" * 8), "wid": "w1", "reserved_at": 1.0, "expires_at": 2.0}),
    (Extend("a" * 8, 3.0), {"op": "extend", "jid": "a" * 8, "expires_at": 3.0}),
    (Done("a" * 8, DAY, True), {"op": "done", "jid": "a" * 8, "day": DAY, "failed": True}),
    (Release("a" * 8), {"op": "release", "jid": "a" * 8}),
    (Pause(["a", "b"]), {"op": "pause", "queues": ["a", "b"]}),
    (Resume(["a"]), {"op": "resume", "queues": ["a"]}),
    (RemoveQueue("q"), {"op": "remove_queue", "queue": "q"}),
    (Flush(), {"op": "flush"}),
    (Counters(3, 1, {DAY: [3, 1]}), {"op": "counters", "processed": 3, "failures": 1, "history": {DAY: [3, 1]}}),
]


@pytest.mark.parametrize(("record", "form"), JOURNAL_FORMS, ids=[form["op"] for _r, form in JOURNAL_FORMS])
def test_every_op_encodes_to_its_journal_form(record: StoreOp, form: Op) -> None:
    encoded = record.encode()
    assert encoded == form and list(encoded) == list(form)  # same keys, in the same order
    assert decode_op(roundtrip(form)) == record


def test_an_op_no_one_takes_is_named_as_such() -> None:
    """Replay of a journal a newer faktory_py wrote stops with a reason an operator can read
    (a bare KeyError printed as the tag alone did not say what was wrong)."""
    with pytest.raises(KeyError, match="unknown journal op 'from_the_future' .written by a newer faktory_py"):
        decode_op({"op": "from_the_future"})


def test_records_are_values_of_their_own_type() -> None:
    """Equal by type and fields: a zrem is never equal to a drop of the same two strings
    (as NamedTuples would be); built by keyword too, with no per-instance dict."""
    assert Drop(queue="q", jid="j") == Drop("q", "j") != SetRemove("q", "j")
    assert Flush() == Flush() and Done("j", DAY, True) != Done("j", DAY, False)
    assert repr(Extend("j", 3.0)) == "Extend(jid='j', expires_at=3.0)"
    with pytest.raises(AttributeError):
        Drop("q", "j").other = 1  # type: ignore[attr-defined]


def test_the_pinned_forms_cover_the_whole_vocabulary() -> None:
    covered = {type(record) for record, _form in JOURNAL_FORMS}
    records = {value for value in vars(api).values() if isinstance(value, type) and issubclass(value, StoreOp)}
    assert covered == records - {StoreOp}


# --- commit and the sink -----------------------------------------------------------------

def test_commit_hands_the_sink_the_journal_form_and_returns_its_position(make_store: MakeStore) -> None:
    log = Log()
    store = make_store(sink=log)
    assert store.commit([]) == 0 and log.records == []
    assert store.commit([enqueue_op(job("a" * 8)), {"op": "declare_queue", "queue": "other"}]) == 1
    assert log.records == [[enqueue_op(job("a" * 8)).encode(), {"op": "declare_queue", "queue": "other"}]]
    assert store.queue_names() == ["default", "other"]


def test_an_op_the_store_cannot_apply_is_refused_before_it_is_journaled(make_store: MakeStore) -> None:
    log = Log()
    store = make_store(sink=log)
    before = observed(store)
    with pytest.raises(KeyError):
        store.commit([enqueue_op(job("a" * 8)), {"op": "no_such_op"}])
    assert log.records == [] and observed(store) == before


def test_a_failing_sink_changes_nothing(make_store: MakeStore) -> None:
    def full(ops: list[Op]) -> int:
        raise OSError("disk full")

    store = make_store(sink=full)
    with pytest.raises(OSError):
        store.commit([enqueue_op(job("a" * 8))])
    assert store.queue_names() == [] and store.statistics().queues == {}


# --- queues -------------------------------------------------------------------------------

def test_queues_are_fifo(make_store: MakeStore) -> None:
    store = make_store()
    jids = [f"job-{i:04d}" for i in range(30)]
    for jid in jids[:10]:
        store.commit([enqueue_op(job(jid))])
    store.commit([Enqueue("default", [enqueue_op(job(jid)).raws[0] for jid in jids[10:]])])
    assert store.queue_size("default") == 30 and store.queue_head("default") == job(jids[0])
    assert [j["jid"] for j in store.queued("default")] == jids
    assert [j["jid"] for j in store.queue_page("default", 25, 25)] == jids[25:]
    store.commit([Reserve("default", jids[0], "w1", NOW, NOW + 60)])
    assert store.queue_head("default") == job(jids[1])
    store.commit([Drop("default", jids[17])])  # from the middle too
    assert [j["jid"] for j in store.queued("default")] == jids[1:17] + jids[18:]


def test_the_head_is_read_as_it_was_stored(make_store: MakeStore) -> None:
    """FETCH answers the stored job (protocol/spec.md §3 FETCH): `queue_head_stored` hands
    back the very bytes enqueued, not a new encoding of them, in a queue's filling part and
    in its packed chunks alike (300 jobs fill one), the head moving as jobs leave."""
    store = make_store()
    raws = [b'{"jid": "job-%04d", "queue": "q", "args": [1e+21]}' % i for i in range(300)]
    store.commit([Enqueue("q", raws)])
    for i in (0, 1, 299):
        head, stored = store.queue_head_stored("q")  # type: ignore[misc]
        assert (head["jid"], head["args"], stored) == (f"job-{i:04d}", [1e21], raws[i])
        assert head == store.queue_head("q")
        store.commit([Reserve("q", head["jid"], "w", NOW, NOW + 60)])
        if i == 1:
            store.commit([Drop("q", f"job-{j:04d}") for j in range(2, 299)])
    assert store.queue_head_stored("q") is None and store.queue_head_stored("nope") is None


class QueueLog:
    """A `QueueObserver` that writes down what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def enqueued(self, queue: str, first: int, raws: Any) -> None:
        self.events.append(("enqueued", queue, first, [api.decode_queued(raw)["jid"] for raw in raws]))

    def taken(self, queue: str, position: int, job: Any) -> None:
        self.events.append(("taken", queue, position, job["jid"]))

    def emptied(self, queue: str) -> None:
        self.events.append(("emptied", queue))


def test_a_queue_observer_learns_each_jobs_position_and_reads_it_back(make_store: MakeStore) -> None:
    """Positions (`QueueObserver`): a job keeps its own while queued, `queue_job` reads it
    and a Reserve of it is told with it; REMOVE and FLUSH empty a queue."""
    store = make_store()
    log = QueueLog()
    store.observe_queues(log)
    store.commit([enqueue_op(job("job-0000")), Enqueue("default", [enqueue_op(job(f"job-{i:04d}")).raws[0]
                                                                     for i in (1, 2, 3)])])
    assert log.events == [("enqueued", "default", 0, ["job-0000"]),
                          ("enqueued", "default", 1, ["job-0001", "job-0002", "job-0003"])]
    assert store.queue_job("default", 2) == job("job-0002") and store.queue_job("default", 9) is None
    store.commit([Reserve("default", "job-0002", "w1", NOW, NOW + 60), Drop("default", "job-0000")])
    assert log.events[2:] == [("taken", "default", 2, "job-0002"), ("taken", "default", 0, "job-0000")]
    assert [position for position, _raw in store.queue_positioned("default")] == [1, 3]
    assert store.queue_job("default", 2) is None and store.queue_job("default", 3) == job("job-0003")
    store.commit([enqueue_op(job("job-0004", "other")), RemoveQueue("other"), Flush()])
    assert log.events[4:] == [("enqueued", "other", 0, ["job-0004"]), ("emptied", "other"), ("emptied", "default")]


class ReservationLog:
    """A `ReservationObserver` that writes down what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def reserved(self, res: Reservation) -> None:
        self.events.append(("reserved", res.job["jid"]))

    def ended(self, jid: str) -> None:
        self.events.append(("ended", jid))

    def cleared(self) -> None:
        self.events.append(("cleared",))


def test_an_observer_is_told_nothing_once_unobserved(make_store: MakeStore) -> None:
    """`unobserve` ends what either kind of observer is told (the others are told on), and
    takes one that never observed without complaint."""
    store = make_store()
    queues, reservations, stays = QueueLog(), ReservationLog(), ReservationLog()
    store.observe_queues(queues)
    store.observe_reservations(reservations)
    store.observe_reservations(stays)
    store.commit([enqueue_op(job("job-0000")), Reserve("default", "job-0000", "w1", NOW, NOW + 60)])
    for observer in (queues, reservations, QueueLog()):
        store.unobserve(observer)
    store.commit([Done("job-0000", DAY, False), enqueue_op(job("job-0001")),
                  Reserve("default", "job-0001", "w1", NOW, NOW + 60), Flush()])
    assert queues.events == [("enqueued", "default", 0, ["job-0000"]), ("taken", "default", 0, "job-0000")]
    assert reservations.events == [("reserved", "job-0000")]
    assert stays.events == [("reserved", "job-0000"), ("ended", "job-0000"), ("reserved", "job-0001"), ("cleared",)]


def test_unknown_queues_read_as_empty(make_store: MakeStore) -> None:
    store = make_store()
    assert not store.has_queue("nope") and store.queue_size("nope") == 0
    assert store.queue_head("nope") is None and store.queue_page("nope", 0, 25) == []
    assert list(store.queued("nope")) == [] and not store.is_paused("nope")
    assert store.queue_job("nope", 0) is None and list(store.queue_positioned("nope")) == []


def test_queue_names_pauses_and_removal(make_store: MakeStore) -> None:
    woken: list[str] = []
    store = make_store(on_enqueue=woken.append)
    store.commit([DeclareQueue("b"), enqueue_op(job("a" * 8, "a")), DeclareQueue("c")])
    assert store.queue_names() == ["b", "a", "c"] and store.has_queue("b") and store.queue_size("b") == 0
    assert woken == ["a"]
    store.commit([Pause(["a", "b", "unknown"])])
    assert [store.is_paused(q) for q in ("a", "b", "c", "unknown")] == [True, True, False, False]
    assert store.statistics().paused == frozenset({"a", "b"})
    assert store.queue_head("a") == job("a" * 8, "a")  # paused queues still show their jobs
    store.commit([Resume(["a", "b"])])
    assert woken == ["a", "a"]  # resuming a queue with jobs wakes its fetchers; an empty one does not
    store.commit([Pause(["a"]), RemoveQueue("a")])
    assert store.queue_names() == ["b", "c"] and not store.is_paused("a")
    store.commit([enqueue_op(job("b" * 8, "a"))])
    assert not store.is_paused("a")  # a queue made again starts unpaused


# --- sorted sets --------------------------------------------------------------------------

def test_sets_are_ordered_by_score_then_jid(make_store: MakeStore) -> None:
    due: list[float] = []
    store = make_store(on_due=due.append)
    entries = [(NOW + 30, "c" * 8), (NOW + 10, "b" * 8), (NOW + 10, "a" * 8), (NOW + 20, "d" * 8)]
    store.commit([SetAdd("retries", score, job(jid)) for score, jid in entries])
    assert due == [score for score, _jid in entries]
    ordered = [(NOW + 10, "a" * 8), (NOW + 10, "b" * 8), (NOW + 20, "d" * 8), (NOW + 30, "c" * 8)]
    assert [(score, jid) for score, jid, _job in store.set_entries("retries")] == ordered
    assert [(score, jid) for score, jid, _job in store.set_page("retries", 1, 2)] == ordered[1:3]
    assert [jid for _s, jid, _j in store.set_due("retries", NOW + 20)] == ["a" * 8, "b" * 8, "d" * 8]
    assert store.set_entry("retries", "d" * 8) == (NOW + 20, job("d" * 8))
    assert store.set_entry("retries", "x" * 8) is None and store.set_entry("dead", "d" * 8) is None
    store.commit([SetAdd("retries", NOW + 5, job("c" * 8, note=1))])  # same jid: replaced, moved
    assert store.set_entry("retries", "c" * 8) == (NOW + 5, job("c" * 8, note=1))
    assert store.set_size("retries") == 4 and store.next_due() == NOW + 5
    store.commit([SetRemove("retries", "c" * 8), SetRemove("retries", "gone")])
    assert store.set_size("retries") == 3
    store.commit([SetClear("retries")])
    assert store.set_size("retries") == 0 and store.next_due() is None


def test_each_set_is_its_own(make_store: MakeStore) -> None:
    store = make_store()
    store.commit([SetAdd(name, NOW + i, job(f"{name:x<8}")) for i, name in enumerate(JOB_SETS)])
    for name in JOB_SETS:
        assert [jid for _s, jid, _j in store.set_entries(name)] == [f"{name:x<8}"]
    stats = store.statistics()
    assert (stats.scheduled, stats.retries, stats.dead) == (1, 1, 1)


# --- reservations -------------------------------------------------------------------------

def test_reservations_are_ordered_by_expiry_and_counted_when_done(make_store: MakeStore) -> None:
    due: list[float] = []
    store = make_store(on_due=due.append)
    store.commit([enqueue_op(job(jid)) for jid in ("a" * 8, "b" * 8, "c" * 8)])
    store.commit([Reserve("default", "a" * 8, "w1", NOW, NOW + 300),
                  Reserve("default", "b" * 8, "w2", NOW, NOW + 100),
                  Reserve("default", "c" * 8, "w1", NOW, NOW + 200)])
    assert due == [NOW + 300, NOW + 100, NOW + 200]
    assert store.queue_size("default") == 0
    assert store.reservation("b" * 8) == Reservation(job("b" * 8), "w2", NOW, NOW + 100)
    assert store.reservation("x" * 8) is None
    assert [r.job["jid"] for r in store.reservations()] == ["b" * 8, "c" * 8, "a" * 8]
    assert [r.job["jid"] for r in store.reservation_page(1, 5)] == ["c" * 8, "a" * 8]
    assert [r.job["jid"] for r in store.reservations_due(NOW + 200)] == ["b" * 8, "c" * 8]
    assert store.next_due() == NOW + 100
    store.commit([Extend("b" * 8, NOW + 400), Extend("gone", NOW + 1)])
    assert [r.job["jid"] for r in store.reservations()] == ["c" * 8, "a" * 8, "b" * 8]
    assert store.reservation("b" * 8).expires_at == NOW + 400
    store.commit([Done("b" * 8, DAY, False), Done("c" * 8, DAY, True), Done("a" * 8, "2026-05-29", True)])
    stats = store.statistics()
    assert (stats.working, stats.processed, stats.failures) == (0, 3, 2)
    assert store.daily_counts() == {DAY: (2, 1), "2026-05-29": (1, 1)}


def test_a_released_reservation_ends_uncounted(make_store: MakeStore) -> None:
    """`Release` (an operator's MUTATE on `working`) ends a reservation like `Done` but
    counts it as neither processed nor failed."""
    store = make_store()
    store.commit([enqueue_op(job("a" * 8)), Reserve("default", "a" * 8, "w1", NOW, NOW + 300)])
    store.commit([Release("a" * 8)])
    stats = store.statistics()
    assert (stats.working, stats.processed, stats.failures) == (0, 0, 0)
    assert store.reservation("a" * 8) is None and store.next_due() is None


def test_a_restored_reservation_is_a_reservation(make_store: MakeStore) -> None:
    store = make_store()
    store.commit([RestoreReservation(job("a" * 8), "w1", NOW, NOW + 60)])
    assert list(store.reservations()) == [Reservation(job("a" * 8), "w1", NOW, NOW + 60)]
    assert store.statistics().working == 1


def test_next_due_is_the_earliest_of_sets_and_reservations(make_store: MakeStore) -> None:
    store = make_store()
    assert store.next_due() is None
    store.commit([SetAdd("dead", NOW + 50, job("a" * 8)), SetAdd("scheduled", NOW + 40, job("b" * 8))])
    assert store.next_due() == NOW + 40
    store.commit([RestoreReservation(job("c" * 8), "w1", NOW, NOW + 30)])
    assert store.next_due() == NOW + 30


# --- statistics and FLUSH -----------------------------------------------------------------

def test_statistics(make_store: MakeStore) -> None:
    store = make_store()
    store.commit([DeclareQueue("empty"), *(enqueue_op(job(f"job-{i:04d}", "q")) for i in range(3)),
                  SetAdd("scheduled", NOW, job("s" * 8)), SetAdd("dead", NOW, job("d" * 8)),
                  Reserve("q", "job-0000", "w1", NOW, NOW + 60), Done("job-0000", DAY, True), Pause(["q"])])
    stats = store.statistics()
    assert stats == api.StoreStatistics(queues={"empty": 0, "q": 2}, paused=frozenset({"q"}), scheduled=1,
                                        retries=0, dead=1, working=0, processed=1, failures=1)
    assert list(stats.queues) == ["empty", "q"]
    store.commit([Flush()])
    assert stats.queues == {"empty": 0, "q": 2}  # a frozen copy, not a view


def test_flush_wipes_everything_but_queue_names(make_store: MakeStore) -> None:
    store = make_store()
    tally = Tally(store)
    store.commit([enqueue_op(job("a" * 8)), enqueue_op(job("b" * 8)), SetAdd("retries", NOW, job("c" * 8)),
                  Reserve("default", "a" * 8, "w1", NOW, NOW + 60), Done("a" * 8, DAY, False), Pause(["default"]),
                  RestoreReservation(job("d" * 8), "w1", NOW, NOW + 60), {"op": "tally", "key": "k", "n": 1}])
    store.commit([Flush()])
    assert store.statistics() == api.StoreStatistics(
        queues={"default": 0}, paused=frozenset(), scheduled=0, retries=0, dead=0, working=0, processed=0, failures=0)
    assert store.daily_counts() == {} and store.next_due() is None and tally.counts == {}


# --- state owners -------------------------------------------------------------------------

def test_an_owner_applies_its_ops_and_may_wake_the_timer(make_store: MakeStore) -> None:
    due: list[float] = []
    log = Log()
    store = make_store(sink=log, on_due=due.append)
    tally = Tally(store)
    store.commit([{"op": "tally", "key": "a", "n": 1}, {"op": "tally", "key": "b", "n": 2, "due": NOW + 9}])
    assert tally.counts == {"a": 1, "b": 2} and due == [NOW + 9]
    assert log.records == [[{"op": "tally", "key": "a", "n": 1}, {"op": "tally", "key": "b", "n": 2, "due": NOW + 9}]]


def test_an_op_has_one_owner(make_store: MakeStore) -> None:
    store = make_store()
    Tally(store)
    with pytest.raises(ValueError):
        Tally(store)

    class Thief(Tally):
        op_names = ("zadd",)

    with pytest.raises(ValueError):
        Thief(store)


# --- snapshots and replay -----------------------------------------------------------------

def busy_store(store: Store) -> None:
    """A bit of everything, for the snapshot tests."""
    store.commit([DeclareQueue("empty"), *(enqueue_op(job(f"job-{i:04d}", f"q{i % 3}")) for i in range(20)),
                  SetAdd("scheduled", NOW + 5, job("s" * 8)), SetAdd("retries", NOW + 6, job("r" * 8)),
                  SetAdd("dead", NOW + 7, job("d" * 8)), Reserve("q0", "job-0000", "w1", NOW, NOW + 60),
                  Reserve("q1", "job-0001", "w2", NOW, NOW + 30), Done("job-0001", DAY, True), Pause(["q2"]),
                  {"op": "tally", "key": "k", "n": 7}])


def test_a_snapshot_replays_into_an_equal_store(make_store: MakeStore) -> None:
    store = make_store()
    tally = Tally(store)
    busy_store(store)
    records = store.snapshot()
    expected = observed(store), dict(tally.counts)
    store.commit([enqueue_op(job("late-0001")), {"op": "tally", "key": "late", "n": 1}])  # after: not in it
    fresh_tallies: list[Tally] = []
    fresh = replayed(make_store, records, lambda s: fresh_tallies.append(Tally(s)))
    assert (observed(fresh), fresh_tallies[0].counts) == expected
    assert expected[1] == {"k": 7}


def test_a_queue_observer_learns_the_positions_of_a_replayed_snapshots_jobs(make_store: MakeStore) -> None:
    """A snapshot of a long queue, some of its jobs taken from the head and the middle:
    replayed, an observer is told of every job at the position `queue_job` reads it at (an
    index, e.g. throttles', rebuilds itself so after a restart)."""
    store = make_store()
    store.commit([Enqueue("default", [enqueue_op(job(f"job-{i:04d}")).raws[0] for i in range(700)])])
    store.commit([Drop("default", f"job-{i:04d}") for i in (*range(20), 300, 301, 555)])
    log = QueueLog()
    fresh = replayed(make_store, store.snapshot(), lambda s: s.observe_queues(log))
    told = [(first + offset, jid) for _what, _queue, first, jids in log.events for offset, jid in enumerate(jids)]
    assert [jid for _position, jid in told] == [j["jid"] for j in store.queued("default")]
    assert all(fresh.queue_job("default", position)["jid"] == jid for position, jid in told)
    assert [position for position, _raw in fresh.queue_positioned("default")] == [position for position, _jid in told]


def test_the_op_log_replays_into_an_equal_store(make_store: MakeStore) -> None:
    log = Log()
    store = make_store(sink=log)
    Tally(store)
    busy_store(store)
    store.commit([Resume(["q2"]), Flush(), enqueue_op(job("after-01"))])
    assert observed(replayed(make_store, iter(log.records), Tally)) == observed(store)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_history_replays_from_its_log_and_from_its_snapshot(data: st.DataObject) -> None:
    for make_store in BACKENDS.values():
        log = Log()
        store = make_store(sink=log)
        counter = 0
        for _ in range(data.draw(st.integers(0, 40), label="steps")):
            counter += 1
            jid = f"job-{counter:04d}"
            queues = [q for q in store.queue_names() if store.queue_size(q)]
            reserved = [r.job["jid"] for r in store.reservations()]
            kind = data.draw(st.sampled_from(
                ["enqueue", "zadd", "zrem", "reserve", "drop", "done", "release", "extend", "pause", "resume", "remove",
                 "flush"]))
            score = NOW + data.draw(st.integers(0, 5))
            ops: list[Any]
            if kind == "enqueue":
                ops = [enqueue_op(job(jid, data.draw(st.sampled_from(["a", "b"]))))]
            elif kind == "zadd":
                ops = [SetAdd(data.draw(st.sampled_from(JOB_SETS)), score, job(data.draw(st.sampled_from(["x" * 8, jid]))))]
            elif kind == "zrem":
                ops = [SetRemove(data.draw(st.sampled_from(JOB_SETS)), "x" * 8)]
            elif kind in ("reserve", "drop") and queues:
                queue = data.draw(st.sampled_from(queues))
                head = store.queue_head(queue)["jid"]
                ops = [Reserve(queue, head, "w1", NOW, score) if kind == "reserve" else Drop(queue, head)]
            elif kind in ("done", "release", "extend") and reserved:
                target = data.draw(st.sampled_from(reserved))
                ops = [Done(target, DAY, data.draw(st.booleans())) if kind == "done"
                       else Release(target) if kind == "release" else Extend(target, score)]
            elif kind in ("pause", "resume"):
                names = data.draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3))
                ops = [Pause(names) if kind == "pause" else Resume(names)]
            elif kind == "remove":
                ops = [RemoveQueue(data.draw(st.sampled_from(["a", "b", "c"])))]
            elif kind == "flush":
                ops = [Flush()]
            else:
                continue
            store.commit(ops)
        assert observed(replayed(make_store, iter(log.records))) == observed(store)
        assert observed(replayed(make_store, store.snapshot())) == observed(store)
