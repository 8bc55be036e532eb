"""The Redis connection of the op log, and the start-up checks (protocol/spec.md §7.1).

A Redis that may evict keys would drop log entries or the lease under memory pressure, so
anything but `maxmemory-policy noeviction` is refused; Redis before 7.0 replicates scripts
verbatim instead of by their effects (and lacks `#!lua` flags), so it is refused too.
A Redis without `appendonly yes` loses the tail of the log on a restart: that is only
warned about, since a replica with `min_replicas` may be what the operator relies on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import coredis
from coredis.connection import TCPLocation
from coredis.exceptions import ResponseError
from coredis.pool import SentinelConnectionPool

from ...config import RedisConfig
from ...errors import FaktoryPyError

log = logging.getLogger("faktory_py.redis")

MIN_VERSION = (7, 0)
#: how long dialing Redis may take before the call fails (and is retried or fails start-up)
CONNECT_TIMEOUT = 2.0


class RedisStoreError(FaktoryPyError):
    """The op log in Redis cannot be used: this Redis, or what is stored in it, does not fit."""


@asynccontextmanager
async def open_redis(config: RedisConfig) -> AsyncIterator[coredis.Redis[bytes]]:
    """A client of the Redis in `config` (bytes in, bytes out), checked for use as an op log.

    With Sentinels (`redis+sentinel://`) each new connection asks them where the master
    is and checks that it answers `ROLE` as a master (coredis's Sentinel pool): after a
    Redis failover the old master's connections fail, the call that failed is sent again
    (server/ha/oplog.py) and goes to the promoted replica."""
    stream_timeout = max(1.0, 2 * config.lease_ttl_ms / 1000)
    if not config.sentinels:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            config.url(), decode_responses=False, connect_timeout=CONNECT_TIMEOUT, stream_timeout=stream_timeout)
        async with client:
            await check_server(client, config)
            yield client
        return
    sentinels = coredis.Sentinel(
        [TCPLocation(host, port) for host, port in config.sentinels], decode_responses=False,
        sentinel_kwargs={"password": config.sentinel_password, "connect_timeout": CONNECT_TIMEOUT,
                         "stream_timeout": CONNECT_TIMEOUT},
        connect_timeout=CONNECT_TIMEOUT, stream_timeout=stream_timeout, db=config.db,
        username=config.username, password=config.password)
    async with sentinels, sentinels.primary_for(config.service) as client:
        await check_server(client, config)
        yield client


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


async def check_server(client: coredis.Redis[bytes], config: RedisConfig) -> None:
    """Refuse a Redis that cannot hold the log safely; warn about settings that weaken it."""
    where = config.safe_url
    server = await client.info("server")
    version = str(server.get("redis_version", "0"))
    if _version(version) < MIN_VERSION:
        raise RedisStoreError(f"{where}: Redis {version} is too old for the op log: 7.0 or later is required")
    try:
        settings = await client.config_get(["maxmemory-policy", "appendonly"])
    except ResponseError as exc:  # CONFIG may be forbidden by an ACL or renamed by a managed service
        log.warning("%s: cannot read CONFIG (%s); make sure maxmemory-policy is noeviction", where, exc)
        settings = {}
    policy = settings.get(b"maxmemory-policy")
    if policy is not None and policy != b"noeviction":
        raise RedisStoreError(f"{where}: maxmemory-policy is {policy.decode()}; the op log needs noeviction "
                              "(an evicted entry or lease would lose acknowledged work)")
    if settings.get(b"appendonly") == b"no":
        log.warning("%s: appendonly is off: a Redis restart loses the end of the op log", where)
    if config.min_replicas == 0:
        log.warning("%s: min_replicas = 0: a Redis failover can lose acknowledged work", where)
    else:
        replication = await client.info("replication")
        replicas = int(replication.get("connected_slaves", 0))
        if replicas < config.min_replicas:
            log.warning("%s: %d replicas connected, min_replicas is %d: replies wait until enough are",
                        where, replicas, config.min_replicas)


async def follow_master(client: coredis.Redis[bytes]) -> None:
    """With Sentinels: ask them which server is the master now, and close this client's
    connections if it is another one than they lead to. Called when too few replicas have
    a write: after a second failover the server this node still writes to may believe it
    is the master, with no replica left, until Sentinel demotes it (up to 10 s later)."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        await pool.get_primary_location()


async def call_replicated(client: coredis.Redis[bytes], script: Any, keys: Sequence[str], args: Sequence[Any],
                          replicas: int, timeout_ms: int) -> tuple[Any, int]:
    """Run `script`, then (with `replicas` > 0) `WAIT replicas timeout_ms` in the same round
    trip on the same connection — WAIT counts only that connection's writes. Returns the
    script's reply and how many replicas have its writes (0 when none were asked for)."""
    if replicas == 0:
        return await script(keys=keys, args=args), 0
    async with client.pipeline(transaction=False) as pipe:
        reply = script(keys=keys, args=args, client=pipe)
        waited = pipe.wait(replicas, timeout_ms)
    return await reply, await waited
