"""Background tasks are supervised: a failure is logged and the task restarted with a
backoff; it never ends the server (server/timers.py `supervised`). Driven by trio's MockClock."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from helpers.async_client import AsyncClient
from faktory_py.server import app as server_module
from faktory_py.config import Config, Timers
from faktory_py.server.app import serve
from faktory_py.server.timers import supervised
from faktory_py.core.workers import WorkerRegistry


async def test_a_failing_task_is_restarted_with_a_doubling_pause(autojump_clock, caplog) -> None:
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(trio.current_time())
        if len(starts) < 8:
            raise RuntimeError("boom")

    await supervised("flaky", flaky)
    gaps = [round(b - a, 3) for a, b in zip(starts, starts[1:])]
    assert gaps == [1, 2, 4, 8, 16, 30, 30]  # capped, so never a busy loop, never for good
    assert caplog.text.count("background task flaky failed; restarting it") == 7


async def test_after_a_long_healthy_run_the_pause_starts_again_at_1_s(autojump_clock) -> None:
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(trio.current_time())
        if len(starts) == 3:
            await trio.sleep(100)
        if len(starts) < 5:
            raise RuntimeError("boom")

    await supervised("flaky", flaky)
    gaps = [round(b - a, 3) for a, b in zip(starts, starts[1:])]
    assert gaps == [1, 2, 101, 2]


async def test_a_task_that_fails_before_it_has_started_is_a_start_up_failure(autojump_clock) -> None:
    async def broken(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
        raise OSError("address in use")

    async with trio.open_nursery() as nursery:
        with pytest.raises(OSError, match="address in use"):
            await nursery.start(supervised, "web UI", broken)


async def test_a_task_restarted_after_it_started_reports_once(autojump_clock) -> None:
    runs = 0

    async def serving(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started(runs)
        if runs < 3:
            raise RuntimeError("crashed while serving")

    async with trio.open_nursery() as nursery:
        assert await nursery.start(supervised, "web UI", serving) == 1
    assert runs == 3


async def test_a_failing_background_task_never_ends_the_server(
    tmp_path: Path, autojump_clock, caplog, monkeypatch
) -> None:
    def reap(self, now):  # a bug in the worker reaper
        raise RuntimeError("reaper bug")

    monkeypatch.setattr(WorkerRegistry, "reap", reap)
    config = Config(binding="127.0.0.1:0", data_dir=tmp_path / "data", conf_dir=tmp_path / "conf", fsync="no",
                    timers=Timers(worker_reap_every=1.0))
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, config)
        client = await AsyncClient.connect(server.port)
        with caplog.at_level(logging.ERROR, logger=server_module.log.name):
            while caplog.text.count("background task worker reaper failed") < 3:
                await trio.sleep(1)
        assert await client.json_command("PUSH", {"jid": "still-serving-1", "jobtype": "T", "args": []}) == b"OK"
        server.shutdown()
