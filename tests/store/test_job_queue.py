"""Positions in a queue (store/job_queue.py): a job keeps its position while queued, a job
taken from the middle leaves a hole that no count, page or snapshot shows, and holes that
reach the head go with it."""

from __future__ import annotations

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
    assert not queue and queue.raws() == []


class Counted(bytes):
    """An encoded job that counts how often a scan looks into it."""

    looks = 0

    def __contains__(self, needle: object) -> bool:
        Counted.looks += 1
        return super().__contains__(needle)  # type: ignore[operator]


def test_jobs_taken_one_after_the_other_from_behind_held_ones_are_each_found_at_once() -> None:
    """Journal replay of FETCHes that stepped over 1 000 held-back jobs: each Reserve (no
    `at` read before it) finds its job next to the last one found, not after the 1 000."""
    held = [f"held-{i:04d}" for i in range(1000)]
    taken = [f"took-{i:04d}" for i in range(1000)]
    queue = JobQueue(Counted(encode({"jid": jid, "queue": "q"})) for jid in held + taken)
    Counted.looks = 0
    for i, jid in enumerate(taken):
        assert queue.pop(jid) == ({"jid": jid, "queue": "q"}, 1000 + i)
    assert Counted.looks < 3 * 1000  # the first scan passes the held jobs once, not each time
    assert jids(queue) == held and queue.pop("held-0500")[1] == 500  # wraps around


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
