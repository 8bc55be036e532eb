"""A hot standby (protocol/spec.md §7.1): while another node holds the lease, follow the
op log into this node's store, so that taking over costs one lease expiry and the few
entries appended since the last read, not a full replay.

The standby blocks in `XREAD BLOCK` from its position (index, epoch, frame CRC) and
applies each entry as it arrives, with the store's sink refusing any commit (a standby
that commits is a bug: server/app.py wires the live sink and hooks only at the takeover).
It resyncs — wipes the store and loads the snapshot and the stream again — when its
position no longer fits the log: an entry that does not follow it (the stream was
trimmed past it, or the log was recreated), or a head at its index with another CRC.

The block is at most the time left on the holder's lease (and LEASE_POLL), so the
standby tries ACQUIRE as soon as the key is gone; Redis grants it only at the head.

A Redis error (Redis restarting, or failing over under Sentinel) does not end a standby:
it reads on from its position after a pause (a replay moves the position with each batch
it applies), and resyncs first when the error cut a resync short.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import coredis
import trio
from coredis.exceptions import RedisError

from ...store.api import Flush, RemoveQueue
from ...store.journal import JournalCorrupt
from ...store.memory import MemoryStore
from ...store.redis.entries import Position, decode_entry, entry_id
from ...store.redis.keys import Keys
from ...store.redis.scripts import ACQUIRE, RENEW, Acquired, acquire_keys, lease_keys, parse_acquire
from .boot import load_snapshot, replay_log
from .client import RedisStoreError, call_replicated

if TYPE_CHECKING:
    from .oplog import RedisOpLog

log = logging.getLogger("faktory_py.redis")

#: the longest a standby blocks in one XREAD (well under the client's stream timeout)
BLOCK_MS = 500
#: how long a standby blocks when the holder's lease has no TTL left to go by (ms)
LEASE_POLL_MS = 250
#: entries read per XREAD
TAIL_BATCH = 512
#: the pause before a standby reads again after a Redis error
RETRY_PAUSE = 0.25


@dataclass
class Role:
    """What INFO (`faktory.ha`) and `/health/primary` report of this node's place in the cluster."""

    role: str = "standby"
    #: the log's head as last read from Redis (the primary: what it appended)
    head: int = 0
    #: the lease holder's node id as last seen
    holder: str = ""

    def seen_holder(self, token: bytes) -> None:
        """Record the holder named by a lease token `<epoch>:<node_id>:<nonce>`."""
        self.holder = token.decode(errors="replace").partition(":")[2].rpartition(":")[0]


class EpochMarker:
    """The `epoch` op's owner: a new primary appends `{"op": "epoch", "epoch": n}` first
    thing, so the log records where each epoch begins and a store rebuilt from it knows
    the epoch it was last written under (INFO). FLUSH keeps it: it is not job state."""

    op_names = ("epoch",)

    def __init__(self) -> None:
        self.epoch = 0

    def apply(self, op: dict[str, Any]) -> None:
        self.epoch = int(op["epoch"])

    def snapshot(self) -> Iterator[dict[str, Any]]:
        return iter([{"op": "epoch", "epoch": self.epoch}] if self.epoch else [])

    def flush(self) -> None:
        """The epoch survives FLUSH."""


async def stand_by(oplog: RedisOpLog, store: MemoryStore, node_id: str, cluster_id: bytes) -> int:
    """Follow the log from `oplog.position` until this node holds the lease, then return
    (with `oplog.position` where the lease was granted, `oplog.lease` granted); returns the
    frame bytes read on the way. ACQUIRE succeeds only at the head, atomically with the
    check; with `min_replicas` the grant counts only once that many replicas have it (as
    for renewals, server/ha/oplog.py)."""
    client, config, keys, role = oplog.client, oplog.config, oplog.keys, oplog.role
    acquire, renew = client.register_script(ACQUIRE), client.register_script(RENEW)
    need, timeout = config.min_replicas, config.wait_timeout_ms
    nonce = secrets.token_hex(8)
    waiting_for: bytes | None = None
    #: where the last resync for a mismatch with the head left this node: a mismatch there
    #: again is the log's own inconsistency, not this node's
    resynced: Position | None = None
    replayed = 0
    #: a resync that a Redis error cut short (the store wiped, or half loaded, while
    #: `oplog.position` still says where it was): done again before anything else
    reload: JournalCorrupt | None = None
    #: Redis errors in a row (a failover takes seconds: only the first one is a warning)
    failures = 0

    async def resync_from(why: JournalCorrupt) -> Position:
        nonlocal reload
        reload = why
        position = await resync(client, keys, store, why)
        reload = None
        return position

    def applied(position: Position) -> None:
        oplog.position = position

    while True:
        try:
            if reload is not None:
                oplog.position = await resync_from(reload)
            try:
                oplog.position, more = await replay_log(client, keys, store, oplog.position, applied)
                if failures:
                    log.warning("standby: reading the log again after %d failed attempts", failures)
                    failures = 0
                replayed += more
            except JournalCorrupt as exc:
                oplog.position = await resync_from(exc)
                continue
            role.head = max(role.head, oplog.position.index)
            position = oplog.position
            sent_at = trio.current_time()
            reply, replicas = await call_replicated(client, acquire, acquire_keys(keys), [
                node_id, nonce, config.lease_ttl_ms, position.index, position.epoch, position.crc, cluster_id],
                need, timeout)
            result = parse_acquire(reply)
            if isinstance(result, Acquired):
                while replicas < need:
                    log.warning("the lease is on %d of %d replicas; waiting for more", replicas, need)
                    sent_at = trio.current_time()
                    renewed, replicas = await call_replicated(client, renew, lease_keys(keys),
                                                              [result.token, config.lease_ttl_ms], need, timeout)
                    if renewed != 1:
                        break
                else:
                    oplog.lease.granted(result.token, result.epoch, sent_at)
                    role.seen_holder(result.token)
                    log.info("primary of %s: epoch %d at index %d", keys.tag, result.epoch, position.index)
                    return replayed
                continue  # the lease expired while the replicas lagged: try again
            if result.why == "WRONG_CLUSTER":
                raise RedisStoreError(f"{keys.meta} changed cluster id while this node started (was {cluster_id!r})")
            if result.why == "HELD":
                holder, ttl_left = result.detail[0], result.detail[1]
                if isinstance(holder, bytes):
                    role.seen_holder(holder)
                if holder != waiting_for:
                    log.warning("standby: the lease of %s is held by %r (%s ms left); following the log",
                                keys.tag, holder, ttl_left)
                    waiting_for = holder if isinstance(holder, bytes) else None
                left = ttl_left if isinstance(ttl_left, int) and ttl_left > 0 else LEASE_POLL_MS
                try:
                    replayed += await tail(oplog, store, min(left, BLOCK_MS))
                except JournalCorrupt as exc:
                    oplog.position = await resync_from(exc)
                continue
            head = result.detail[0]
            head_index = int(head) if isinstance(head, bytes) and head.isdigit() else 0
            if head_index <= position.index:  # diverged at our index, or the log is shorter than our copy
                if position == resynced:
                    raise RedisStoreError(f"{keys.log} does not match its meta at index {position.index}, "
                                          "even read afresh")
                oplog.position = resynced = await resync_from(JournalCorrupt(
                    keys.log, None, f"head {head_index} vs this node's index {position.index}"))
            # else BEHIND: the holder appended more before it stopped: read on, try again
        except (RedisError, OSError) as exc:
            # Redis unreachable or failing over (Sentinel): keep following once it answers. An
            # ACQUIRE whose reply was lost may have granted a lease nobody renews: it is waited
            # out like any other holder's.
            log.log(logging.DEBUG if failures else logging.WARNING,
                    "standby: Redis failed (%s); trying again every %.2f s", exc, RETRY_PAUSE)
            failures += 1
            await trio.sleep(RETRY_PAUSE)


async def tail(oplog: RedisOpLog, store: MemoryStore, block_ms: int) -> int:
    """Apply what the primary appends after `oplog.position`, waiting up to `block_ms` for
    it; returns the frame bytes read. Raises JournalCorrupt when an entry does not follow."""
    client, keys = oplog.client, oplog.keys
    reply = await client.xread({keys.log: entry_id(oplog.position.index)}, count=TAIL_BATCH, block=max(1, block_ms))
    read = 0
    for item in (reply or {}).get(keys.log.encode(), ()):
        fields = dict(item.field_values)
        entry, oplog.position = decode_entry(item.identifier, fields, oplog.position)
        for op in entry.ops:
            store.apply(op)
        read += len(fields[b"f"])
    head = await client.hget(keys.meta, "head")
    oplog.role.head = int(head) if head and head.isdigit() else oplog.position.index
    return read


async def resync(client: coredis.Redis[bytes], keys: Keys, store: MemoryStore, why: JournalCorrupt) -> Position:
    """Wipe `store` and load the log again from the published snapshot."""
    log.warning("standby out of step with %s (%s): loading the snapshot and the stream again", keys.log, why)
    store.apply(Flush())
    for name in store.queue_names():
        store.apply(RemoveQueue(name))
    loaded = await load_snapshot(client, keys, store)
    position, _ = await replay_log(client, keys, store, loaded)
    return position
