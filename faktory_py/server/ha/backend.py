"""`--store redis://…` for server/app.py: the Redis op log as a backend of `serve()`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from ...config import RedisConfig
from ...store.memory import MemoryStore
from ...store.redis.entries import Position
from ...store.redis.lease import Lease
from ...store.redis.scripts import APPEND
from ..timers import supervised
from .boot import drop_orphan_snapshots, init_log, load_snapshot, replay_log
from .client import open_redis
from .link import ScriptLink
from .oplog import RedisOpLog
from .snapshots import run_snapshots
from .standby import EpochMarker, stand_by

log = logging.getLogger("faktory_py.redis")


@dataclass(eq=False)
class RedisBackend:
    """The op log (the store's sink) and the steps of a node's life on it: `load` replays
    Redis into the store, `take_over` follows the log as a standby until this node holds
    the lease, `tasks` starts the appender, renewer and snapshots."""

    oplog: RedisOpLog
    node_id: str
    compact_min_bytes: int
    cluster_id: bytes = b""
    marker: EpochMarker | None = None

    async def load(self, store: MemoryStore) -> None:
        """Register the `epoch` op, then load the snapshot and the stream up to the head."""
        self.marker = EpochMarker()
        store.register_state(self.marker)
        oplog = self.oplog
        self.cluster_id = await init_log(oplog.client, oplog.keys)
        loaded = await load_snapshot(oplog.client, oplog.keys, store)
        oplog.position, oplog.bytes_since_snapshot = await replay_log(oplog.client, oplog.keys, store, loaded)
        log.info("replayed %d op log entries (%d bytes) after index %d from %s as node %s",
                 oplog.position.index - loaded.index, oplog.bytes_since_snapshot, loaded.index,
                 oplog.config.safe_url, self.node_id)

    async def take_over(self, store: MemoryStore, wire: Callable[[], None]) -> None:
        """Stand by until the lease is this node's; then `wire` the store's live hooks and
        commit the `epoch` marker, the new primary's first entry (protocol/spec.md §7.1)."""
        oplog = self.oplog
        started = trio.current_time()
        oplog.bytes_since_snapshot += await stand_by(oplog, store, self.node_id, self.cluster_id)
        if orphans := await drop_orphan_snapshots(oplog.client, oplog.keys):
            log.info("dropped %d unpublished snapshot generations", orphans)
        if oplog.config.advertise is not None:
            await oplog.client.hset(oplog.keys.advertise, {str(oplog.lease.epoch): oplog.config.advertise})
        oplog.role.role = "primary"
        wire()
        store.commit([{"op": "epoch", "epoch": oplog.lease.epoch}])
        await oplog.flush()  # in the log before anything else is answered
        log.info("took over as primary at index %d, epoch %d, after %.3f s as a standby",
                 oplog.position.index, oplog.lease.epoch, trio.current_time() - started)

    async def primary_address(self) -> tuple[str, int] | None:
        """The `advertise` address of the lease's current holder, if it published one (a
        standby forwards its clients there: server/gate.py)."""
        oplog = self.oplog
        token = await oplog.client.get(oplog.keys.lease)
        epoch = token.partition(b":")[0] if token else b""
        if not epoch.isdigit() or oplog.role.role != "standby":
            return None
        address = await oplog.client.hget(oplog.keys.advertise, epoch)
        if address is None:
            return None
        host, _, port = address.decode().rpartition(":")
        return host.strip("[]"), int(port)

    def info_fields(self) -> dict[str, Any]:
        """INFO `faktory.ha` (only with --store redis://): this node's role, where it is in
        the log and how many entries behind the head, the lease holder, and the epoch the
        log was last written under (its last `epoch` marker)."""
        oplog, role = self.oplog, self.oplog.role
        index = oplog.position.index
        return {"ha": {"role": role.role, "node_id": self.node_id, "index": index,
                       "lag": 0 if role.role == "primary" else max(0, role.head - index),
                       "lease_holder": role.holder, "epoch": self.marker.epoch if self.marker else 0}}

    def tasks(self, nursery: trio.Nursery, store: MemoryStore) -> None:
        nursery.start_soon(self.oplog.run)
        nursery.start_soon(supervised, "snapshots", run_snapshots, self.oplog, store.snapshot,
                           self.compact_min_bytes)


@asynccontextmanager
async def open_redis_backend(config: RedisConfig, node_id: str, compact_min_bytes: int) -> AsyncIterator[RedisBackend]:
    """The Redis backend; its connection lives as long as the context."""
    async with open_redis(config) as client:
        lease = Lease(config.lease_ttl_ms / 1000, config.renew_every_ms / 1000)
        link = ScriptLink(client, APPEND)
        try:
            yield RedisBackend(RedisOpLog(client, link, config, lease, Position()), node_id, compact_min_bytes)
        finally:
            link.drop()
