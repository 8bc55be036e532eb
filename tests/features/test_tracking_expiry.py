"""In-process checks of job tracking and expiring jobs that need a controlled clock.

(The wire shapes are pinned over TCP in test_ent_jobs_tcp.py; here `now` is a number we
choose, so reservation extension, the 30-minute retention and expiry boundaries are exact.)
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from faktory_py.commands.dispatch import Session
from faktory_py.commands.track import TrackCommand
from faktory_py.features.expiry import ExpiringJobs
from faktory_py.errors import ClientError
from faktory_py.core.lifecycle import Manager
from faktory_py.core.registry import Registry
from faktory_py.store.memory import MemoryStore
from faktory_py.util.timefmt import format_time, parse_time
from faktory_py.features.tracking import TRACK_TTL, JobTracking
from faktory_py.features.unique import UniqueJobs

NOW = 1_700_000_000.0


class Setup:
    def __init__(self) -> None:
        self.journal: list[list[dict[str, Any]]] = []
        self.store = MemoryStore(sink=self._sink)
        self.expiry = ExpiringJobs(self.store)
        self.unique = UniqueJobs(self.store)
        self.tracking = JobTracking(self.store)
        self.manager = Manager(self.store, random.Random(0),
                               Registry(f.feature() for f in [self.expiry, self.unique, self.tracking]))

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.journal.append(ops)
        return len(self.journal)

    def track_set(self, payload: str, now: float) -> None:
        """TRACK SET as the server runs it (commands/track.py parses, the feature plans)."""
        TrackCommand(self.tracking, self.store, SimpleNamespace(now=lambda: now))(Session(conn_id=1), "SET " + payload)


def test_reserve_until_extends_but_never_shortens() -> None:
    s = Setup()
    s.manager.push({"jid": "track-0001", "jobtype": "A", "args": [], "reserve_for": 600,
                    "custom": {"track": 1}}, NOW)
    s.manager.fetch(["default"], "w", NOW)
    assert s.store.reservation("track-0001").expires_at == NOW + 600
    s.track_set('{"jid":"track-0001","reserve_until":"%s"}' % format_time(NOW + 300), NOW)
    assert s.store.reservation("track-0001").expires_at == NOW + 600  # earlier: ignored
    s.track_set('{"jid":"track-0001","reserve_until":"%s"}' % format_time(NOW + 7200), NOW)
    assert s.store.reservation("track-0001").expires_at == NOW + 7200
    assert s.manager.next_due() == NOW + 7200
    s.track_set('{"jid":"track-0001","reserve_until":"%s"}' % format_time(NOW + 10 * 86400), NOW + 1)
    assert s.store.reservation("track-0001").expires_at == NOW + 1 + 86400  # capped at 24 h ahead
    # the reaper honours the extension: nothing expires at the original deadline
    s.manager.run_due(NOW + 601)
    assert s.store.reservation("track-0001") is not None


def test_reserve_until_for_a_job_not_being_worked_only_records_progress() -> None:
    s = Setup()
    s.track_set('{"jid":"nobody-01","percent":5,"reserve_until":"%s"}' % format_time(NOW + 60), NOW)
    assert s.store.statistics().working == 0
    assert s.tracking.progress("nobody-01", NOW) == {
        "jid": "nobody-01", "state": "unknown", "updated_at": format_time(NOW), "percent": 5}


def test_records_are_forgotten_thirty_minutes_after_the_last_update() -> None:
    s = Setup()
    s.manager.push({"jid": "track-0002", "jobtype": "A", "args": [], "custom": {"track": 1}}, NOW)
    assert s.tracking.progress("track-0002", NOW + TRACK_TTL - 1)["state"] == "enqueued"
    s.track_set('{"jid":"track-0002","percent":50}', NOW + 1000)  # an update restarts the clock
    assert s.tracking.progress("track-0002", NOW + 1000 + TRACK_TTL - 1)["percent"] == 50
    later = NOW + 1000 + TRACK_TTL
    assert s.tracking.progress("track-0002", later) == {"jid": "track-0002", "state": "unknown", "updated_at": ""}
    # and the record is pruned by a later update of another job
    s.manager.push({"jid": "track-0003", "jobtype": "A", "args": [], "custom": {"track": 1}}, later)
    assert "track-0002" not in s.tracking.records


def test_track_values_other_than_one_are_not_tracked() -> None:
    s = Setup()
    for i, value in enumerate([0, 2, "1", None, [1]]):
        jid = f"notrack-{i:02d}"
        s.manager.push({"jid": jid, "jobtype": "A", "args": [], "custom": {"track": value}}, NOW)
        assert s.tracking.progress(jid, NOW)["state"] == "unknown"
    s.manager.push({"jid": "yestrack-1", "jobtype": "A", "args": [], "custom": {"track": True}}, NOW)
    assert s.tracking.progress("yestrack-1", NOW)["state"] == "enqueued"


def test_reservation_expiry_marks_failed_then_dead() -> None:
    s = Setup()
    s.manager.push({"jid": "track-0004", "jobtype": "A", "args": [], "retry": 1, "reserve_for": 60,
                    "custom": {"track": 1}}, NOW)
    s.manager.fetch(["default"], "w", NOW)
    s.manager.run_due(NOW + 60)
    assert s.tracking.progress("track-0004", NOW + 60)["state"] == "failed"
    now = s.manager.next_due()
    s.manager.run_due(now)
    s.manager.fetch(["default"], "w", now)
    assert s.tracking.progress("track-0004", now)["state"] == "working"
    s.manager.run_due(now + 60)
    assert s.tracking.progress("track-0004", now + 60)["state"] == "dead"


@pytest.mark.parametrize(("custom", "expected"), [
    ({"expires_in": 30}, NOW + 30),
    ({"expires_in": 2.5}, NOW + 2.5),
    ({"expires_in": 30, "expires_at": format_time(NOW + 10)}, NOW + 10),  # the earlier wins
    ({"expires_in": 30, "expires_at": format_time(NOW + 100)}, NOW + 30),
    ({"expires_in": -1e300}, 0.0),  # clamped to what a timestamp can say
])
def test_expires_in_is_converted_at_push(custom: dict[str, Any], expected: float) -> None:
    s = Setup()
    s.manager.push({"jid": "expire-001", "jobtype": "A", "args": [], "custom": custom}, NOW)
    (job,) = s.store.queued("default")
    assert "expires_in" not in job["custom"]
    assert parse_time(job["custom"]["expires_at"]) == expected


def test_expiry_boundary_is_inclusive_and_counted_once() -> None:
    s = Setup()
    s.manager.push({"jid": "expire-002", "jobtype": "A", "args": [], "custom": {"expires_in": 10}}, NOW)
    s.manager.push({"jid": "expire-003", "jobtype": "A", "args": [], "custom": {"expires_in": 11}}, NOW)
    job, _ = s.manager.fetch(["default"], "w", NOW + 10)
    assert job is not None and job["jid"] == "expire-003"
    assert s.expiry.total_expired == 1
    assert s.expiry.info_fields() == {"total_expired": 1}


def test_expired_unique_job_releases_its_lock() -> None:
    s = Setup()
    raw = {"jid": "expire-004", "jobtype": "A", "args": [], "custom": {"unique_for": 3600, "expires_in": 5}}
    s.manager.push(raw, NOW)
    with pytest.raises(ClientError):
        s.manager.push(dict(raw, jid="expire-005"), NOW + 1)
    assert s.manager.fetch(["default"], "w", NOW + 6) == (None, len(s.journal))
    s.manager.push(dict(raw, jid="expire-006"), NOW + 7)  # the dropped job's lock is gone
