"""Positions in a queue (store/job_queue.py): a job keeps its position while queued, a job
taken from the middle leaves a hole that no count, page or snapshot shows, and holes that
reach the head go with it. The queue packs its jobs into chunks; a model (a plain list of
(position, job)) checks every read against it across chunk boundaries, compactions and
offsets that outgrow their array type."""

from __future__ import annotations

import itertools
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from faktory_py.store import job_queue
from faktory_py.store.job_queue import JobQueue, encode


def queue_of(*jids: str) -> JobQueue:
    return JobQueue(encode({"jid": jid, "queue": "q"}) for jid in jids)


def jids(queue: JobQueue) -> list[str]:
    return [job["jid"] for job in queue]


def test_a_job_taken_from_the_middle_leaves_the_others_their_positions() -> None:
    queue = queue_of("a", "b", "c", "d")
    assert [(position, raw) for position, raw in queue.positioned()][2][0] == 2
    assert queue.at(2) == {"jid": "c", "queue": "q"}
    assert queue.pop("c") == ({"jid": "c", "queue": "q"}, 2)
    assert (len(queue), jids(queue), queue.page(1, 5)) == (3, ["a", "b", "d"], [{"jid": "b", "queue": "q"},
                                                                             {"jid": "d", "queue": "q"}])
    assert queue.at(2) is None and queue.at(3) == {"jid": "d", "queue": "q"}
    assert [position for position, _raw in queue.positioned()] == [0, 1, 3]
    assert queue.pop("b") == ({"jid": "b", "queue": "q"}, 1)  # a scan: `at` did not read it
    assert queue.pop("a") == ({"jid": "a", "queue": "q"}, 0)  # the head, and the holes behind it go
    assert (len(queue), queue.head(), queue.end) == (1, {"jid": "d", "queue": "q"}, 4)
    queue.extend([encode({"jid": "e", "queue": "q"})])
    assert queue.at(4) == {"jid": "e", "queue": "q"}
    assert jids(queue) == ["d", "e"]
    queue.clear()
    assert (len(queue), bool(queue), queue.end) == (0, False, 5)  # positions are never given twice


def test_the_head_pops_with_its_position_after_holes() -> None:
    queue = queue_of("a", "b", "c")
    queue.at(1)
    assert queue.pop("b")[1] == 1
    assert queue.pop("a")[1] == 0
    assert queue.pop("c")[1] == 2
    assert not queue and queue.frozen() == []
    with pytest.raises(KeyError):
        queue.pop("a")


def test_a_queue_emptied_at_every_fetch_goes_on_at_the_next_positions() -> None:
    """A queue whose one job is taken at every turn (workers waiting for each job) starts its
    filling chunk again each time: positions go on, nothing taken shows, across more jobs
    than a chunk holds; a snapshot's full run appended then is a chunk at the next positions."""
    queue = JobQueue()
    turns = 2 * job_queue._SLOTS + 3
    for i in range(turns):
        assert queue.extend([encode({"jid": f"j{i}"})]) == i
        assert queue.head_stored() == ({"jid": f"j{i}"}, encode({"jid": f"j{i}"}))
        assert queue.pop(f"j{i}") == ({"jid": f"j{i}"}, i)
        assert (len(queue), queue.end, queue.frozen(), list(queue.positioned())) == (0, i + 1, [], [])
    run = [encode({"jid": f"p{i}"}) for i in range(job_queue._SLOTS)]
    queue.extend_packed(b"".join(run), list(itertools.accumulate(map(len, run))))
    assert list(queue.positioned()) == list(enumerate(run, turns))
    assert queue.pop("p0") == ({"jid": "p0"}, turns) and queue.head() == {"jid": "p1"}


def test_jobs_taken_one_after_the_other_from_behind_held_ones_are_each_found_at_once(monkeypatch: Any) -> None:
    """Journal replay of FETCHes that stepped over 1 024 held-back jobs: each Reserve (no
    `at` read before it) finds its job next to the last one found, not after the 1 024."""
    held = [f"held-{i:04d}" for i in range(1024)]
    taken = [f"took-{i:04d}" for i in range(1024)]
    queue = JobQueue(encode({"jid": jid, "queue": "q"}) for jid in held + taken)
    searched = []  # slots each search went through, up to the one it found
    holding = job_queue._Chunk.holding

    def counted(chunk: Any, needle: bytes, low: int, high: int) -> Iterator[int]:
        for slot in holding(chunk, needle, low, high):
            searched.append(slot + 1 - low)
            low = slot + 1
            yield slot
        searched.append(high - low)

    monkeypatch.setattr(job_queue._Chunk, "holding", counted)
    for i, jid in enumerate(taken):
        assert queue.pop(jid) == ({"jid": jid, "queue": "q"}, 1024 + i)
    assert sum(searched) < 3 * 2048  # the first scan passes the held jobs once, not each time
    assert jids(queue) == held and queue.pop("held-0500")[1] == 500  # wraps around


def test_a_queue_costs_its_jobs_bytes_and_a_few_more_each() -> None:
    """The point of the chunks: 10 000 queued jobs of ~190 bytes cost their JSON plus a few
    bytes each, not the ~41 a bytes object and a deque slot apiece would add."""
    raws = [encode({"jid": f"bench-m{i:010d}", "queue": "bench-memory", "jobtype": "SomeJob",
                    "created_at": "2026-12-07T04:00:40.074741Z", "enqueued_at": "2026-12-07T04:00:40.074741Z",
                    "args": [1, "string", 3], "retry": 25}) for i in range(10_000)]
    json_bytes = sum(map(len, raws))
    tracemalloc.start()
    try:
        queue = JobQueue()
        for raw in raws:  # one PUSH at a time
            queue.extend([raw])
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(queue) == 10_000
    assert used < json_bytes + 4 * 10_000


def test_offsets_widen_when_a_chunks_bytes_outgrow_their_type(monkeypatch: Any) -> None:
    monkeypatch.setattr(job_queue, "_OFFSETS", ("B", "Q"))  # at most 255 bytes before widening
    big = {"jid": "big", "queue": "q", "args": ["x" * 300]}
    queue = JobQueue([encode({"jid": "a", "queue": "q"}), encode(big), encode({"jid": "c", "queue": "q"})])
    assert jids(queue) == ["a", "big", "c"]
    assert queue.at(1) == big and queue.pop("c") == ({"jid": "c", "queue": "q"}, 2)


def unpacked(runs: list[tuple[bytes, Any]]) -> list[bytes]:
    return [raw for data, ends in runs for raw in job_queue.unpack(data, ends)]


def replayed(runs: list[tuple[bytes, Any]]) -> JobQueue:
    """What replay of a snapshot's packed runs rebuilds."""
    queue = JobQueue()
    for data, ends in runs:
        queue.extend_packed(data, ends.tolist())
    return queue


def test_a_snapshot_is_the_queue_as_it_was_when_taken() -> None:
    queue = JobQueue(encode({"jid": f"j{i}", "queue": "q"}) for i in range(600))
    frozen = queue.frozen()
    queue.extend([encode({"jid": "later", "queue": "q"})])
    for i in range(0, 600, 3):
        queue.pop(f"j{i}")  # holes enough to compact every chunk, and used-up head chunks
    queue.clear()
    assert [job_queue.decode(raw)["jid"] for raw in unpacked(frozen)] == [f"j{i}" for i in range(600)]


def test_replay_of_a_snapshot_takes_its_full_runs_as_they_are() -> None:
    """The head chunk partly taken, a job taken from the middle of the third: replay puts
    the head's run at the end of a chunk of its own, so the next full run becomes a chunk
    as it is (its bytes shared), and appends the rest from the run with the hole on."""
    queue = JobQueue(encode({"jid": f"j{i:04d}", "queue": "q"}) for i in range(1200))
    for i in range(10):
        queue.pop(f"j{i:04d}")
    queue.pop("j0600")
    runs = queue.frozen()
    assert [len(ends) for _data, ends in runs] == [246, 256, 255, 256, 176]
    copy = replayed(runs)
    assert list(copy) == list(queue) and copy.head() == {"jid": "j0010", "queue": "q"}
    assert copy._chunks[1].data is runs[1][0]  # shared, not copied
    copy.extend([encode({"jid": "later", "queue": "q"})])
    where = {job_queue.decode(raw)["jid"]: position for position, raw in copy.positioned()}
    assert where["later"] == where["j1199"] + 1 == copy.end - 1
    assert copy.at(where["j0601"]) == {"jid": "j0601", "queue": "q"} and copy.pop("j0601")[1] == where["j0601"]


# --- the model ---------------------------------------------------------------------------

jid_numbers = st.integers(0, 40)
#: jobs of varied sizes, some holding another job's jid in their args (a scan must decode
#: to tell them apart)
payloads = st.tuples(st.text("ab", max_size=60), st.none() | jid_numbers)


class QueueMachine(RuleBasedStateMachine):
    """JobQueue against a list of (position, job), with 8 slots per chunk so that a few
    dozen jobs cross many chunks (and 2 holes compact one), and 1-byte offsets so that chunks widen."""

    def __init__(self) -> None:
        super().__init__()
        self.queue = JobQueue()
        self.model: list[tuple[int, dict[str, Any]]] = []
        self.end = 0
        self.serial = 0
        #: (what the queue held, its frozen copy), taken some steps back
        self.snapshots: list[tuple[list[dict[str, Any]], Any]] = []

    def jobs(self) -> list[dict[str, Any]]:
        return [job for _position, job in self.model]

    def new_job(self, payload: tuple[str, int | None]) -> dict[str, Any]:
        text, other = payload
        self.serial += 1
        job = {"jid": f"j{self.serial}", "queue": "q", "args": [text]}
        if other is not None:
            job["args"].append({"jid": f"j{other}"})
        return job

    @rule(batch=st.lists(payloads, max_size=9))
    def extend(self, batch: list[tuple[str, int | None]]) -> None:
        jobs = [self.new_job(payload) for payload in batch]
        self.queue.extend(encode(job) for job in jobs)
        for job in jobs:
            self.model.append((self.end, job))
            self.end += 1

    @precondition(lambda self: self.model)
    @rule(data=st.data(), read_first=st.booleans())
    def take(self, data: st.DataObject, read_first: bool) -> None:
        """Take any job: the head, or from the middle found by a scan or after `at`."""
        position, job = self.model.pop(data.draw(st.integers(0, len(self.model) - 1)))
        if read_first:
            assert self.queue.at(position) == job
        assert self.queue.pop(job["jid"]) == (job, position)

    @rule(number=jid_numbers)
    def take_unknown(self, number: int) -> None:
        jid = f"j{number}"
        if jid not in {job["jid"] for job in self.jobs()}:
            with pytest.raises(KeyError):
                self.queue.pop(jid)

    @rule(position=st.integers(-2, 200))
    def read_at(self, position: int) -> None:
        assert self.queue.at(position) == dict(self.model).get(position)

    @rule(start=st.integers(0, 50), count=st.integers(0, 20))
    def page(self, start: int, count: int) -> None:
        assert self.queue.page(start, count) == self.jobs()[start:start + count]

    @rule()
    def freeze(self) -> None:
        self.snapshots.append((self.jobs(), self.queue.frozen()))

    @precondition(lambda self: self.snapshots)
    @rule()
    def read_snapshot(self) -> None:
        jobs, frozen = self.snapshots.pop(0)
        assert list(map(job_queue.decode, unpacked(frozen))) == jobs
        assert list(replayed(frozen)) == jobs

    @rule()
    def clear(self) -> None:
        self.queue.clear()
        self.model.clear()

    @invariant()
    def reads_agree(self) -> None:
        queue = self.queue
        assert (len(queue), bool(queue), queue.end) == (len(self.model), bool(self.model), self.end)
        assert [(position, job_queue.decode(raw)) for position, raw in queue.positioned()] == self.model
        assert list(queue) == self.jobs()
        if self.model:
            assert queue.head() == self.model[0][1]


def test_the_queue_agrees_with_a_list_of_positioned_jobs(monkeypatch: Any) -> None:
    monkeypatch.setattr(job_queue, "_SLOTS", 8)
    monkeypatch.setattr(job_queue, "_OFFSETS", ("B", "Q"))
    run_state_machine_as_test(QueueMachine, settings=settings(
        max_examples=300, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]))


def test_fetching_the_head_decodes_it_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """FETCH reads the head, then its reservation pops it: the pop reuses what the read
    decoded (the very job, not an equal copy), and a head that changed meanwhile is decoded
    anew."""
    from faktory_py.store import job_queue

    decoded: list[bytes] = []
    real = job_queue.decode
    monkeypatch.setattr(job_queue, "decode", lambda raw: decoded.append(raw) or real(raw))
    queue = queue_of("a", "b")
    head = queue.head()
    job, position = queue.pop("a")
    assert (job is head, position, len(decoded)) == (True, 0, 1)
    assert queue.head()["jid"] == "b"
    queue.clear()
    queue.extend([encode({"jid": "c", "queue": "q"})])
    assert queue.pop("c") == ({"jid": "c", "queue": "q"}, 2)  # not the cached "b"
    assert len(decoded) == 3
