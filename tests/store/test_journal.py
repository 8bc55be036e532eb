"""The journal's on-disk format: replay, torn tails, corruption, compaction, locking."""

from __future__ import annotations

import itertools
import logging
import os
import struct
import tempfile
import threading
import zlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faktory_py.store import journal as journal_module
from faktory_py.store.journal import DataDirectoryInUse, Journal, JournalCorrupt, encode_frame


HEAD = 12  # frame header: length, payload CRC32, CRC32 of those 8 bytes (all big-endian)


def frame(payload: bytes) -> bytes:
    """A frame built from the format's description, not by the code under test."""
    checked = struct.pack(">II", len(payload), zlib.crc32(payload))
    return checked + struct.pack(">I", zlib.crc32(checked)) + payload


def seg(directory, number: int) -> str:
    return os.path.join(directory, f"journal.{number:08d}.fj")


def load(directory) -> tuple[Journal, list[object]]:
    journal = Journal.open(directory)
    try:
        return journal, list(journal.replay())
    except BaseException:
        journal.close()
        raise


def reload(directory) -> list[object]:
    journal, records = load(directory)
    journal.close()
    return records


def write_journal(directory, records) -> list[int]:
    """Append `records` to a fresh journal; returns the segment's size after each one."""
    journal, replayed = load(directory)
    assert replayed == []
    sizes = []
    for record in records:
        journal.append(record)
        sizes.append(os.path.getsize(seg(directory, 1)))
    journal.close()
    return sizes


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


def sample(i: int) -> dict:
    return {"op": "push", "jid": f"j{i}", "n": i, "args": [i, "x" * (i % 7), None], "blob": bytes([i % 256]), 3: 4.5}


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), children, max_size=4),
    max_leaves=10,
)


# --- round trip -----------------------------------------------------------------------


@pytest.mark.parametrize("record", ["a", 0, {"op": "ack", "jid": "x" * 300}, sample(7)])
def test_frame_layout(record):
    payload = msgpack.packb(record, use_bin_type=True)
    assert encode_frame(record) == frame(payload)
    assert encode_frame(record)[:4] == len(payload).to_bytes(4, "big")


def test_files_start_with_a_version_2_header(tmp_path):
    write_journal(tmp_path, ["a"])
    with open(seg(tmp_path, 1), "rb") as file:
        data = file.read()
    (length,) = struct.unpack(">I", data[:4])
    assert data[: HEAD + length] == frame(data[HEAD : HEAD + length])
    header = msgpack.unpackb(data[HEAD : HEAD + length])
    assert header == {"format": "faktory_py-journal", "version": 2, "kind": "segment", "segment": 1,
                      "fsync": "everysec"}
    assert data[HEAD + length :] == frame(msgpack.packb("a"))


def test_round_trip_across_reopen_and_positions(tmp_path):
    journal, records = load(tmp_path)
    assert records == []
    positions = [journal.append(sample(i)) for i in range(500)]
    positions.append(journal.append_many([sample(i) for i in range(500, 600)]))
    assert positions == sorted(set(positions))
    assert journal.fsync() == positions[-1]
    journal.close()

    journal, records = load(tmp_path)
    assert records == [sample(i) for i in range(600)]
    first = journal.append(sample(600))
    assert first > 0
    assert journal.append_many([]) == first
    assert journal.append_many([sample(601), sample(602)]) > first
    journal.close()
    assert reload(tmp_path) == [sample(i) for i in range(603)]
    assert not os.path.exists(seg(tmp_path, 2))


@settings(max_examples=50, deadline=None)
@given(batches=st.lists(st.lists(msgpack_values, max_size=5), max_size=6))
def test_any_msgpack_records_round_trip(batches):
    with tempfile.TemporaryDirectory() as directory:
        expected = []
        for batch in batches:
            journal, records = load(directory)
            assert records == expected
            journal.append_many(batch)
            journal.close()
            expected += batch
        assert reload(directory) == expected


def test_header_only_and_empty_segments_are_fine(tmp_path):
    journal, _ = load(tmp_path)
    journal.close()
    assert reload(tmp_path) == []  # header-only segment

    journal, _ = load(tmp_path)
    journal.append("a")
    journal.rotate()
    journal.close()
    open(seg(tmp_path, 3), "wb").close()  # rotate crashed right after creating the file
    journal, records = load(tmp_path)
    assert records == ["a"]
    journal.append("b")
    journal.close()
    assert reload(tmp_path) == ["a", "b"]


def test_append_before_replay_or_after_close_is_refused(tmp_path):
    journal = Journal.open(tmp_path)
    with pytest.raises(RuntimeError):
        journal.append("x")
    list(journal.replay())
    with pytest.raises(RuntimeError):
        journal.replay()
    journal.close()
    journal.close()
    with pytest.raises(RuntimeError):
        journal.append("x")
    with pytest.raises(RuntimeError):
        journal.fsync()


# --- torn tail ------------------------------------------------------------------------


def assert_cut_is_torn(directory, caplog, earlier, batch, cut_index, problem) -> None:
    """Write `earlier`, then `batch` in one write cut after `cut_index` bytes: a torn tail."""
    journal, _ = load(directory)
    journal.append_many(earlier)
    journal.close()
    good_end = os.path.getsize(seg(directory, 1))
    journal, _ = load(directory)
    journal.append_many(batch)
    journal.close()
    os.truncate(seg(directory, 1), good_end + cut_index)
    frames = [encode_frame(record) for record in batch]
    complete = 0
    while complete < len(batch) and sum(map(len, frames[: complete + 1])) <= cut_index:
        complete += 1
    kept_end = good_end + sum(map(len, frames[:complete]))
    assert kept_end < good_end + cut_index  # a part of a frame is left over

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="faktory_py.journal"):
        journal, records = load(directory)
    assert records == earlier + batch[:complete]
    assert os.path.getsize(seg(directory, 1)) == kept_end
    [warning] = caplog.records
    assert warning.name == "faktory_py.journal"
    assert seg(directory, 1) in warning.getMessage()
    assert f"offset {kept_end}" in warning.getMessage()
    assert problem in warning.getMessage()

    journal.append("after")
    journal.close()
    caplog.clear()
    assert reload(directory) == earlier + batch[:complete] + ["after"]
    assert not caplog.records


EARLIER = [sample(i) for i in range(5)]
LAST = {"op": "ack", "jid": "the-last-one"}


@pytest.mark.parametrize("cut_index", range(1, HEAD))
def test_torn_header_is_dropped(tmp_path, caplog, cut_index):
    assert_cut_is_torn(str(tmp_path), caplog, EARLIER, [LAST], cut_index, "incomplete frame header")


def test_torn_payload_at_every_offset_is_dropped(tmp_path, caplog):
    for cut_index in range(HEAD, len(encode_frame(LAST))):
        assert_cut_is_torn(
            str(tmp_path / f"cut{cut_index}"), caplog, EARLIER, [LAST], cut_index, "runs past end of file"
        )


def test_torn_multi_frame_write_keeps_its_complete_frames(tmp_path, caplog):
    batch = [sample(10), "b", {"op": "ack", "jid": "the-last-one"}]
    ends = list(itertools.accumulate(len(encode_frame(record)) for record in batch))
    for cut_index in range(1, ends[-1]):
        if cut_index in ends:
            continue  # a clean cut between frames: nothing torn
        assert_cut_is_torn(
            str(tmp_path / f"cut{cut_index}"), caplog, EARLIER, batch, cut_index, ""
        )


def test_torn_header_of_newest_segment_is_rewritten(tmp_path, caplog):
    journal, _ = load(tmp_path)
    journal.append("a")
    journal.rotate()
    journal.close()
    os.truncate(seg(tmp_path, 2), 5)
    with caplog.at_level(logging.WARNING, logger="faktory_py.journal"):
        journal, records = load(tmp_path)
    assert records == ["a"] and len(caplog.records) == 1
    journal.append("b")
    journal.close()
    assert reload(tmp_path) == ["a", "b"]


def test_crc_failure_of_the_final_frame_is_a_torn_tail(tmp_path, caplog):
    *_, good_end, full_end = write_journal(tmp_path, ["a", "b", "c" * 20])
    flip_byte(seg(tmp_path, 1), full_end - 3)
    with caplog.at_level(logging.WARNING, logger="faktory_py.journal"):
        assert reload(tmp_path) == ["a", "b"]
    assert "crc mismatch" in caplog.text and f"offset {good_end}" in caplog.text


@pytest.mark.parametrize("zeros_from", ["after-last-frame", "mid-payload", "mid-header", "header-start"])
def test_zero_filled_tail_is_a_torn_tail(tmp_path, caplog, zeros_from):
    *_, good_end, full_end = write_journal(tmp_path, ["a", "b", "c" * 20])
    start = {"after-last-frame": full_end, "mid-payload": full_end - 10, "mid-header": good_end + 6,
             "header-start": good_end}[zeros_from]
    with open(seg(tmp_path, 1), "r+b") as file:
        # A crash after the file grew but before its data reached the disk reads as zeros.
        file.seek(start)
        file.write(bytes(4096))
    whole = zeros_from == "after-last-frame"
    with caplog.at_level(logging.WARNING, logger="faktory_py.journal"):
        assert reload(tmp_path) == (["a", "b", "c" * 20] if whole else ["a", "b"])
    assert len(caplog.records) == 1
    assert f"offset {full_end if whole else good_end}" in caplog.text
    assert os.path.getsize(seg(tmp_path, 1)) == (full_end if whole else good_end)


def test_zeros_followed_by_data_are_corruption(tmp_path):
    *_, full_end = write_journal(tmp_path, ["a", "b"])
    with open(seg(tmp_path, 1), "ab") as file:
        file.write(bytes(HEAD) + encode_frame("c"))  # an all-zero frame is not a valid one
    with pytest.raises(JournalCorrupt, match=f"at offset {full_end}: frame header crc mismatch"):
        reload(tmp_path)


def write_always(directory, records) -> list[int]:
    """`write_journal` under `fsync always`: every frame was fsynced before its reply."""
    journal = Journal.open(directory, fsync="always")
    assert list(journal.replay()) == []
    sizes = []
    for record in records:
        journal.append(record)
        journal.fsync()
        sizes.append(os.path.getsize(seg(directory, 1)))
    journal.close()
    return sizes


def test_under_fsync_always_a_bad_crc_in_the_complete_last_frame_is_corruption(tmp_path):
    *_, good_end, full_end = write_always(tmp_path, ["a", "b", "c" * 20])
    flip_byte(seg(tmp_path, 1), full_end - 3)
    for policy in ("always", "everysec"):  # what the segment says counts, not today's policy
        with pytest.raises(JournalCorrupt, match=f"at offset {good_end}: crc mismatch"):
            with Journal.open(tmp_path, fsync=policy) as journal:
                list(journal.replay())


def test_under_fsync_always_pages_that_never_reached_the_disk_are_still_a_tear(tmp_path, caplog):
    *_, good_end, full_end = write_always(tmp_path, ["a", "b" * 10_000])
    page = -(-(good_end + HEAD) // 4096) * 4096  # the first page boundary inside the payload
    with open(seg(tmp_path, 1), "r+b") as file:
        file.seek(page)
        file.write(bytes(full_end - page))  # that write was not fsynced, so not acknowledged
    with caplog.at_level(logging.WARNING, logger="faktory_py.journal"):
        assert reload(tmp_path) == ["a"]
    assert f"offset {good_end} (crc mismatch)" in caplog.text


def test_a_restart_under_another_fsync_policy_continues_in_a_new_segment(tmp_path):
    write_always(tmp_path, ["a"])
    with Journal.open(tmp_path, fsync="everysec") as journal:
        assert list(journal.replay()) == ["a"]
        journal.append("b")
    flip_byte(seg(tmp_path, 2), os.path.getsize(seg(tmp_path, 2)) - 1)  # "b", under everysec: a tear
    assert reload(tmp_path) == ["a"]


def test_an_empty_only_segment_starts_with_a_warning(tmp_path, caplog):
    open(seg(tmp_path, 1), "wb").close()
    with caplog.at_level(logging.WARNING, logger="faktory_py.journal"):
        assert reload(tmp_path) == []
    assert f"journal segment {seg(tmp_path, 1)} is empty (0 bytes)" in caplog.text
    caplog.clear()
    assert reload(tmp_path) == []  # it got its header: no warning again
    assert not caplog.records


def test_an_empty_older_segment_is_corruption(tmp_path):
    write_journal(tmp_path, ["a"])
    os.rename(seg(tmp_path, 1), seg(tmp_path, 2))
    with open(seg(tmp_path, 2), "r+b") as file:  # renumber its header to match
        file.write(frame(msgpack.packb({"format": "faktory_py-journal", "version": 2, "kind": "segment",
                                        "segment": 2, "fsync": "everysec"})))
    open(seg(tmp_path, 1), "wb").close()
    with pytest.raises(JournalCorrupt, match="is corrupt at offset 0: empty segment"):
        reload(tmp_path)


def test_a_rotate_without_room_for_the_new_header_is_undone(tmp_path, monkeypatch):
    journal, _ = load(tmp_path)
    journal.append("a")
    real_write = os.write

    def no_room(fd, data):
        if bytes(data[HEAD:]).startswith(b"\x85\xa6format"):  # the new segment's header
            real_write(fd, bytes(data[:5]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(journal_module.os, "write", no_room)
    with pytest.raises(OSError, match="No space"):
        journal.rotate()
    monkeypatch.undo()
    assert not os.path.exists(seg(tmp_path, 2)) and journal.failure is None
    journal.append("b")  # still in the first segment
    assert journal.rotate() == 2
    journal.append("c")
    journal.close()
    assert reload(tmp_path) == ["a", "b", "c"]


# --- corruption -----------------------------------------------------------------------


def test_crc_mismatch_in_a_middle_frame_is_corruption(tmp_path):
    sizes = write_journal(tmp_path, [sample(i) for i in range(10)])
    frame_start = sizes[3]  # the fifth record's frame
    flip_byte(seg(tmp_path, 1), frame_start + 12)
    with pytest.raises(JournalCorrupt) as raised:
        reload(tmp_path)
    message = str(raised.value)
    assert message == f"journal {seg(tmp_path, 1)} is corrupt at offset {frame_start}: crc mismatch"
    assert raised.value.offset == frame_start
    # The lock was released: a repaired directory can be opened again.
    flip_byte(seg(tmp_path, 1), frame_start + 12)
    assert len(reload(tmp_path)) == 10


def test_flipped_length_byte_in_the_newest_segment_is_corruption(tmp_path):
    sizes = write_journal(tmp_path, [sample(i) for i in range(200)])
    frame_start = sizes[99]  # the 101st record's frame
    size = sizes[-1]
    flip_byte(seg(tmp_path, 1), frame_start + 1)  # its length now runs far past end of file
    with pytest.raises(JournalCorrupt) as raised:
        reload(tmp_path)
    assert str(raised.value) == (
        f"journal {seg(tmp_path, 1)} is corrupt at offset {frame_start}: frame header crc mismatch"
    )
    assert raised.value.offset == frame_start
    assert os.path.getsize(seg(tmp_path, 1)) == size  # nothing was cut
    flip_byte(seg(tmp_path, 1), frame_start + 1)
    assert reload(tmp_path) == [sample(i) for i in range(200)]


@pytest.mark.parametrize("which", ["middle", "last"])
@pytest.mark.parametrize("byte", range(HEAD))
def test_any_flipped_header_byte_is_corruption(tmp_path, which, byte):
    sizes = write_journal(tmp_path, [sample(i) for i in range(10)])
    frame_start = sizes[3] if which == "middle" else sizes[-2]
    flip_byte(seg(tmp_path, 1), frame_start + byte)
    with pytest.raises(JournalCorrupt, match=f"at offset {frame_start}: frame header crc mismatch"):
        reload(tmp_path)
    assert os.path.getsize(seg(tmp_path, 1)) == sizes[-1]


@pytest.mark.parametrize("payload", [b"\xc1", b""])  # a msgpack byte that is never used; nothing
def test_undecodable_payload_with_a_good_crc_is_corruption(tmp_path, payload):
    sizes = write_journal(tmp_path, ["a"])
    with open(seg(tmp_path, 1), "ab") as file:
        file.write(frame(payload))
    with pytest.raises(JournalCorrupt, match=f"at offset {sizes[-1]}: undecodable msgpack"):
        reload(tmp_path)


def test_damage_in_an_older_segment_is_corruption(tmp_path):
    journal, _ = load(tmp_path)
    journal.append_many(["a", "b", "c"])
    journal.rotate()
    journal.append("d")
    journal.close()
    size = os.path.getsize(seg(tmp_path, 1))
    os.truncate(seg(tmp_path, 1), size - 1)  # a torn frame that is not in the newest segment
    with pytest.raises(JournalCorrupt, match=r"journal\.00000001\.fj is corrupt at offset \d+: frame of"):
        reload(tmp_path)


def test_damage_in_the_snapshot_is_corruption(tmp_path):
    journal, _ = load(tmp_path)
    journal.append("a")
    journal.write_snapshot([f"s{i}" for i in range(20)], journal.rotate())
    journal.close()
    path = os.path.join(tmp_path, "snapshot.fj")
    flip_byte(path, os.path.getsize(path) - 1)  # its very last byte: still no torn tail
    with pytest.raises(JournalCorrupt, match=r"snapshot\.fj is corrupt at offset \d+: crc mismatch"):
        reload(tmp_path)
    os.truncate(path, 0)
    with pytest.raises(JournalCorrupt, match=r"snapshot\.fj is corrupt at offset 0: missing or invalid snapshot header"):
        reload(tmp_path)


def test_bad_headers_are_corruption(tmp_path):
    write_journal(tmp_path, ["a"])
    with open(seg(tmp_path, 1), "wb") as file:
        file.write(encode_frame({"format": "something-else", "version": 1, "kind": "segment"}))
    with pytest.raises(JournalCorrupt, match="at offset 0: missing or invalid segment header"):
        reload(tmp_path)
    with open(seg(tmp_path, 1), "wb") as file:
        file.write(encode_frame({"format": "faktory_py-journal", "version": 1, "kind": "segment", "segment": 1}))
    with pytest.raises(JournalCorrupt, match="unsupported format version 1"):
        reload(tmp_path)
    with open(seg(tmp_path, 1), "wb") as file:  # a segment renamed from another number
        file.write(encode_frame({"format": "faktory_py-journal", "version": 2, "kind": "segment", "segment": 7}))
    with pytest.raises(JournalCorrupt, match="segment=7, expected 1"):
        reload(tmp_path)


def test_missing_segment_is_corruption(tmp_path):
    journal, _ = load(tmp_path)
    for record in "abc":
        journal.append(record)
        journal.rotate()
    journal.close()
    os.unlink(seg(tmp_path, 2))
    with pytest.raises(JournalCorrupt, match=r"segment journal\.00000002\.fj is missing"):
        reload(tmp_path)
    os.unlink(seg(tmp_path, 1))  # no snapshot, so replay has to start at segment 1
    with pytest.raises(JournalCorrupt, match=r"segment journal\.00000001\.fj is missing"):
        reload(tmp_path)


# --- rotation and snapshots -----------------------------------------------------------


def test_snapshot_replaces_older_segments(tmp_path):
    journal, _ = load(tmp_path)
    journal.append_many(["a", "b"])
    assert journal.rotate() == 2
    journal.append("c")
    before = journal.bytes_since_snapshot
    size = journal.write_snapshot(["S1", "S2"], 2)
    assert size == os.path.getsize(os.path.join(tmp_path, "snapshot.fj"))
    assert journal.bytes_since_snapshot < before
    assert journal.bytes_since_snapshot == os.path.getsize(seg(tmp_path, 2))
    journal.append("d")
    journal.close()
    assert not os.path.exists(seg(tmp_path, 1))
    assert reload(tmp_path) == ["S1", "S2", "c", "d"]


def test_snapshot_while_newer_segments_exist(tmp_path):
    journal, _ = load(tmp_path)
    journal.append("a")
    journal.rotate()
    journal.append("b")
    journal.rotate()
    journal.append("c")
    with pytest.raises(ValueError):
        journal.write_snapshot(["S"], 4)  # would delete the segment being appended to
    journal.write_snapshot(["S"], 2)
    with pytest.raises(ValueError):
        journal.write_snapshot(["S"], 1)  # segment 1 is gone
    assert journal.bytes_since_snapshot == os.path.getsize(seg(tmp_path, 2)) + os.path.getsize(seg(tmp_path, 3))
    journal.close()
    assert sorted(os.listdir(tmp_path)) == ["LOCK", "journal.00000002.fj", "journal.00000003.fj", "snapshot.fj"]
    journal, records = load(tmp_path)
    assert records == ["S", "b", "c"]
    journal.write_snapshot(["T"], journal.rotate())
    journal.close()
    assert reload(tmp_path) == ["T"]


def test_crash_before_snapshot_rename_keeps_old_state(tmp_path):
    journal, _ = load(tmp_path)
    journal.append("a")
    journal.write_snapshot(["S"], journal.rotate())
    journal.append("b")
    journal.rotate()
    journal.append("c")
    journal.close()
    # The crashed compaction had written its whole temporary file, but never renamed it.
    with open(os.path.join(tmp_path, "snapshot.fj.tmp"), "wb") as file:
        file.write(encode_frame({"format": "faktory_py-journal", "version": 2, "kind": "snapshot", "next_segment": 3}))
        file.write(encode_frame("NEW"))
    journal, records = load(tmp_path)
    assert records == ["S", "b", "c"]
    assert not os.path.exists(os.path.join(tmp_path, "snapshot.fj.tmp"))
    journal.close()


def test_failed_snapshot_write_leaves_old_state(tmp_path, monkeypatch):
    journal, _ = load(tmp_path)
    journal.append("a")
    n = journal.rotate()
    journal.append("b")

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(journal_module.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        journal.write_snapshot(["S"], n)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["LOCK", "journal.00000001.fj", "journal.00000002.fj"]
    journal.append("c")
    journal.close()
    assert reload(tmp_path) == ["a", "b", "c"]


def test_crash_after_snapshot_rename_before_deleting_segments(tmp_path):
    journal, _ = load(tmp_path)
    journal.append("a")
    n = journal.rotate()
    journal.append("b")
    with open(seg(tmp_path, 1), "rb") as file:
        old_segment = file.read()
    journal.write_snapshot(["S"], n)
    journal.close()
    with open(seg(tmp_path, 1), "wb") as file:  # as if the deletion never happened
        file.write(old_segment)
    assert reload(tmp_path) == ["S", "b"]
    assert not os.path.exists(seg(tmp_path, 1))


def test_snapshot_of_nothing_and_no_segments(tmp_path):
    journal, _ = load(tmp_path)
    journal.append("a")
    journal.write_snapshot([], journal.rotate())
    journal.close()
    os.unlink(seg(tmp_path, 2))  # a header-only segment lost: nothing of value
    journal, records = load(tmp_path)
    assert records == []
    journal.append("b")
    journal.close()
    assert os.path.exists(seg(tmp_path, 2))
    assert reload(tmp_path) == ["b"]


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("append"), msgpack_values),
            st.tuples(st.just("append_many"), st.lists(msgpack_values, max_size=4)),
            st.tuples(st.just("rotate")),
            st.tuples(st.just("snapshot")),
            st.tuples(st.just("reopen")),
        ),
        max_size=25,
    )
)
def test_operations_match_a_list_model(ops):
    with tempfile.TemporaryDirectory() as directory:
        model: list[object] = []
        journal, _ = load(directory)
        position = 0
        try:
            for op, *args in ops:
                if op == "append":
                    model.append(args[0])
                    new = journal.append(args[0])
                    assert new > position
                    position = new
                elif op == "append_many":
                    model += args[0]
                    new = journal.append_many(args[0])
                    assert new >= position
                    position = new
                elif op == "rotate":
                    journal.rotate()
                elif op == "snapshot":
                    journal.write_snapshot(list(model), journal.rotate())
                else:
                    journal.close()
                    journal, records = load(directory)
                    assert records == model
                    position = 0
        finally:
            journal.close()
        assert reload(directory) == model


# --- concurrency and failures ---------------------------------------------------------


def test_fsync_from_another_thread_during_rotate_and_snapshot(tmp_path):
    journal, _ = load(tmp_path)
    done = threading.Event()
    errors: list[BaseException] = []
    covered: list[int] = []

    def syncer():
        try:
            while not done.is_set():
                covered.append(journal.fsync())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=syncer)
    thread.start()
    expected = []
    try:
        for i in range(300):
            last = journal.append(sample(i))
            expected.append(sample(i))
            if i % 50 == 49:
                n = journal.rotate()
                snapshotter = threading.Thread(target=journal.write_snapshot, args=(list(expected), n))
                snapshotter.start()
                for j in range(20):
                    last = journal.append(j)
                expected.extend(range(20))
                snapshotter.join()
    finally:
        done.set()
        thread.join()
    assert not errors
    assert covered == sorted(covered)
    assert journal.fsync() == last
    journal.close()
    assert reload(tmp_path) == expected


def test_partial_write_is_cut_off(tmp_path, monkeypatch):
    journal, _ = load(tmp_path)
    journal.append("a")
    real_write = os.write

    def write_half_then_fail(fd, data):
        if len(data) > 4:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module.os, "write", write_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        journal.append("b" * 100)
    monkeypatch.undo()
    journal.append("c")
    journal.close()
    assert reload(tmp_path) == ["a", "c"]


def test_failed_fsync_makes_the_journal_unusable(tmp_path, monkeypatch):
    journal, _ = load(tmp_path)
    journal.append("a")

    def fail(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module.os, "fdatasync", fail)
    with pytest.raises(OSError):
        journal.fsync()
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="failed earlier"):
        journal.fsync()
    with pytest.raises(RuntimeError, match="failed earlier"):
        journal.append("b")
    journal.close()
    assert reload(tmp_path) == ["a"]


# --- locking --------------------------------------------------------------------------


def test_second_open_is_refused_while_the_first_is_open(tmp_path):
    directory = tmp_path / "data" / "nested"
    journal, _ = load(directory)  # created if missing
    with pytest.raises(DataDirectoryInUse, match=f"data directory {directory} is in use by another process"):
        Journal.open(directory)
    journal.close()
    with Journal.open(directory) as again:
        assert list(again.replay()) == []
