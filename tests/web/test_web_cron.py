"""The Cron tab and history page over HTTP (protocol/spec.md §12.4), against `serve()` with its web
UI on a free port: the tab only while entries exist, one row per entry (schedule and its
reading, zone, job, next run, last fired, counts, source), the red warning of an overdue entry,
the history with each fire's outcome, and "Enqueue now" behind the cross-origin guard."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo
from dataclasses import replace
from pathlib import Path

from faktory_py.features.cron.feature import Cron
from faktory_py.web.pages.cron import countdown
from faktory_py.util.timefmt import parse_time
from helpers.cron import cron_entries
from test_web_http import cells, config, request


def row(body: str, entry_id: str) -> dict[str, str]:
    return cells(body.replace(f'<tr data-id="{entry_id}"', f'<tr data-queue="{entry_id}"'), entry_id)


async def test_the_cron_tab_and_history(tmp_path: Path, running) -> None:
    plain = await running(config(tmp_path / "plain"))
    assert 'href="/cron"' not in (await request(plain, "GET", "/")).body
    assert (await request(plain, "GET", "/cron")).status == 404

    entries = cron_entries({"schedule": "0 3 * * *", "timezone": "Europe/Paris", "name": "nightly",
                            "job": {"type": "Nightly", "queue": "low", "args": ["<x>"]}},
                           {"schedule": "@every 1h"})
    server = await running(replace(config(tmp_path / "cron"), cron=entries))
    nightly, hourly = entries.entries
    page = await request(server, "GET", "/cron")
    assert page.status == 200
    assert '<a href="/cron" class="active" aria-current="page">Cron</a>' in page.body
    cron = server.dispatcher.manager.features.find(Cron)
    assert cron is not None
    now = server.dispatcher.clock.now()
    next_at = cron.describe("nightly", now)["next_at"]
    local = datetime.fromtimestamp(parse_time(next_at), ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d %H:%M:%S %Z")
    cells_ = row(page.body, "nightly")
    assert cells_.pop("next-run").startswith(f"{next_at} {local} in ")
    assert cells_ == {
        "schedule": "0 3 * * * At 03:00 every day", "timezone": "Europe/Paris", "jobtype": "Nightly", "queue": "low",
        "args": '["\\u003cx\\u003e"]', "last-fired": "—", "fired": "0", "missed": "0", "skipped": "0",
        "denied": "0", "source": ""}
    assert row(page.body, hourly.id)["schedule"] == "@every 1h Every 1h"
    assert "<x>" not in page.body and "overdue" not in page.body
    assert re.findall(r"<script(?![^>]*\bsrc=)|<style|\sstyle=", page.body) == []

    # Enqueue now: refused cross-origin, else one job in the history, the schedule untouched
    refused = await request(server, "POST", "/cron/nightly", "action=enqueue",
                            {"Sec-Fetch-Site": "cross-site"})
    assert refused.status == 403
    done = await request(server, "POST", "/cron/nightly", "action=enqueue", {"Sec-Fetch-Site": "same-origin"})
    assert (done.status, done.headers["location"]) == (302, "/cron/nightly")
    assert server.dispatcher.manager.store.queue_size("low") == 1
    detail = await request(server, "GET", "/cron/nightly")
    assert "(enqueued now)" in detail.body and "pending" in detail.body
    assert cron.describe("nightly", server.dispatcher.clock.now())["next_at"] == next_at
    assert (await request(server, "GET", "/cron/nothing")).status == 404

    # an entry whose next tick is more than 60 s past is flagged in red (a timer that stopped,
    # Faktory #282: simulated by moving the entry's state two hours back behind the timer's back)
    cron.state.entries[hourly.id].after -= 7200
    cron._next.clear()
    flagged = await request(server, "GET", "/cron")
    assert "overdue: the timer has not fired it" in row(flagged.body, hourly.id)["next-run"]


def test_countdowns() -> None:
    assert [countdown(s) for s in (0, 59, 61, 3600 * 5 + 65, 86400 * 2 + 3600 * 3 + 5, -90)] == [
        "in 0s", "in 59s", "in 1m 1s", "in 5h 1m", "in 2d 3h", "overdue by 1m 30s"]
