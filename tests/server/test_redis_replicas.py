"""`min_replicas`: a reply waits until that many Redis replicas have the entry (WAIT in
the append's round trip), and a lease that no replica has does not count, so a primary
whose replicas are gone stops at its deadline instead of acknowledging what a Redis
failover would lose. Real redis-server processes: a master and one replica."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import coredis
import pytest
import trio

from faktory_py.config import Config, parse_store
from faktory_py.server.app import serve
from faktory_py.server.durability import JournalFailed
from faktory_py.store.redis.keys import Keys
from helpers.async_client import AsyncClient, PeerClosed
from helpers.redis import RedisServer, unique_name


@pytest.fixture
def replica(redis_server: RedisServer, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(redis_server.port))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def replica_client(replica: RedisServer) -> AsyncIterator[coredis.Redis[bytes]]:
    """A client of the replica once it is in sync and has written its first AOF: until then
    a replica refuses SIGTERM ("Writing initial AOF, can't exit"), and the test's stop would
    wait out `RedisServer.stop`'s 10 s with this trio run blocked."""
    async with coredis.Redis(port=replica.port, decode_responses=False) as client:
        with trio.fail_after(10):
            while (await client.info("replication")).get("master_link_status") != "up":
                await trio.sleep(0.05)
            while (await client.info("persistence")).get("aof_rewrite_in_progress") != 0:
                await trio.sleep(0.05)
        yield client


def config_for(tmp_path: Path, url: str) -> Config:
    return Config(binding="127.0.0.1:0", data_dir=tmp_path / "unused", conf_dir=tmp_path / "conf",
                  redis=parse_store(url, {"lease_ttl_ms": 2000, "renew_every_ms": 400, "min_replicas": 1,
                                          "wait_timeout_ms": 250}))


def job(jid: str) -> dict[str, object]:
    return {"jid": jid, "jobtype": "T", "args": [], "queue": "q"}


async def test_an_ok_waits_for_the_replica_and_stops_without_it(
        tmp_path, redis_server, replica, replica_client) -> None:  # type: ignore[no-untyped-def]
    name = unique_name()
    keys = Keys(name)
    with trio.fail_after(20):
        with pytest.raises(BaseExceptionGroup) as raised:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve, config_for(tmp_path, f"{redis_server.url}?name={name}"))
                client = await AsyncClient.connect(server.port)
                for i in range(20):
                    assert await client.push(job(f"job-{i:08d}")) == b"OK"
                    assert await replica_client.xlen(keys.log) == i + 2  # (after the epoch marker) the replica had it before the OK
                replica.stop()
                with pytest.raises(PeerClosed):
                    await client.push(job("job-lost-0001"))
                await client.aclose()
                await trio.sleep_forever()  # serve() ends by itself: fenced at its deadline
    assert raised.group_contains(JournalFailed, match="fenced this node")
    assert server.durable.wait_shortfalls > 0
