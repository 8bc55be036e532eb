"""The sans-io parts of the op log in Redis (store/redis/): key names, script texts, the
entry codec (journal frames, CRCs checked) and the lease state machine with explicit times."""

from __future__ import annotations

import re
import struct
import zlib

import pytest

from faktory_py.store.journal import JournalCorrupt, decode_frame, decode_frames, encode_frame
from faktory_py.store.redis import scripts
from faktory_py.store.redis.entries import Position, decode_entry, frame_crc, index_of
from faktory_py.store.redis.keys import Keys
from faktory_py.store.redis.lease import Lease, margin
from faktory_py.store.redis.snapshots import decode_chunks, digest, encode_chunks

OPS = [{"op": "enqueue", "queue": "q", "jobs": [{"jid": "abcdefgh"}]}]


# --- keys and scripts ----------------------------------------------------------------------

def test_every_key_shares_one_hash_tag() -> None:
    keys = Keys("billing")
    names = [keys.meta, keys.epoch, keys.epochs, keys.lease, keys.log]
    assert names == ["{fk:billing}:meta", "{fk:billing}:epoch", "{fk:billing}:epochs", "{fk:billing}:lease",
                     "{fk:billing}:log"]
    assert {re.match(r"\{[^}]*\}", name).group(0) for name in names} == {"{fk:billing}"}  # type: ignore[union-attr]
    assert Keys().meta == "{fk:default}:meta"
    assert keys.snapshot(3) == keys.snapshot(b"3") == "{fk:billing}:snap:3"


@pytest.mark.parametrize("name", ["INIT", "ACQUIRE", "RENEW", "RELEASE", "APPEND", "PUBLISH_SNAPSHOT"])
def test_scripts_start_with_a_shebang_and_touch_only_their_keys(name: str) -> None:
    """The shebang makes Redis refuse a script before it runs when it may not write
    (-OOM, -NOREPLICAS, -READONLY); keys come only from KEYS (one slot, Cluster-safe)."""
    text = getattr(scripts, name)
    assert text.startswith("#!lua\n")
    assert not re.search(r"redis\.call\('[A-Z]+', *['\"]", text), "a key named inside a script"


def test_append_checks_the_token_before_anything_else() -> None:
    body = scripts.APPEND.splitlines()[1]
    assert "GET', KEYS[1]) ~= ARGV[1]" in body and "FENCED" in body


def test_script_key_lists() -> None:
    keys = Keys("n")
    assert scripts.append_keys(keys) == [keys.lease, keys.meta, keys.log]
    assert scripts.acquire_keys(keys) == [keys.lease, keys.epoch, keys.epochs, keys.meta]
    assert scripts.lease_keys(keys) == [keys.lease]


def test_replies() -> None:
    assert scripts.parse_acquire([b"OK", 3, b"3:n:x"]) == scripts.Acquired(3, b"3:n:x")
    assert scripts.parse_acquire([b"HELD", b"1:a:b", 1500]) == scripts.Refused("HELD", (b"1:a:b", 1500))
    assert scripts.parse_append([b"DUP", 7]) == ("DUP", 7)
    assert scripts.is_fence("FENCED lease lost") and scripts.is_fence("GAP 12") and scripts.is_fence("NOLOG x")
    assert not scripts.is_fence("OOM command not allowed") and not scripts.is_fence("NOREPLICAS Not enough")


# --- frames and entries ----------------------------------------------------------------------

def test_decode_frame_reads_what_the_journal_writes() -> None:
    assert decode_frame(encode_frame(OPS)) == OPS


@pytest.mark.parametrize("damage, problem", [
    (lambda f: f[:10], "incomplete frame header"),
    (lambda f: f[:4] + b"\0\0\0\0" + f[8:], "frame header crc mismatch"),
    (lambda f: f[:-1], "holds"),
    (lambda f: f[:-1] + bytes([f[-1] ^ 1]), "crc mismatch"),
    (lambda f: f + f, "more than one frame"),
])
def test_decode_frame_refuses_damage(damage, problem: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(JournalCorrupt, match=problem):
        decode_frame(damage(encode_frame(OPS)), "entry 1-0")


def test_decode_frame_refuses_undecodable_payload_with_good_crcs() -> None:
    payload = b"\xc1"  # never used in msgpack
    checked = struct.pack(">II", len(payload), zlib.crc32(payload))
    data = checked + zlib.crc32(checked).to_bytes(4, "big") + payload
    with pytest.raises(JournalCorrupt, match="undecodable"):
        decode_frame(data)


def fields(epoch: int, frame: bytes) -> dict[bytes, bytes]:
    return {b"e": str(epoch).encode(), b"t": b"1796600000000", b"f": frame}


def test_entries_decode_in_order_and_advance_the_position() -> None:
    frame = encode_frame(OPS)
    entry, position = decode_entry(b"1-0", fields(1, frame), Position())
    assert entry.ops == OPS and entry.index == 1 and entry.epoch == 1 and entry.time_ms == 1796600000000
    assert position == Position(1, 1, frame_crc(frame)) and frame_crc(frame) == frame[4:8]
    _, position = decode_entry("2-0", fields(2, frame), position)
    assert position.index == 2 and position.epoch == 2


@pytest.mark.parametrize("identifier, entry_fields, problem", [
    (b"3-0", fields(1, encode_frame(OPS)), "expected index 2"),
    (b"2-1", fields(1, encode_frame(OPS)), "unexpected entry id"),
    (b"2-0", {b"e": b"1", b"f": encode_frame(OPS)}, "missing or malformed"),
    (b"2-0", fields(0, encode_frame(OPS)), "epoch 0 after epoch 1"),
    (b"2-0", fields(1, encode_frame({"not": "a list"})), "list of ops"),
    (b"2-0", fields(1, encode_frame(OPS)[:-1]), "holds"),
])
def test_a_bad_entry_is_never_skipped(identifier: bytes, entry_fields: dict[bytes, bytes], problem: str) -> None:
    with pytest.raises(JournalCorrupt, match=problem):
        decode_entry(identifier, entry_fields, Position(1, 1, b"xxxx"))


def test_index_of() -> None:
    assert index_of(b"42-0") == 42
    with pytest.raises(JournalCorrupt):
        index_of("1796600000000-1")


# --- the lease ---------------------------------------------------------------------------------

def test_margin() -> None:
    assert margin(5.0) == 0.5 and margin(2.0) == 0.5 and margin(60.0) == 6.0
    assert margin(0.4) == pytest.approx(0.1)  # never the whole TTL


def test_the_deadline_counts_from_the_send_time() -> None:
    lease = Lease(ttl=5.0, renew_every=1.0)
    assert not lease.valid(0.0)
    lease.granted(b"1:n:x", 1, sent_at=100.0)
    assert lease.deadline == 104.5 and lease.renew_at == 101.0
    assert lease.valid(104.49) and not lease.valid(104.5)
    lease.renewed(sent_at=101.0)
    assert lease.deadline == 105.5 and lease.wake_at() == 102.0


def test_failed_renewals_are_retried_until_the_deadline_alone_decides() -> None:
    lease = Lease(ttl=5.0, renew_every=1.0)
    lease.granted(b"t", 1, sent_at=0.0)
    now = 1.0
    while lease.valid(now):
        lease.renew_failed(now)
        assert lease.renew_at == pytest.approx(now + 0.2)
        now = lease.wake_at()
    assert now == pytest.approx(4.5)  # no network call needed to stop answering


def test_a_late_reply_never_moves_the_deadline_back() -> None:
    lease = Lease(ttl=5.0, renew_every=1.0)
    lease.granted(b"t", 1, sent_at=10.0)
    lease.renewed(sent_at=9.0)  # an older call answered late
    assert lease.deadline == 14.5


def test_a_refused_lease_is_lost_for_good() -> None:
    lease = Lease(ttl=5.0, renew_every=1.0)
    lease.granted(b"t", 1, sent_at=0.0)
    lease.refused()
    assert not lease.valid(0.1)
    assert lease.lost


# --- snapshots ------------------------------------------------------------------------------------

def test_snapshot_chunks_hold_whole_frames_and_round_trip() -> None:
    records = [[{"op": "enqueue", "queue": "q", "jobs": [{"jid": f"job-{i:06d}", "pad": "x" * 200}]}]
               for i in range(50)]
    at = Position(42, 3, b"\x01\x02\x03\x04")
    chunks = list(encode_chunks(at, records, chunk_bytes=2000))
    assert len(chunks) > 5 and all(len(chunk) <= 2000 for chunk in chunks)
    for chunk in chunks:  # each decodes on its own: whole frames only
        assert list(decode_frames(chunk))
    position, decoded = decode_chunks(chunks, "snap:1")
    assert position == at and list(decoded) == records
    assert digest(chunks) == digest(list(chunks)) != digest(chunks[:-1])


def test_a_frame_larger_than_a_chunk_is_a_chunk_of_its_own() -> None:
    big = [{"op": "x", "pad": "y" * 5000}]
    chunks = list(encode_chunks(Position(1, 1, b"abcd"), [big], chunk_bytes=1000))
    assert len(chunks) == 2 and len(chunks[1]) > 5000


@pytest.mark.parametrize("damage, problem", [
    (lambda chunks: [], "no chunks"),
    (lambda chunks: [encode_frame({"format": "other"})] + chunks[1:], "invalid snapshot header"),
    (lambda chunks: chunks[:1] + [chunks[1][:-1]], "holds"),
])
def test_a_damaged_snapshot_is_refused(damage, problem: str) -> None:  # type: ignore[no-untyped-def]
    chunks = list(encode_chunks(Position(1, 1, b"abcd"), [[{"op": "x", "pad": "z" * 300}]] * 10, chunk_bytes=500))
    with pytest.raises(JournalCorrupt, match=problem):
        position, records = decode_chunks(damage(chunks), "snap:7")
        list(records)
