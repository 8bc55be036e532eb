"""A server whose op log is in Redis (`--store redis://…`), in this test's trio run, against
a real redis-server: replies wait for the append, a restart replays Redis into the same
state, a clean stop gives the lease up, a held lease is waited out, and a primary whose
lease moved or ran out acknowledges nothing more and stops (to come back as a standby under
its supervisor: test_redis_takeover.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import coredis
import pytest
import trio

from faktory_py.config import Config, parse_store
from faktory_py.server.app import Server, serve
from faktory_py.server.durability import JournalFailed
from faktory_py.server.ha.client import RedisStoreError
from faktory_py.store.journal import decode_frame
from faktory_py.store.redis.keys import Keys
from helpers.async_client import AsyncClient, PeerClosed
from helpers.redis import RedisServer, job_state, unique_name

LEASE = {"lease_ttl_ms": 2000, "renew_every_ms": 400}


def config_for(tmp_path: Path, url: str, compact_min_bytes: int = Config.compact_min_bytes, **redis: int) -> Config:
    return Config(binding="127.0.0.1:0", data_dir=tmp_path / "unused", conf_dir=tmp_path / "conf",
                  compact_min_bytes=compact_min_bytes, redis=parse_store(url, {**LEASE, **redis}))


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[Server]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, config)
        yield server
        server.shutdown()


def job(jid: str, queue: str = "q") -> dict[str, object]:
    return {"jid": jid, "jobtype": "T", "args": [jid], "queue": queue}


@pytest.fixture
async def r(redis_server: RedisServer) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis(port=redis_server.port, decode_responses=False) as client:
        yield client


@pytest.fixture
def name() -> str:
    return unique_name()


@pytest.fixture
def url(redis_server: RedisServer, name: str) -> str:
    return f"{redis_server.url}?name={name}"


async def test_an_ok_means_the_entry_is_in_redis(tmp_path, url, name, r) -> None:  # type: ignore[no-untyped-def]
    keys = Keys(name)
    with trio.fail_after(20):
        async with serving(config_for(tmp_path, url)) as server:
            client = await AsyncClient.connect(server.port)
            for i in range(5):
                before = await r.xlen(keys.log)
                assert await client.push(job(f"job-{i:08d}")) == b"OK"
                assert await r.xlen(keys.log) == before + 1
            await client.aclose()
    entries = await r.xrange(keys.log)
    assert [e.identifier for e in entries] == [b"%d-0" % i for i in range(1, 7)]
    # the first entry is the primary's epoch marker, appended at its takeover
    assert decode_frame(dict(entries[0].field_values)[b"f"], "entry 1") == [{"op": "epoch", "epoch": 1}]


async def test_a_restart_replays_the_same_state_and_a_clean_stop_releases_the_lease(
        tmp_path, url, name, r) -> None:  # type: ignore[no-untyped-def]
    config = config_for(tmp_path, url)
    with trio.fail_after(30):
        async with serving(config) as server:
            manager, clock = server.dispatcher.manager, server.dispatcher.clock
            for i in range(300):
                now = clock.now()
                manager.push(job(f"job-{i:08d}", f"q{i % 3}"), now)
                if i % 2:
                    fetched, _ = manager.fetch([f"q{i % 3}"], "", now)
                    if i % 4 == 1:
                        manager.ack(fetched["jid"], now)
                    else:
                        manager.fail(fetched["jid"], "E", "boom", [], now)
            manager.pause(["q1"])
            await server.durable.durable(server.durable.appended)
            before = job_state(manager.store)
        assert not await r.exists([Keys(name).lease])  # released: the next start need not wait
        started = trio.current_time()
        async with serving(config) as server:
            assert trio.current_time() - started < 1.0
            assert job_state(server.dispatcher.manager.store) == before
            assert server.dispatcher.info(0)["faktory"]["ha"]["epoch"] == 2  # the restart's takeover marker


async def test_a_held_lease_is_waited_out(tmp_path, url, name, r) -> None:  # type: ignore[no-untyped-def]
    """A restart after kill -9 finds the dead primary's lease: it starts once the key expires."""
    config = config_for(tmp_path, url)
    with trio.fail_after(20):
        async with serving(config):
            pass
        await r.set(Keys(name).lease, "9:dead-node:x", px=800)
        started = trio.current_time()
        async with serving(config) as server:
            assert trio.current_time() - started >= 0.5
            assert await r.get(Keys(name).lease) == server.durable.lease.token


async def test_a_moved_lease_fences_the_primary(tmp_path, url, name, r) -> None:  # type: ignore[no-untyped-def]
    """Another node holds the lease now: the next append is refused inside Redis, the PUSH
    gets no +OK (its connection is closed) and the server stops with an error."""
    keys = Keys(name)
    with trio.fail_after(20):
        with pytest.raises(BaseExceptionGroup) as raised:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve, config_for(tmp_path, url, lease_ttl_ms=60_000,
                                                               renew_every_ms=30_000))
                client = await AsyncClient.connect(server.port)
                assert await client.push(job("job-00000001")) == b"OK"
                await r.set(keys.lease, "99:usurper:x")
                with pytest.raises(PeerClosed):
                    await client.push(job("job-00000002"))
                await client.aclose()
                await trio.sleep_forever()  # serve() ends by itself
    assert raised.group_contains(JournalFailed, match="fenced this node")
    assert await r.xlen(keys.log) == 2 and await r.hget(keys.meta, "head") == b"2"  # the epoch marker, the first PUSH


async def test_a_primary_that_cannot_renew_stops_at_its_deadline(tmp_path, url, name, r) -> None:  # type: ignore[no-untyped-def]
    """Redis stops answering (CLIENT PAUSE): renewals and the append hang; at the local
    deadline (send time + TTL − margin) the node fences itself, with no network call."""
    with trio.fail_after(20):
        with pytest.raises(BaseExceptionGroup) as raised:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve, config_for(tmp_path, url))
                client = await AsyncClient.connect(server.port)
                assert await client.push(job("job-00000001")) == b"OK"
                deadline = server.durable.lease.deadline
                await r.client_pause(3000)
                with pytest.raises(PeerClosed):
                    await client.push(job("job-00000002"))
                assert trio.current_time() >= deadline
                await client.aclose()
                await trio.sleep_forever()
    assert raised.group_contains(JournalFailed, match="fenced this node")
    await r.client_unpause()


async def test_a_redis_that_may_evict_is_refused(tmp_path, url, r) -> None:  # type: ignore[no-untyped-def]
    await r.config_set({"maxmemory-policy": "allkeys-lru"})
    try:
        with trio.fail_after(10), pytest.raises(BaseExceptionGroup) as raised:
            async with serving(config_for(tmp_path, url)):
                pass
        assert raised.group_contains(RedisStoreError, match="maxmemory-policy is allkeys-lru")
    finally:
        await r.config_set({"maxmemory-policy": "noeviction"})


async def test_snapshots_bound_the_stream_and_a_restart_loads_them(
        tmp_path, url, name, r, caplog) -> None:  # type: ignore[no-untyped-def]
    """Past the threshold the primary writes a snapshot to Redis and trims the stream up to
    the previous one; a restart loads the snapshot plus the rest of the stream and has the
    same state. Two generations are kept."""
    keys = Keys(name)
    config = config_for(tmp_path, url, compact_min_bytes=20_000)
    with trio.fail_after(60):
        async with serving(config) as server:
            manager, clock, oplog = server.dispatcher.manager, server.dispatcher.clock, server.durable
            i = 0
            while oplog.snapshots < 4:
                now = clock.now()
                manager.push(job(f"job-{i:08d}", f"q{i % 3}"), now)
                if i % 2:
                    fetched, _ = manager.fetch([f"q{i % 3}"], "", now)
                    manager.ack(fetched["jid"], now)
                i += 1
                if i % 20 == 0:
                    await oplog.durable(oplog.appended)  # as replies would: appends go on meanwhile
            await oplog.durable(oplog.appended)
            before = job_state(manager.store)
            head = oplog.position.index
        meta = await r.hgetall(keys.meta)
        assert int(meta[b"snap_gen"]) >= 4 and int(meta[b"prev_snap_index"]) > 0
        assert await r.xlen(keys.log) < head  # trimmed
        first = (await r.xrange(keys.log, count=1))[0].identifier
        assert int(first.split(b"-")[0]) <= int(meta[b"prev_snap_index"]) + 1  # covers both generations
        assert len([key async for key in r.scan_iter(match=f"{keys.tag}:snap:*")]) == 2
        # a generation written but never published (its writer died before): dropped at start
        orphan = int(await r.hincrby(keys.meta, "snap_next", 1))
        await r.hset(keys.snapshot(orphan), {"0": b"half-written"})
        caplog.set_level(logging.INFO, "faktory_py.redis")
        async with serving(config) as server:
            assert job_state(server.dispatcher.manager.store) == before
            assert server.dispatcher.info(0)["faktory"]["ha"]["epoch"] == 2  # the restart's takeover marker
        assert not await r.exists([keys.snapshot(orphan)])
        assert f"loaded snapshot {keys.snapshot(meta[b'snap_gen'])} at index {int(meta[b'snap_index'])}" in caplog.text


async def test_pipelined_commands_that_arrive_while_a_reply_waits_are_answered(tmp_path, url) -> None:  # type: ignore[no-untyped-def]
    """Every reply waits for an append here, and while it waits the server reads on (to
    notice a peer that leaves): a pipelined command completed by those bytes must be
    answered without waiting for more bytes that the client will never send."""
    with trio.fail_after(20):
        async with serving(config_for(tmp_path, url)) as server:
            client = await AsyncClient.connect(server.port)
            for round_ in range(5):
                lines = [
                    "PUSHB " + json.dumps([job(f"job-{round_}-{call}-{i:06d}") for i in range(1000)])
                    for call in range(2)]
                await client.stream.send_all("".join(line + "\r\n" for line in lines).encode())
                assert [await client.reply(), await client.reply()] == [b"{}", b"{}"]
            await client.aclose()
