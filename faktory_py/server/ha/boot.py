"""Boot from Redis: make sure the log exists, replay it into a fresh store, take the lease.

Replay applies each entry's ops with `store.apply`, exactly as the local journal's replay
does (server/app.py), so a store rebuilt from Redis cannot differ from one rebuilt from a
data directory holding the same frames. A damaged entry or a gap stops the boot
(JournalCorrupt): nothing is skipped.

The lease may still be held when a node starts: by a primary that was just killed (its
key lives until its TTL runs out) or by one that is alive. Phase 1 has no standbys, so the
node waits — reading what the holder appends meanwhile — until the key is gone, then
ACQUIREs with its position: Redis grants the lease only to a node that has read the log to
its head, atomically with the check.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from typing import Protocol

import coredis
import trio

from ...config import RedisConfig
from ...store.redis.entries import Position, decode_entry, entry_id
from ...store.redis.keys import FORMAT, VERSION, Keys
from ...store.redis.snapshots import decode_chunks
from ...store.redis.lease import Lease
from ...store.redis.scripts import (ACQUIRE, ALL, INIT, RENEW, Acquired, acquire_keys, init_keys, lease_keys,
                                    parse_acquire)
from .client import RedisStoreError, call_replicated

log = logging.getLogger("faktory_py.redis")

#: entries read per XRANGE call while replaying
REPLAY_BATCH = 512
#: how often a node waiting for the lease looks again (at most)
LEASE_POLL = 0.25


class Applies(Protocol):
    def apply(self, op: dict) -> None: ...  # type: ignore[type-arg]


async def init_log(client: coredis.Redis[bytes], keys: Keys) -> bytes:
    """Load the scripts, create the log's meta hash unless it exists; returns its cluster id."""
    for text in ALL:
        await client.script_load(text)
    script = client.register_script(INIT)
    reply = await script(keys=init_keys(keys), args=[str(uuid.uuid4()), str(int(time.time() * 1000))])
    fmt, version, cluster_id = reply
    if fmt != FORMAT.encode() or version != str(VERSION).encode() or not cluster_id:
        raise RedisStoreError(f"{keys.meta} is not a faktory_py op log of version {VERSION} "
                              f"(format {fmt!r}, version {version!r})")
    return cluster_id


async def load_snapshot(client: coredis.Redis[bytes], keys: Keys, store: Applies) -> Position:
    """Apply the published snapshot, if any; returns the position it belongs to."""
    generation, chunks = await client.hmget(keys.meta, ["snap_gen", "snap_chunks"])
    if not generation or generation == b"0":
        return Position()
    where = keys.snapshot(generation)
    values = await client.hmget(where, [str(number) for number in range(int(chunks or 0))])
    if not values or any(value is None for value in values):
        raise RedisStoreError(f"snapshot {where} is incomplete ({chunks!r} chunks published)")
    position, records = decode_chunks(values, where)
    for record in records:
        for op in record:
            store.apply(op)
    log.info("loaded snapshot %s at index %d", where, position.index)
    return position


async def drop_orphan_snapshots(client: coredis.Redis[bytes], keys: Keys) -> int:
    """Unlink generations written but never published (their writer died or lost a race);
    run by the lease holder, the only node that writes them. Returns how many there were."""
    published, handed_out = await client.hmget(keys.meta, ["snap_gen", "snap_next"])
    orphans = [keys.snapshot(gen) for gen in range(int(published or 0) + 1, int(handed_out or 0) + 1)]
    return await client.unlink(orphans) if orphans else 0


async def replay_log(client: coredis.Redis[bytes], keys: Keys, store: Applies,
                     after: Position) -> tuple[Position, int]:
    """Apply every entry after `after` to `store`; returns the position reached and the
    frame bytes read."""
    position = after
    replayed = 0
    while True:
        entries = await client.xrange(keys.log, start=entry_id(position.index + 1), end="+", count=REPLAY_BATCH)
        for item in entries:
            fields = dict(item.field_values)
            entry, position = decode_entry(item.identifier, fields, position)
            for op in entry.ops:
                store.apply(op)
            replayed += len(fields[b"f"])
        if len(entries) < REPLAY_BATCH:
            return position, replayed


async def acquire_lease(client: coredis.Redis[bytes], config: RedisConfig, store: Applies, lease: Lease,
                        node_id: str, cluster_id: bytes, position: Position) -> tuple[Position, int]:
    """Read the log to its head and take the lease, waiting while another node holds it;
    returns the position the lease was granted at and the frame bytes read on the way. With `min_replicas` the grant counts
    only once that many replicas have it (as for renewals, server/ha/oplog.py)."""
    keys = Keys(config.name)
    acquire, renew = client.register_script(ACQUIRE), client.register_script(RENEW)
    need, timeout = config.min_replicas, config.wait_timeout_ms
    nonce = secrets.token_hex(8)
    waiting_for: bytes | None = None
    replayed = 0
    while True:
        position, more = await replay_log(client, keys, store, position)
        replayed += more
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
                lease.granted(result.token, result.epoch, sent_at)
                log.info("primary of %s: epoch %d at index %d", keys.tag, result.epoch, position.index)
                return position, replayed
            continue  # the lease expired while the replicas lagged: try again
        if result.why == "WRONG_CLUSTER":
            raise RedisStoreError(f"{keys.meta} changed cluster id while this node started (was {cluster_id!r})")
        if result.why == "HELD":
            holder, ttl_left = result.detail[0], result.detail[1]
            if holder != waiting_for:
                log.warning("the lease of %s is held by %r; waiting for it to expire (%s ms left)",
                            keys.tag, holder, ttl_left)
                waiting_for = holder if isinstance(holder, bytes) else None
            left = ttl_left / 1000 if isinstance(ttl_left, int) and ttl_left > 0 else LEASE_POLL
            await trio.sleep(min(left, LEASE_POLL))
        elif result.detail[0] == str(position.index).encode():
            raise RedisStoreError(f"this node's copy of {keys.log} diverged from Redis at index {position.index}")
        # else BEHIND: the holder appended more before it stopped: read on, try again
