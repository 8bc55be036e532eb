"""Cron on a whole in-process server driven by trio's MockClock (tests/helpers/inprocess.py), its
wall clock set to a chosen date (`Clock(start=…)`): a tick is handed to a waiting FETCH at its
very instant (the due timer wakes for it, not the 5 s scheduled poll, B-T2), CRON STATUS and
INFO `faktory.cron` over the wire, a restart on a clock 10 minutes behind (B-T6), and a SIGHUP
reload that adds an entry or is rejected while the old entries go on firing (B-T7)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing

from faktory_py.config import ConfigError
from faktory_py.features.cron.feature import Cron
from faktory_py.server.clock import Clock
from faktory_py.tools.client import ReplyError
from helpers.cron import cron_entries, utc
from helpers.inprocess import InProcessServer, inprocess_config, inprocess_server

#: DueTimer runs what is due 1 ms late (server/timers.py); MockClock lands exactly there
DUE_LATE = 0.001
MINUTELY = cron_entries({"schedule": "* * * * *", "name": "minutely",
                         "job": {"type": "Minutely", "queue": "cron", "args": [1]}})


async def wait_until(server: InProcessServer, unix: float) -> None:
    await trio.sleep_until(server.unix_to_trio(unix))


def cron_of(server: InProcessServer) -> Cron:
    cron = server.server.dispatcher.manager.features.find(Cron)
    assert cron is not None
    return cron


async def test_a_tick_reaches_a_waiting_fetch_at_its_instant(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """B-T2 over the wire: booted at 11:59:59Z, a worker's FETCH waiting since 11:59:59.5 gets
    the 12:00:00 job at 12:00:00.001, then the 12:01 one exactly a minute later."""
    config = replace(inprocess_config(tmp_path), cron=MINUTELY)
    async with inprocess_server(config, Clock(start=utc(2027, 1, 4, 11, 59, 59))) as server:
        worker = await server.connect(wid="w1")
        await wait_until(server, utc(2027, 1, 4, 11, 59, 59) + 0.5)
        got = await worker.fetch("cron")
        assert trio.current_time() == server.unix_to_trio(utc(2027, 1, 4, 12)) + DUE_LATE
        assert got is not None and got["jobtype"] == "Minutely" and got["args"] == [1]
        assert got["custom"]["_cron"] == {"id": "minutely", "tick": "2027-01-04T12:00:00Z"}
        assert got["created_at"] == got["enqueued_at"] == "2027-01-04T12:00:00.001Z"
        assert await worker.json_command("ACK", {"jid": got["jid"]}) == b"OK"
        while (got := await worker.fetch("cron")) is None:  # FETCH waits 2 s at most
            pass
        assert trio.current_time() == server.unix_to_trio(utc(2027, 1, 4, 12, 1)) + DUE_LATE
        status = json.loads(await worker.command("CRON STATUS"))
        assert status == [{"id": "minutely", "name": "minutely", "schedule": "* * * * *", "timezone": "UTC",
                           "job": {"args": [1], "jobtype": "Minutely", "queue": "cron"}, "missed_policy": "latest",
                           "overlap": "allow", "source": "", "next_at": "2027-01-04T12:02:00Z",
                           "last_tick": "2027-01-04T12:01:00Z", "last_jid": got["jid"],
                           "counts": {"fired": 2, "missed": 0, "denied": 0, "skipped": 0}, "overdue": False}]
        info = await worker.info()
        assert info["faktory"]["cron"] == {"entries": 1, "fired": 2, "missed": 0, "denied": 0, "skipped": 0}
        with pytest.raises(ReplyError, match="^ERR CRON needs STATUS$"):
            await worker.command("CRON FIRE")
        await worker.aclose()


async def test_no_cron_no_info_key(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with inprocess_server(inprocess_config(tmp_path)) as server:
        client = await server.connect()
        assert "cron" not in (await client.info())["faktory"]
        assert json.loads(await client.command("CRON STATUS")) == []
        await client.aclose()


async def test_a_restart_on_a_clock_stepped_back_does_not_fire_again(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """B-T6: fired at 12:00, stopped; started again on a wall clock reading 11:50:05 (stepped
    back 10 minutes): nothing fires until 12:01, which fires once."""
    config = replace(inprocess_config(tmp_path), cron=MINUTELY)
    async with inprocess_server(config, Clock(start=utc(2027, 1, 4, 11, 59, 30))) as server:
        await wait_until(server, utc(2027, 1, 4, 12, 0, 5))
        assert cron_of(server).totals()["fired"] == 1
    async with inprocess_server(config, Clock(start=utc(2027, 1, 4, 11, 50, 5))) as server:
        client = await server.connect()
        await wait_until(server, utc(2027, 1, 4, 12, 0, 59))
        assert (await client.info())["faktory"]["cron"]["fired"] == 1
        assert (await client.info())["faktory"]["queues"] == {"cron": 1}
        await wait_until(server, utc(2027, 1, 4, 12, 1, 1))
        assert (await client.info())["faktory"]["cron"]["fired"] == 2
        ticks = [job["custom"]["_cron"]["tick"] for job in server.server.dispatcher.manager.store.queued("cron")]
        assert ticks == ["2027-01-04T12:00:00Z", "2027-01-04T12:01:00Z"]
        await client.aclose()


async def test_a_reload_adds_entries_and_a_rejected_one_keeps_them_firing(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """B-T7 through the server's reload: an added entry fires from its next tick on (no
    back-fill); a rejected reload keeps every entry firing and shows its error."""
    config = replace(inprocess_config(tmp_path), cron=MINUTELY)
    hourly = cron_entries({"schedule": "* * * * *", "name": "minutely",
                           "job": {"type": "Minutely", "queue": "cron", "args": [1]}},
                          {"schedule": "30 * * * *", "name": "half", "job": {"type": "Half", "queue": "cron"}})
    async with inprocess_server(config, Clock(start=utc(2027, 1, 4, 12, 31))) as server:
        assert server.server.reload(lambda: replace(config, cron=hourly))
        cron = cron_of(server)
        await trio.testing.wait_all_tasks_blocked()  # the due timer, poked by the reload, ran
        assert sorted(cron.state.entries) == ["half", "minutely"]
        assert cron.tab_shown and cron.reload_error is None

        def invalid() -> object:
            raise ConfigError("config: cron[1]: schedule: Bad minute (in conf.d/cron.toml)")

        assert not server.server.reload(invalid)
        assert cron.reload_error == "config: cron[1]: schedule: Bad minute (in conf.d/cron.toml)"
        await wait_until(server, utc(2027, 1, 4, 13, 30, 1))
        counts = {entry["id"]: entry["counts"]["fired"] for entry in cron.status(server.server.dispatcher.clock.now())}
        assert counts == {"minutely": 59, "half": 1}  # 12:32 … 13:30, and 13:30
