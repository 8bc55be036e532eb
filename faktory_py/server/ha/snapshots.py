"""Snapshots to Redis and trimming of the stream (protocol/spec.md §7.1), on the primary.

Once the stream has grown by more than max(`compact_min_bytes`, 2 × the last snapshot)
since the last snapshot (the journal's compaction rule), the primary seals what is queued
into the next frame k and copies the state, with no await in between, so the copy is the
state after entry k. The copy is encoded in a worker thread, written as a new generation
`snap:<gen>` (chunks of whole frames), and published once entry k is in Redis, by a
fenced script that also unlinks the generation before the previous one. The stream is
then trimmed up to the *previous* snapshot's index: a node that loaded either generation
can still continue from the stream.

A failure is logged and tried again at the next threshold; it never stops the server
(the stream only grows meanwhile). A fenced publish is the appender's business: the
node is stopping anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import trio
from coredis.exceptions import RedisError
from coredis.tokens import PureToken

from ...store.redis.scripts import PUBLISH_SNAPSHOT, publish_keys
from ...store.redis.snapshots import digest, encode_chunks
from ..durability import JournalFailed
from .oplog import RedisOpLog

log = logging.getLogger("faktory_py.redis")

Snapshot = Callable[[], Iterator[Any]]
#: XTRIM calls per trim at most (each evicts whole stream nodes, ~100 × 100 entries)
TRIM_CALLS = 1000


async def run_snapshots(oplog: RedisOpLog, snapshot: Snapshot, min_bytes: int) -> None:
    """Background task: snapshot and trim whenever the stream has grown enough."""
    oplog.snapshot_threshold = min_bytes
    while True:
        await oplog.snapshot_due.wait()
        oplog.snapshot_due = trio.Event()
        if oplog.bytes_since_snapshot <= oplog.snapshot_threshold:
            continue
        started = time.perf_counter()
        try:
            size = await take_snapshot(oplog, snapshot)
        except JournalFailed:
            return
        except (RedisError, OSError) as exc:
            oplog.snapshot_failures += 1
            oplog.snapshot_threshold = max(min_bytes, 2 * oplog.bytes_since_snapshot)
            log.error("snapshot to Redis failed (%s); next try at %d stream bytes", exc, oplog.snapshot_threshold)
            continue
        oplog.compaction_times.observe(time.perf_counter() - started)
        oplog.snapshot_threshold = max(min_bytes, 2 * size)


async def take_snapshot(oplog: RedisOpLog, snapshot: Snapshot) -> int:
    """Write, publish and trim one snapshot of the state now; returns its size in bytes
    (0 when another generation won the race and this one was dropped)."""
    client, keys = oplog.client, oplog.keys
    position = oplog.seal()  # no await from here ...
    records = snapshot()  # ... to here: the copy is the state after entry `position.index`
    oplog.bytes_since_snapshot = 0
    generation = await client.hincrby(keys.meta, "snap_next", 1)
    chunks = await trio.to_thread.run_sync(lambda: list(encode_chunks(position, records)))
    size = sum(map(len, chunks))
    for number, chunk in enumerate(chunks):
        await client.hset(keys.snapshot(generation), {str(number): chunk})
    await oplog.wait_appended(position.index)
    old = await client.hget(keys.meta, "prev_snap_gen") or b"0"
    publish = client.register_script(PUBLISH_SNAPSHOT)
    reply = await publish(keys=publish_keys(keys, generation, int(old)), args=[
        oplog.lease.token, generation, old, position.index, position.epoch, position.crc, len(chunks), size,
        digest(chunks)])
    if reply[0] != b"OK":  # STALE (another generation got in first) or INCOMPLETE: drop this one
        log.warning("snapshot generation %d not published (%s); dropped", generation, reply[0].decode())
        await client.unlink([keys.snapshot(generation)])
        return 0
    oplog.snapshots += 1
    log.info("snapshot %d to Redis: %d bytes in %d chunks at index %d", generation, size, len(chunks),
             position.index)
    await trim(oplog, int(reply[1]))
    return size


async def trim(oplog: RedisOpLog, keep_after: int) -> None:
    """Drop stream entries up to `keep_after` (the previous snapshot's index), in bounded calls."""
    if keep_after == 0:
        return
    for _ in range(TRIM_CALLS):
        if not await oplog.client.xtrim(oplog.keys.log, PureToken.MINID, keep_after + 1,
                                        trim_operator=PureToken.APPROXIMATELY):
            return
