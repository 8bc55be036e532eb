"""Reloading the throttles (SIGHUP, protocol/spec.md §11.6) on an in-process server driven by
trio's MockClock: A-T11 (a limit lowered below the slots in use admits nobody until enough
end; an invalid reload keeps the configuration in force and keeps its error), and the slots
recounted from the live reservations when a throttle is added or removed. The real SIGHUP
is tests/server/test_reload_signal.py's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import trio
import trio.testing

from faktory_py.config import Config, NamedLimit, Throttle, ThrottlesConfig, load
from faktory_py.server.app import Server
from helpers.async_client import AsyncClient
from test_throttles_tcp import SLACK, ack, job, named, throttled_server, status, workers


def with_throttles(server: Server, *throttles: Throttle) -> Config:
    """The configuration in force with other throttles: what a re-read conf.d would give."""
    return replace(server.config_reload.config, throttles=ThrottlesConfig(throttles))


async def test_a_lowered_limit_admits_nobody_until_enough_slots_end(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T11: concurrency 4 → 2 with 4 in flight: no grant until in_use <= 1, then the
    waiting FETCH gets its job at once."""
    async with throttled_server(tmp_path, Throttle("q", timeout=60, concurrency=4)) as server:
        producer, *fetchers = await workers(server, 6)
        for i in range(6):
            assert await producer.push(job(f"q-{i}", "q")) == b"OK"
        assert [named(await w.fetch("q")) for w in fetchers[:4]] == ["q-0", "q-1", "q-2", "q-3"]
        assert server.reload(lambda: with_throttles(server, Throttle("q", timeout=60, concurrency=2)))
        state = (await status(producer, "q"))["q"]
        assert (state["concurrency"], state["in_use"], state["waiting"]) == (2, 4, 2)
        waiting = fetchers[4]
        await waiting.send("FETCH q")
        for i, in_use in ((0, 3), (1, 2)):
            assert await ack(fetchers[i], f"q-{i}") == b"OK"
            await trio.sleep(0.5)  # the FETCH stays blocked: in_use is still >= 2
            assert (await status(producer, "q"))["q"]["in_use"] == in_use
            assert (await producer.info())["server"]["fetches_waiting"] == 1
        acked_at = trio.current_time()
        assert await ack(fetchers[2], "q-2") == b"OK"
        assert named(json.loads(await waiting.reply())) == "q-4"
        assert trio.current_time() - acked_at < SLACK
        assert (await status(producer, "q"))["q"]["in_use"] == 2
        for client in [producer, *fetchers]:
            await client.aclose()


async def test_an_invalid_reload_keeps_the_configuration_in_force(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T11: a reload whose conf.d is invalid (a throttle without timeout) or unreadable
    changes nothing, and the error is kept until a good reload."""
    async with throttled_server(tmp_path, Throttle("q", timeout=60, concurrency=1)) as server:
        conf_d = tmp_path / "conf" / "conf.d"
        conf_d.mkdir(parents=True)
        (conf_d / "throttles.toml").write_text("[throttles]\nq = { concurrency = 5 }\n")
        args = ["-d", str(tmp_path / "data"), "-c", str(tmp_path / "conf")]
        assert not server.reload(lambda: load(args, {}))
        throttles = server.config_reload.throttles
        assert throttles.reload_error == "config: throttles.q: timeout is required"
        client = await AsyncClient.connect(server.port, wid="w")
        for i in range(2):
            assert await client.push(job(f"q-{i}", "q")) == b"OK"
        assert named(await client.fetch("q")) == "q-0"
        assert await client.fetch("q") is None  # still concurrency 1
        state = (await status(client, "q"))["q"]
        assert (state["concurrency"], state["reload_error"]) == (1, "config: throttles.q: timeout is required")
        assert "reload_error" not in (await client.info())["faktory"]["throttles"]["q"]  # INFO keeps its shape
        (conf_d / "throttles.toml").write_bytes(b"[throttles]\nq = { concurrency = 5, timeout = 60 } # \xff\n")
        assert not server.reload(lambda: load(args, {}))  # not UTF-8: unreadable, the server goes on
        assert "can't decode byte 0xff" in (throttles.reload_error or "")
        assert (await status(client, "q"))["q"]["concurrency"] == 1
        (conf_d / "throttles.toml").write_text("[throttles]\nq = { concurrency = 5, timeout = 60 }\n")
        assert server.reload(lambda: load(args, {}))
        assert throttles.reload_error is None
        assert (await status(client))["q"]["reload_error"] is None
        assert named(await client.fetch("q")) == "q-1"
        await client.aclose()


async def test_a_raised_limit_wakes_the_waiting_fetches(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A waiting FETCH held back by a full throttle gets its job the moment a reload raises
    the limit, with no clock advance."""
    async with throttled_server(tmp_path, Throttle("q", timeout=60, concurrency=1)) as server:
        producer, first, second = await workers(server, 3)
        for i in range(2):
            assert await producer.push(job(f"q-{i}", "q")) == b"OK"
        assert named(await first.fetch("q")) == "q-0"
        await second.send("FETCH q")
        await producer.wait_fetches_waiting(1)
        reloaded_at = trio.current_time()
        assert server.reload(lambda: with_throttles(server, Throttle("q", timeout=60, concurrency=2)))
        assert named(json.loads(await second.reply())) == "q-1"
        assert trio.current_time() - reloaded_at < SLACK
        for client in (producer, first, second):
            await client.aclose()


async def test_an_added_throttle_counts_the_jobs_in_flight_and_a_removed_one_frees_its_queue(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Slots are recounted from the live reservations: a throttle added while 2 jobs of its
    queue run starts with in_use 2 (its gate now in FETCH, as if configured at start); with
    its worker limit, each wid's slots are counted too. Removing it frees the queue."""
    async with throttled_server(tmp_path) as server:
        producer, a, b = await workers(server, 3)
        for i in range(4):
            assert await producer.push(job(f"q-{i}", "q")) == b"OK"
        assert named(await a.fetch("q")) == "q-0"
        assert named(await b.fetch("q")) == "q-1"
        assert server.reload(lambda: with_throttles(server, Throttle("q", timeout=60, concurrency=2, worker=1)))
        state = (await status(producer, "q"))["q"]
        assert (state["in_use"], state["by_worker"]) == (2, {"w1": 1, "w2": 1})
        assert await a.fetch("q") is None
        assert server.reload(lambda: with_throttles(server))
        assert (await status(producer)) == {}
        assert named(await a.fetch("q")) == "q-2"
        for client in (producer, a, b):
            await client.aclose()


async def test_a_shorter_timeout_ends_the_slots_it_has_passed(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A slot whose new timeout has already passed is free (and its job overdue) at once; the
    due timer learns the new, earlier timeout of the others and wakes a waiting FETCH then."""
    async with throttled_server(tmp_path, Throttle("q", timeout=60, concurrency=2)) as server:
        producer, first, second = await workers(server, 3)
        for i in range(3):
            assert await producer.push(job(f"q-{i}", "q")) == b"OK"
        start = trio.current_time()
        assert named(await first.fetch("q")) == "q-0"
        await trio.sleep_until(start + 9)
        assert named(await second.fetch("q")) == "q-1"
        await trio.sleep_until(start + 10)
        assert server.reload(lambda: with_throttles(server, Throttle("q", timeout=10, concurrency=1)))
        state = (await status(producer, "q"))["q"]
        assert (state["in_use"], state["overdue"]) == (1, 1)  # q-0's slot ended at 10, q-1's ends at 19
        await trio.sleep_until(start + 18)
        await first.send("FETCH q")
        assert named(json.loads(await first.reply())) == "q-2"
        assert abs(trio.current_time() - (start + 19)) < SLACK
        for client in (producer, first, second):
            await client.aclose()


async def test_a_reload_that_adds_a_partition_or_a_limit_classifies_the_queued_jobs_again(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Step 5 of issue 12: a FETCH waiting on a full throttle gets the job of another tenant
    the moment a reload partitions the throttle by tenant; a named limit added by a reload
    counts the job in flight it selects, and holds back the next one."""
    async with throttled_server(tmp_path, Throttle("q", timeout=60, concurrency=1)) as server:
        producer, first, second = await workers(server, 3)
        for name, tenant in (("a-1", "a"), ("a-2", "a"), ("b-1", "b")):
            assert await producer.push(job(name, "q", custom={"tenant": tenant})) == b"OK"
        assert named(await first.fetch("q")) == "a-1"
        await second.send("FETCH q")
        await producer.wait_fetches_waiting(1)
        reloaded_at = trio.current_time()
        assert server.reload(lambda: with_throttles(server, Throttle("q", timeout=60, concurrency=1,
                                                                     partition=("custom.tenant",))))
        assert named(json.loads(await second.reply())) == "b-1"
        assert trio.current_time() - reloaded_at < SLACK
        state = (await status(producer, "q"))["q"]
        assert (state["in_use"], state["waiting"], state["partitions"]) == (2, 1, 2)
        limited = ThrottlesConfig(limits=(NamedLimit("tests", jobtypes=("ThrottleTest",), concurrency=2),))
        assert server.reload(lambda: replace(server.config_reload.config, throttles=limited))
        assert (await status(producer, "tests"))["tests"]["in_use"] == 2
        assert await first.fetch("q") is None
        assert await ack(first, "a-1") == b"OK"
        assert named(await first.fetch("q")) == "a-2"
        for client in (producer, first, second):
            await client.aclose()
