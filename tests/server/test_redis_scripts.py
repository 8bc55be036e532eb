"""The op log's scripts against a real redis-server: what each answers, and that a refused
call writes nothing (the fence is inside Redis, atomic with the XADD)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import coredis
import pytest
from coredis.exceptions import ResponseError

from faktory_py.store.journal import encode_frame
from faktory_py.store.redis import scripts
from faktory_py.store.redis.keys import Keys
from faktory_py.store.redis.scripts import Acquired, Refused, parse_acquire
from helpers.redis import RedisServer, unique_name

CLUSTER = b"cluster-1"


@pytest.fixture
async def r(redis_server: RedisServer) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis(port=redis_server.port, decode_responses=False) as client:
        yield client


@pytest.fixture
def keys() -> Keys:
    return Keys(unique_name())


async def init(r: coredis.Redis[bytes], keys: Keys, cluster: bytes = CLUSTER) -> list[bytes]:
    return await r.register_script(scripts.INIT)(keys=scripts.init_keys(keys), args=[cluster, 1])


async def acquire(r: coredis.Redis[bytes], keys: Keys, index: int = 0, epoch: int = 0, crc: bytes = b"",
                  node: str = "n1", cluster: bytes = CLUSTER) -> Acquired | Refused:
    reply = await r.register_script(scripts.ACQUIRE)(
        keys=scripts.acquire_keys(keys), args=[node, "nonce", 2000, index, epoch, crc, cluster])
    return parse_acquire(reply)


async def append(r: coredis.Redis[bytes], keys: Keys, token: bytes, first: int, *frames: bytes,
                 epoch: int = 1) -> tuple[str, int]:
    reply = await r.register_script(scripts.APPEND)(
        keys=scripts.append_keys(keys), args=[token, first, epoch, *frames])
    return scripts.parse_append(reply)


FRAME = encode_frame([{"op": "noop"}])


async def test_init_creates_the_meta_once(r, keys) -> None:  # type: ignore[no-untyped-def]
    assert await init(r, keys) == [b"faktory_py-oplog", b"1", CLUSTER]
    assert await init(r, keys, b"another") == [b"faktory_py-oplog", b"1", CLUSTER]
    meta = await r.hgetall(keys.meta)
    assert meta[b"head"] == b"0" and meta[b"head_epoch"] == b"0" and meta[b"head_crc"] == b""


async def test_acquire_grants_a_growing_epoch_and_a_token_with_a_ttl(r, keys) -> None:  # type: ignore[no-untyped-def]
    await init(r, keys)
    granted = await acquire(r, keys)
    assert granted == Acquired(1, b"1:n1:nonce")
    assert await r.get(keys.lease) == b"1:n1:nonce" and 0 < await r.pttl(keys.lease) <= 2000
    assert await r.hget(keys.epochs, "1") == b"1"
    held = await acquire(r, keys, node="n2")
    assert isinstance(held, Refused) and held.why == "HELD" and held.detail[0] == b"1:n1:nonce"
    await r.delete([keys.lease])
    assert await acquire(r, keys, node="n2") == Acquired(2, b"2:n2:nonce")


async def test_acquire_refuses_a_node_behind_the_head_or_of_another_cluster(r, keys) -> None:  # type: ignore[no-untyped-def]
    await init(r, keys)
    first = await acquire(r, keys)
    assert isinstance(first, Acquired)
    assert await append(r, keys, first.token, 1, FRAME) == ("OK", 1)
    await r.delete([keys.lease])
    behind = await acquire(r, keys, node="n2")
    assert behind == Refused("BEHIND_OR_DIVERGED", (b"1", b"1"))
    assert await acquire(r, keys, 1, 1, b"xxxx", node="n2") == Refused("BEHIND_OR_DIVERGED", (b"1", b"1"))
    assert await acquire(r, keys, 1, 1, FRAME[4:8], node="n2") == Acquired(2, b"2:n2:nonce")
    await r.delete([keys.lease])
    wrong = await acquire(r, keys, 1, 2, FRAME[4:8], cluster=b"other")
    assert wrong == Refused("WRONG_CLUSTER", (CLUSTER,))
    assert not await r.exists([keys.lease])


async def test_append_writes_dense_entries_and_the_head(r, keys) -> None:  # type: ignore[no-untyped-def]
    await init(r, keys)
    granted = await acquire(r, keys)
    assert isinstance(granted, Acquired)
    second = encode_frame([{"op": "two"}])
    assert await append(r, keys, granted.token, 1, FRAME, second) == ("OK", 2)
    entries = await r.xrange(keys.log)
    assert [e.identifier for e in entries] == [b"1-0", b"2-0"]
    assert entries[1].field_values[b"f"] == second and entries[1].field_values[b"e"] == b"1"
    assert int(entries[0].field_values[b"t"]) > 1_700_000_000_000
    meta = await r.hgetall(keys.meta)
    assert (meta[b"head"], meta[b"head_epoch"], meta[b"head_crc"], meta[b"writer"]) == (
        b"2", b"1", second[4:8], granted.token)
    # the same call again (its first outcome unknown to the caller): DUP, nothing written twice
    assert await append(r, keys, granted.token, 1, FRAME, second) == ("DUP", 2)
    assert await r.xlen(keys.log) == 2


async def test_a_stale_token_is_fenced_inside_redis(r, keys) -> None:  # type: ignore[no-untyped-def]
    """The lease moved (a takeover): the old primary's append is refused and writes nothing."""
    await init(r, keys)
    old = await acquire(r, keys)
    assert isinstance(old, Acquired)
    assert await append(r, keys, old.token, 1, FRAME) == ("OK", 1)
    await r.delete([keys.lease])
    new = await acquire(r, keys, 1, 1, FRAME[4:8], node="n2")
    assert isinstance(new, Acquired)
    with pytest.raises(ResponseError, match="FENCED"):
        await append(r, keys, old.token, 2, FRAME)
    with pytest.raises(ResponseError, match="FENCED"):  # not even a DUP for the old token
        await append(r, keys, old.token, 1, FRAME)
    assert await r.xlen(keys.log) == 1 and await r.hget(keys.meta, "head") == b"1"


async def test_a_gap_is_refused(r, keys) -> None:  # type: ignore[no-untyped-def]
    await init(r, keys)
    granted = await acquire(r, keys)
    assert isinstance(granted, Acquired)
    with pytest.raises(ResponseError, match="GAP 0"):
        await append(r, keys, granted.token, 2, FRAME)
    assert await append(r, keys, granted.token, 1, FRAME) == ("OK", 1)
    assert await r.xlen(keys.log) == 1


async def test_a_resent_call_overlapping_the_head_writes_only_the_rest(r, keys) -> None:  # type: ignore[no-untyped-def]
    """A call cancelled after it landed, sent again with more frames sealed meanwhile."""
    await init(r, keys)
    granted = await acquire(r, keys)
    assert isinstance(granted, Acquired)
    frames = [encode_frame([{"op": f"n{i}"}]) for i in range(1, 4)]
    assert await append(r, keys, granted.token, 1, *frames[:2]) == ("OK", 2)
    assert await append(r, keys, granted.token, 1, *frames) == ("OK", 3)
    assert [e.field_values[b"f"] for e in await r.xrange(keys.log)] == frames
    # another writer's entries are never skipped: after a takeover the overlap is a GAP
    await r.delete([keys.lease])
    other = await acquire(r, keys, 3, 1, frames[2][4:8], node="n2")
    assert isinstance(other, Acquired)
    with pytest.raises(ResponseError, match="GAP 3"):
        await append(r, keys, other.token, 3, FRAME, FRAME, epoch=2)
    assert await r.xlen(keys.log) == 3


async def test_append_without_the_meta_is_refused(r, keys) -> None:  # type: ignore[no-untyped-def]
    await r.set(keys.lease, "t")
    with pytest.raises(ResponseError, match="NOLOG"):
        await append(r, keys, b"t", 1, FRAME)
    assert not await r.exists([keys.log])


async def test_renew_and_release_only_with_the_token(r, keys) -> None:  # type: ignore[no-untyped-def]
    await init(r, keys)
    granted = await acquire(r, keys)
    assert isinstance(granted, Acquired)
    renew = r.register_script(scripts.RENEW)
    release = r.register_script(scripts.RELEASE)
    lease = scripts.lease_keys(keys)
    assert await renew(keys=lease, args=[granted.token, 60_000]) == 1
    assert await r.pttl(keys.lease) > 2000
    assert await renew(keys=lease, args=[b"other", 1]) == 0
    assert await release(keys=lease, args=[b"other"]) == 0
    assert await release(keys=lease, args=[granted.token]) == 1
    assert not await r.exists([keys.lease])
    assert await renew(keys=lease, args=[granted.token, 1000]) == 0


async def test_an_append_refused_for_memory_writes_nothing(redis_server, r, keys) -> None:  # type: ignore[no-untyped-def]
    """The shebang makes Redis refuse the script before it runs (-OOM): no partial XADDs."""
    await init(r, keys)
    granted = await acquire(r, keys)
    assert isinstance(granted, Acquired)
    await r.config_set({"maxmemory": 1})
    try:
        with pytest.raises(ResponseError, match="OOM"):
            await append(r, keys, granted.token, 1, FRAME, FRAME)
    finally:
        await r.config_set({"maxmemory": 0})
    assert await r.xlen(keys.log) == 0 and await r.hget(keys.meta, "head") == b"0"
    assert await append(r, keys, granted.token, 1, FRAME) == ("OK", 1)  # retried: it goes in


async def test_scripts_survive_a_script_flush(r, keys) -> None:  # type: ignore[no-untyped-def]
    await init(r, keys)
    await r.script_flush()
    granted = await acquire(r, keys)  # NOSCRIPT → loaded again by the client
    assert isinstance(granted, Acquired)


async def publish(r: coredis.Redis[bytes], keys: Keys, token: bytes, generation: int, old: bytes, index: int,
                  chunks: int) -> list[object]:
    return await r.register_script(scripts.PUBLISH_SNAPSHOT)(
        keys=scripts.publish_keys(keys, generation, int(old)),
        args=[token, generation, old, index, 1, b"crc!", chunks, 100, 12345])


async def test_publish_snapshot(r, keys) -> None:  # type: ignore[no-untyped-def]
    """Fenced, only once its index is in the log, only complete, only newer; it keeps two
    generations and unlinks the one before the previous."""
    await init(r, keys)
    granted = await acquire(r, keys)
    assert isinstance(granted, Acquired)
    for index in (1, 2, 3):
        assert await append(r, keys, granted.token, index, FRAME) == ("OK", index)
    await r.hset(keys.snapshot(1), {"0": b"a", "1": b"b"})
    assert await publish(r, keys, granted.token, 1, b"0", 4, 2) == [b"NOTYET"]
    assert await publish(r, keys, granted.token, 1, b"0", 2, 3) == [b"INCOMPLETE"]
    with pytest.raises(ResponseError, match="FENCED"):
        await publish(r, keys, b"stale", 1, b"0", 2, 2)
    assert await publish(r, keys, granted.token, 1, b"0", 2, 2) == [b"OK", 0]
    assert await publish(r, keys, granted.token, 1, b"0", 2, 2) == [b"STALE"]  # not newer
    await r.hset(keys.snapshot(2), {"0": b"c"})
    assert await publish(r, keys, granted.token, 2, b"1", 3, 1) == [b"STALE"]  # old read before a publish
    assert await publish(r, keys, granted.token, 2, b"0", 3, 1) == [b"OK", 2]
    await r.hset(keys.snapshot(3), {"0": b"d"})
    assert await publish(r, keys, granted.token, 3, b"1", 3, 1) == [b"OK", 3]
    meta = await r.hgetall(keys.meta)
    assert (meta[b"snap_gen"], meta[b"snap_index"], meta[b"prev_snap_gen"], meta[b"prev_snap_index"]) == (
        b"3", b"3", b"2", b"3")
    assert not await r.exists([keys.snapshot(1)])  # the generation before the previous is gone
    assert await r.exists([keys.snapshot(2), keys.snapshot(3)]) == 2
