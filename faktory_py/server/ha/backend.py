"""`--store redis://…` for server/app.py: the Redis op log as a backend of `serve()`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from ...config import RedisConfig
from ...store.memory import MemoryStore
from ...store.redis.entries import Position
from ...store.redis.keys import Keys
from ...store.redis.lease import Lease
from .boot import acquire_lease, drop_orphan_snapshots, init_log, load_snapshot
from .client import open_redis
from ..timers import supervised
from .oplog import RedisOpLog
from .snapshots import run_snapshots

log = logging.getLogger("faktory_py.redis")


@asynccontextmanager
async def open_redis_backend(
    config: RedisConfig, node_id: str, compact_min_bytes: int,
) -> AsyncIterator[tuple[RedisOpLog, Callable[[MemoryStore], Awaitable[None]],
                         Callable[[trio.Nursery, MemoryStore], None]]]:
    """The op log (the store's sink), the `load` that replays Redis into the store and takes
    the lease, and the starter of the background tasks (appender and renewer, which end
    only when fenced; snapshots); the connection lives as long as the context."""
    async with open_redis(config) as client:
        keys = Keys(config.name)
        lease = Lease(config.lease_ttl_ms / 1000, config.renew_every_ms / 1000)
        oplog = RedisOpLog(client, config, lease, Position())

        async def load(store: MemoryStore) -> None:
            cluster_id = await init_log(client, keys)
            loaded = await load_snapshot(client, keys, store)
            oplog.position, replayed = await acquire_lease(client, config, store, lease, node_id, cluster_id,
                                                           loaded)
            oplog.bytes_since_snapshot = replayed
            if orphans := await drop_orphan_snapshots(client, keys):
                log.info("dropped %d unpublished snapshot generations", orphans)
            log.info("replayed %d op log entries (%d bytes) after index %d from %s as node %s",
                     oplog.position.index - loaded.index, replayed, loaded.index, config.safe_url, node_id)

        def tasks(nursery: trio.Nursery, store: MemoryStore) -> None:
            nursery.start_soon(oplog.run)
            nursery.start_soon(supervised, "snapshots", run_snapshots, oplog, store.snapshot, compact_min_bytes)

        yield oplog, load, tasks
