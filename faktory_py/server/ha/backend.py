"""`--store redis://…` for server/app.py: the Redis op log as a backend of `serve()`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from ...config import RedisConfig
from ...store.memory import MemoryStore
from ...store.redis.entries import Position
from ...store.redis.keys import Keys
from ...store.redis.lease import Lease
from .boot import acquire_lease, init_log
from .client import open_redis
from .oplog import RedisOpLog

log = logging.getLogger("faktory_py.redis")


@asynccontextmanager
async def open_redis_backend(
    config: RedisConfig, node_id: str,
) -> AsyncIterator[tuple[RedisOpLog, Callable[[MemoryStore], Awaitable[None]]]]:
    """The op log (the store's sink) and the `load` that replays Redis into the store and
    takes the lease; the connection lives as long as the context."""
    async with open_redis(config) as client:
        keys = Keys(config.name)
        lease = Lease(config.lease_ttl_ms / 1000, config.renew_every_ms / 1000)
        oplog = RedisOpLog(client, config, lease, Position())

        async def load(store: MemoryStore) -> None:
            cluster_id = await init_log(client, keys)
            oplog.position = await acquire_lease(client, config, store, lease, node_id, cluster_id, Position())
            log.info("replayed %d op log entries from %s as node %s", oplog.position.index,
                     config.safe_url, node_id)

        yield oplog, load
