"""The due timer never ends the server (issue 10): in-process, on trio's MockClock.

A failure tied to one job (here injected: the encoder, or the expiry's failure handling,
raises for one jid) puts that job in the dead set with errtype `ServerError` while every
other job moves on time; the dead entry replays after a restart. A failure not tied to a
job (the timer's own bookkeeping raising) is logged and retried after a pause that doubles
up to 30 s: no busy loop, and the timer works again once the failure goes away.
Same harness as test_timers.py (see its docstring for why MockClock with real sockets works).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from helpers.async_client import AsyncClient
from faktory_py.core.lifecycle import Manager
from faktory_py.store import api as store_api
from test_timers import SLACK, job, rfc3339, timed_server, trio_time_of, unix_now

pytestmark = pytest.mark.timeout(60)


def fail_for(jid: str, real: Any) -> Any:
    """`real`, except that it raises for the job `jid`."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, dict) and a.get("jid") == jid or getattr(a, "job", {}).get("jid") == jid
               for a in args):
            raise RuntimeError(f"injected failure for {jid}")
        return real(*args, **kwargs)
    return wrapper


def dead_entry(server: Any, jid: str) -> dict[str, Any]:
    found = server.dispatcher.manager.store.set_entry("dead", jid)
    assert found is not None, f"{jid} is not in the dead set"
    return found[1]


async def test_a_scheduled_job_the_timer_cannot_enqueue_goes_to_the_dead_set(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(store_api, "encode", fail_for("poison-0001", store_api.encode))
    async with timed_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        at_unix = unix_now(server) + 60
        for jid in ("poison-0001", "healthy-001"):
            assert await client.push(job(jid, at=rfc3339(at_unix))) == b"OK"
        await trio.sleep_until(trio_time_of(server, at_unix) + SLACK)
        assert (await client.fetch("default"))["jid"] == "healthy-001"
        failure = dead_entry(server, "poison-0001")["failure"]
        assert failure["errtype"] == "ServerError"
        assert failure["message"] == ("faktory_py could not move this job: RuntimeError: "
                                      "injected failure for poison-0001")
        sets = (await client.info())["faktory"]["sets"]
        assert (sets["scheduled"], sets["dead"]) == (0, 1)
        await client.aclose()
    assert "the timers could not move job poison-0001" in caplog.text
    async with timed_server(tmp_path) as server:  # the quarantine was journaled
        assert dead_entry(server, "poison-0001")["failure"]["errtype"] == "ServerError"


async def test_a_reservation_whose_expiry_fails_goes_to_the_dead_set(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Manager, "_failure_ops", fail_for("poison-0002", Manager._failure_ops))
    async with timed_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        for jid in ("poison-0002", "healthy-002"):
            assert await client.push(job(jid, reserve_for=60)) == b"OK"
            assert (await client.fetch("default"))["jid"] == jid
        await trio.sleep(60 + SLACK)
        faktory = (await client.info())["faktory"]
        assert (faktory["sets"]["working"], faktory["sets"]["retries"], faktory["sets"]["dead"]) == (0, 1, 1)
        assert dead_entry(server, "poison-0002")["failure"]["errtype"] == "ServerError"
        assert faktory["tasks"]["Busy"]["reaped"] == 2
        await client.aclose()


async def test_a_timer_failure_not_tied_to_a_job_is_retried_with_a_growing_pause(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[float] = []
    real_next_due = Manager.next_due

    def broken_next_due(self: Manager) -> float | None:
        calls.append(trio.current_time())
        raise RuntimeError("injected timer failure")

    async with timed_server(tmp_path) as server:
        client = await AsyncClient.connect(server.port)
        monkeypatch.setattr(Manager, "next_due", broken_next_due)
        at_unix = unix_now(server) + 1
        assert await client.push(job("late-000001", at=rfc3339(at_unix))) == b"OK"  # pokes the timer
        await trio.sleep(120)
        pauses = [round(b - a, 3) for a, b in zip(calls, calls[1:])]
        assert pauses[:5] == [0.1, 0.2, 0.4, 0.8, 1.6]
        assert max(pauses) == 30.0 and len(calls) < 15  # capped, never a busy loop
        assert "the due timer failed" in caplog.text
        assert await client.command("INFO")  # still serving
        monkeypatch.setattr(Manager, "next_due", real_next_due)
        got = None
        with trio.fail_after(31):  # at the next retry the timer works again
            while got is None:
                got = await client.fetch("default")
        assert got["jid"] == "late-000001"
        await client.aclose()
