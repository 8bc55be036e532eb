"""Cron firing (protocol/spec.md §12.3) on the server's semantics without I/O (tests/helpers/cron.py:
the due timer's loop run by hand at a clock the test sets, restarts from the journal or a
snapshot): B-T2 (the job of each tick, through the PUSH path), B-T3 (a restart never fires a
tick again), B-T4 (missed-tick policies), B-T5 (DST in America/New_York), B-T6 (a clock
stepped back), B-T7 (reloads), B-T8 (NOTUNIQUE is `denied`), B-T9 (`overlap = "skip"`),
B-T10 (`@every` on its grid), FLUSH, and the outcome of each fire in the history."""

from __future__ import annotations

import pytest

from faktory_py.config import CronConfig
from faktory_py.util.timefmt import format_time, parse_time
from helpers.cron import CronServer, cron_entries, job_of, utc

MINUTELY = {"schedule": "* * * * *", "job": {"type": "Minutely", "queue": "critical", "args": ["a", 1],
                                              "retry": 3, "reserve_for": 600, "custom": {"expires_in": 60, "k": "v"}}}


def test_each_minute_enqueues_one_job_built_from_the_entry() -> None:
    """B-T2: booted at 11:59:59Z, `* * * * *` fires at 12:00:00 (the timer's 1 ms), then
    once a minute; the job has the entry's jobtype/queue/args/retry/reserve_for/custom, a
    fresh jid, created_at = enqueued_at = fire time, `expires_in` become `expires_at`, and
    `custom._cron` naming the entry and the tick."""
    config = cron_entries(MINUTELY)
    [entry] = config.entries
    server = CronServer(config, utc(2026, 3, 7, 11, 59, 59))
    server.run_timer()
    assert server.pushed() == []
    server.advance(utc(2026, 3, 7, 12, 0, 0) - 0.001)
    assert server.pushed() == []
    server.advance(utc(2026, 3, 7, 12, 2, 30))
    assert server.fired() == [utc(2026, 3, 7, 12, m) for m in range(3)]
    first, second, third = server.jobs()
    fire = utc(2026, 3, 7, 12) + 0.001
    assert first == {"retry": 3, "custom": {"expires_in": 60, "k": "v", "_cron": {
                         "id": entry.id, "tick": "2026-03-07T12:00:00Z"}, "expires_at": format_time(fire + 60)},
                     "jid": first["jid"], "queue": "critical", "jobtype": "Minutely", "created_at": format_time(fire),
                     "enqueued_at": format_time(fire), "args": ["a", 1], "reserve_for": 600} | {
                         "custom": first["custom"]}
    assert first["custom"]["expires_at"] == format_time(fire + 60)
    assert first["custom"]["_cron"] == {"id": entry.id, "tick": "2026-03-07T12:00:00Z"}
    assert [parse_time(job["created_at"]) - fire for job in (first, second, third)] == pytest.approx([0, 60, 120])
    assert len({job["jid"] for job in (first, second, third)}) == 3
    assert job_of(entry)["custom"] == {"expires_in": 60, "k": "v"}  # the canonical entry is untouched


@pytest.mark.parametrize("snapshot", [False, True], ids=["journal", "snapshot"])
def test_a_restart_never_fires_a_tick_again(snapshot: bool) -> None:
    """B-T3: fired at 12:00, the server stops at 12:00:00.2 and starts at 12:00:30 (from its
    journal, or a snapshot): no second 12:00 job; 12:01 fires once."""
    config = cron_entries(MINUTELY)
    server = CronServer(config, utc(2026, 3, 7, 11, 59, 59))
    server.advance(utc(2026, 3, 7, 12, 0, 0.2) + 0.2)
    assert server.fired() == [utc(2026, 3, 7, 12)]
    again = server.restart(config, utc(2026, 3, 7, 12, 0, 30), snapshot=snapshot)
    booted = len(again.fired())
    again.advance(utc(2026, 3, 7, 12, 1, 30))
    assert again.fired()[booted:] == [utc(2026, 3, 7, 12, 1)]
    assert [job["custom"]["_cron"]["tick"] for job in again.jobs()] == ["2026-03-07T12:00:00Z", "2026-03-07T12:01:00Z"]


HOURLY = {"schedule": "0 * * * *"}


@pytest.mark.parametrize(("policy", "lateness", "fired", "missed"), [
    ("latest", 3600, [utc(2026, 3, 7, 12)], 2),
    ("skip", 3600, [], 3),
    ("all", 3600, [utc(2026, 3, 7, h) for h in (10, 11, 12)], 0),
    ("latest", 600, [], 3),
])
def test_missed_ticks_follow_the_policy(policy: str, lateness: int, fired: list[float], missed: int) -> None:
    """B-T4: `0 * * * *`, down 09:30–12:10Z: `latest` fires 12:00 at boot, `skip` nothing
    until 13:00, `all` 10:00, 11:00, 12:00 in order; `latest` with `max_lateness = 600`
    fires nothing and counts 3 missed."""
    config = cron_entries({**HOURLY, "missed": policy, "max_lateness": lateness})
    [entry] = config.entries
    server = CronServer(config, utc(2026, 3, 7, 9, 0))
    server.advance(utc(2026, 3, 7, 9, 30))
    assert server.fired() == [utc(2026, 3, 7, 9)] or server.fired() == []
    before = server.fired()
    again = server.restart(config, utc(2026, 3, 7, 12, 10))
    assert again.fired()[len(before):] == fired
    assert again.cron.describe(entry.id, again.now)["counts"]["missed"] == missed
    again.advance(utc(2026, 3, 7, 13, 0, 1))
    assert again.fired()[len(before):] == [*fired, utc(2026, 3, 7, 13)]
    jobs = [job["custom"]["_cron"]["tick"] for job in again.jobs()]
    assert jobs == [format_time(tick) for tick in [*before, *fired, utc(2026, 3, 7, 13)]]


def test_all_fires_at_most_max_catch_up_the_most_recent() -> None:
    config = cron_entries({**HOURLY, "missed": "all", "max_catch_up": 2})
    [entry] = config.entries
    server = CronServer(config, utc(2026, 3, 7, 0, 30))
    server.run_timer()
    again = server.restart(config, utc(2026, 3, 7, 5, 30))
    assert again.fired() == [utc(2026, 3, 7, 4), utc(2026, 3, 7, 5)]
    assert again.cron.describe(entry.id, again.now)["counts"] == {"fired": 2, "missed": 3, "denied": 0, "skipped": 0}


NEW_YORK = "America/New_York"


@pytest.mark.parametrize(("schedule", "start", "end", "expected"), [
    # spring forward: 02:30 does not exist on 2026-03-08; it fires once, at 03:00 EDT
    ("30 2 * * *", utc(2026, 3, 7, 17), utc(2026, 3, 9, 12),
     [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]),
    # fall back: 01:30 happens twice on 2026-11-01; it fires once, at the first (EDT)
    ("30 1 * * *", utc(2026, 10, 31, 16), utc(2026, 11, 2, 12),
     [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]),
    # */30 follows real time: 01:00 and 01:30 EDT, then 01:00 and 01:30 EST
    ("*/30 * * * *", utc(2026, 11, 1, 4, 45), utc(2026, 11, 1, 7, 10),
     [utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 30),
      utc(2026, 11, 1, 7)]),
])
def test_dst_vectors_in_new_york(schedule: str, start: float, end: float, expected: list[float]) -> None:
    """B-T5: the DST vectors of protocol/spec.md §12.2, the timer running through them."""
    server = CronServer(cron_entries({"schedule": schedule, "timezone": NEW_YORK}), start)
    server.advance(end)
    assert server.fired() == expected


def test_a_clock_stepped_back_does_not_fire_again() -> None:
    """B-T6: the clock steps back 10 minutes after the 12:00 fire: 12:00 is not fired again,
    nothing fires until 12:01, which fires once (a restart on a clock still behind too)."""
    config = cron_entries({"schedule": "* * * * *"})
    server = CronServer(config, utc(2026, 3, 7, 11, 59, 30))
    server.advance(utc(2026, 3, 7, 12, 0, 5))
    assert server.fired() == [utc(2026, 3, 7, 12)]
    server.step_clock(utc(2026, 3, 7, 11, 50, 5))
    assert server.manager.next_due() == utc(2026, 3, 7, 12, 1)
    server.advance(utc(2026, 3, 7, 12, 0, 30))
    assert server.fired() == [utc(2026, 3, 7, 12)]
    again = server.restart(config, utc(2026, 3, 7, 11, 55))
    again.advance(utc(2026, 3, 7, 12, 1, 30))
    assert again.fired() == [utc(2026, 3, 7, 12), utc(2026, 3, 7, 12, 1)]


def test_reloads_add_remove_and_change_entries() -> None:
    """B-T7: an added entry does not back-fill; a removed one stops and its state goes; a
    changed unnamed entry is a new one; a named entry keeps its history through a change."""
    old = cron_entries({"schedule": "*/10 * * * *", "job": {"type": "Kept"}, "name": "kept"},
                       {"schedule": "*/10 * * * *", "job": {"type": "Removed"}},
                       {"schedule": "*/10 * * * *", "job": {"type": "Changed"}})
    kept, removed, changed = old.entries
    server = CronServer(old, utc(2026, 3, 7, 11, 55))
    server.advance(utc(2026, 3, 7, 12, 5))
    assert sorted(server.fired()) == [utc(2026, 3, 7, 12)] * 3
    new = cron_entries({"schedule": "*/15 * * * *", "job": {"type": "Kept"}, "name": "kept"},
                       {"schedule": "*/10 * * * *", "job": {"type": "Changed", "args": [1]}},
                       {"schedule": "0 * * * *", "job": {"type": "Added"}})
    kept2, changed2, added = new.entries
    assert kept2.id == kept.id and changed2.id != changed.id
    server.features.replace(server.cron.reconfigure(new.entries, new.warnings))
    server.run_timer()
    assert set(server.cron.state.entries) == {kept.id, changed2.id, added.id}
    assert server.cron.describe(kept.id, server.now)["last_tick"] == "2026-03-07T12:00:00Z"
    assert server.cron.history(kept.id)[0]["outcome"] == "pending"
    server.advance(utc(2026, 3, 7, 13, 0, 1))
    assert server.fired(kept2) == [utc(2026, 3, 7, 12)] + [utc(2026, 3, 7, 12, m) for m in (15, 30, 45)] + [
        utc(2026, 3, 7, 13)]
    assert server.fired(changed2) == [utc(2026, 3, 7, 12, m) for m in (10, 20, 30, 40, 50)] + [utc(2026, 3, 7, 13)]
    assert server.fired(added) == [utc(2026, 3, 7, 13)]  # no back-fill of 12:00
    assert server.fired(removed) == [utc(2026, 3, 7, 12)]
    # and a restart on the reloaded configuration keeps all of it
    again = server.restart(new, utc(2026, 3, 7, 13, 0, 30))
    assert again.fired() == server.fired()


def test_a_denied_push_advances_the_tick() -> None:
    """B-T8: `unique_for = 3600` on a minutely entry whose job is never fetched: minute 2 is
    `denied`, the entry goes on to minute 3 (no retry loop), denied again."""
    config = cron_entries({"schedule": "* * * * *", "job": {"type": "U", "custom": {"unique_for": 3600}}})
    [entry] = config.entries
    server = CronServer(config, utc(2026, 3, 7, 11, 59, 30))
    server.advance(utc(2026, 3, 7, 12, 2, 30))
    assert server.fired() == [utc(2026, 3, 7, 12)]
    status = server.cron.describe(entry.id, server.now)
    assert status["counts"] == {"fired": 1, "missed": 0, "denied": 2, "skipped": 0}
    assert status["last_tick"] == "2026-03-07T12:02:00Z" and status["next_at"] == "2026-03-07T12:03:00Z"
    assert [h["outcome"] for h in server.cron.history(entry.id)] == ["denied", "denied", "pending"]
    assert len(server.jobs()) == 1


def test_overlap_skip_skips_while_the_last_job_is_live() -> None:
    """B-T9: while the previous fire's job is reserved, the next tick is `skipped`; once it
    is ACKed the next tick fires."""
    config = cron_entries({"schedule": "* * * * *", "overlap": "skip", "job": {"type": "Slow"}})
    [entry] = config.entries
    server = CronServer(config, utc(2026, 3, 7, 11, 59, 30))
    server.advance(utc(2026, 3, 7, 12, 0, 30))
    job, _ = server.manager.fetch(["default"], "w1", server.now)
    assert job is not None
    server.advance(utc(2026, 3, 7, 12, 1, 30))
    assert server.cron.describe(entry.id, server.now)["counts"]["skipped"] == 1
    server.manager.ack(job["jid"], server.now)
    server.advance(utc(2026, 3, 7, 12, 2, 30))
    assert server.fired() == [utc(2026, 3, 7, 12), utc(2026, 3, 7, 12, 2)]
    # a queued (unfetched) job counts as live too
    server.advance(utc(2026, 3, 7, 12, 3, 30))
    assert server.fired()[-1] == utc(2026, 3, 7, 12, 2)
    assert [h["outcome"] for h in server.cron.history(entry.id)] == ["skipped", "pending", "skipped", "success"]


def test_every_15m_ticks_on_the_quarter_hours_whatever_the_boot_time() -> None:
    """B-T10: booted at 09:07:33, `@every 15m` fires at 09:15, 09:30, 09:45, 10:00."""
    server = CronServer(cron_entries({"schedule": "@every 15m"}), utc(2026, 3, 7, 9, 7, 33))
    server.advance(utc(2026, 3, 7, 10, 5))
    assert server.fired() == [utc(2026, 3, 7, 9, m) for m in (15, 30, 45)] + [utc(2026, 3, 7, 10)]


def test_flush_wipes_the_history_and_does_not_back_fill() -> None:
    config = cron_entries({"schedule": "*/5 * * * *", "missed": "all"})
    [entry] = config.entries
    server = CronServer(config, utc(2026, 3, 7, 11, 59))
    server.advance(utc(2026, 3, 7, 12, 7))
    server.manager.flush()
    server.run_timer()
    assert server.cron.history(entry.id) == [] and server.cron.describe(entry.id, server.now)["last_tick"] is None
    server.advance(utc(2026, 3, 7, 12, 10, 30))
    assert server.fired() == [utc(2026, 3, 7, 12), utc(2026, 3, 7, 12, 5), utc(2026, 3, 7, 12, 10)]
    again = server.restart(config, utc(2026, 3, 7, 12, 11))
    assert again.fired() == server.fired()


def test_the_history_records_how_each_job_ended() -> None:
    """success (ACK), failed then dead (FAILed again after its one retry), expired (dropped at
    FETCH past `expires_at`), pending (queued or reserved), "enqueue now" without touching the
    schedule, deleted (QUEUE REMOVE); a restart keeps it all."""
    config = cron_entries({"schedule": "* * * * *", "job": {"type": "T", "retry": 1, "custom": {"expires_in": 100}}})
    [entry] = config.entries
    server = CronServer(config, utc(2026, 3, 7, 11, 59, 30))
    server.advance(utc(2026, 3, 7, 12, 0, 10))
    job, _ = server.manager.fetch(["default"], "w", server.now)
    server.manager.ack(job["jid"], server.now)
    server.advance(utc(2026, 3, 7, 12, 1, 10))
    job, _ = server.manager.fetch(["default"], "w", server.now)
    server.manager.fail(job["jid"], "E", "boom", [], server.now)
    assert server.cron.history(entry.id)[0]["outcome"] == "failed"
    server.advance(utc(2026, 3, 7, 12, 2, 10))  # the retry (15–44 s later) is queued before 12:02's job
    retried, _ = server.manager.fetch(["default"], "w", server.now)
    assert retried["jid"] == job["jid"]
    server.manager.fail(job["jid"], "E", "boom", [], server.now)
    server.store.commit(server.cron.enqueue_now(entry.id, server.now))
    server.advance(utc(2026, 3, 7, 12, 3, 45))  # 12:02's job expired at 12:03:40
    manual, _ = server.manager.fetch(["default"], "w", server.now)
    assert manual["custom"]["_cron"] == {"id": entry.id, "tick": None}
    outcomes = [(h["tick"], h["outcome"]) for h in server.cron.history(entry.id)]
    assert outcomes == [("2026-03-07T12:03:00Z", "pending"), (None, "pending"), ("2026-03-07T12:02:00Z", "expired"),
                        ("2026-03-07T12:01:00Z", "dead"), ("2026-03-07T12:00:00Z", "success")]
    assert server.cron.describe(entry.id, server.now)["counts"]["fired"] == 4
    again = server.restart(config, server.now)
    assert again.cron.history(entry.id) == server.cron.history(entry.id)
    # QUEUE REMOVE deletes the 12:03 job that never ran
    again.manager.remove(["default"], again.now)
    assert again.cron.history(entry.id)[0]["outcome"] == "deleted"


def test_a_job_failed_with_retry_0_is_discarded() -> None:
    config = cron_entries({"schedule": "* * * * *", "job": {"type": "T", "retry": 0}})
    [entry] = config.entries
    server = CronServer(config, utc(2026, 3, 7, 11, 59, 30))
    server.advance(utc(2026, 3, 7, 12, 0, 10))
    job, _ = server.manager.fetch(["default"], "w", server.now)
    server.manager.fail(job["jid"], "E", "boom", [], server.now)
    assert [h["outcome"] for h in server.cron.history(entry.id)] == ["discarded"]


def test_info_counts_only_when_entries_exist() -> None:
    server = CronServer(CronConfig(), utc(2026, 3, 7, 12))
    assert server.cron.info_fields() == {}
    server = CronServer(cron_entries({"schedule": "* * * * *"}, {"schedule": "@every 30s"}), utc(2026, 3, 7, 12))
    server.advance(utc(2026, 3, 7, 12, 1, 10))
    assert server.cron.info_fields() == {"cron": {"entries": 2, "fired": 3, "missed": 0, "denied": 0, "skipped": 0}}
