"""Boot from Redis: make sure the log exists, replay it into a fresh store (then the node
follows the log as a standby until it can take the lease: server/ha/standby.py).

Replay applies each entry's ops with `store.apply`, exactly as the local journal's replay
does (server/app.py), so a store rebuilt from Redis cannot differ from one rebuilt from a
data directory holding the same frames. A damaged entry or a gap stops the boot
(JournalCorrupt): nothing is skipped.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import coredis

from ...store.redis.entries import Position, decode_entry, entry_id
from ...store.redis.keys import FORMAT, VERSION, Keys
from ...store.redis.scripts import ALL, INIT, init_keys
from ...store.redis.snapshots import decode_chunks
from .client import RedisStoreError

log = logging.getLogger("faktory_py.redis")

#: entries read per XRANGE call while replaying
REPLAY_BATCH = 512


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


async def replay_log(client: coredis.Redis[bytes], keys: Keys, store: Applies, after: Position,
                     applied: Callable[[Position], None] | None = None) -> tuple[Position, int]:
    """Apply every entry after `after` to `store`; returns the position reached and the
    frame bytes read. `applied` hears of each batch's position as soon as the store has it
    (a standby's position stays true when a Redis error ends the replay half way)."""
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
        if applied is not None:
            applied(position)
        if len(entries) < REPLAY_BATCH:
            return position, replayed
