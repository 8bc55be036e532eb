"""Op-log entries: one stream entry per journal frame (protocol/spec.md §7.1).

An entry's id is `<index>-0` (dense, from 1); its fields are `e` (the epoch of the primary
that appended it), `t` (the Redis master's clock in ms, set by the append script) and `f`:
exactly the bytes store/journal.py writes for the same record, so replaying an entry is
replaying a journal frame, CRCs included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..journal import JournalCorrupt, decode_frame


@dataclass(frozen=True)
class Position:
    """Where a replica of the log is: the last applied index, its epoch and frame CRC
    (the 4 payload-CRC bytes of the frame header; all zero-length before the first entry)."""

    index: int = 0
    epoch: int = 0
    crc: bytes = b""


def entry_id(index: int) -> str:
    return f"{index}-0"


def frame_crc(frame: bytes) -> bytes:
    """The payload CRC a frame carries in its header (bytes 4..8): `meta.head_crc`."""
    return bytes(frame[4:8])


def index_of(identifier: bytes | str) -> int:
    """The log index of a stream id `<index>-0`; raises JournalCorrupt for any other id."""
    text = identifier.decode() if isinstance(identifier, bytes) else identifier
    ms, _, seq = text.partition("-")
    if not (ms.isdigit() and seq == "0"):
        raise JournalCorrupt("redis op log", None, f"unexpected entry id {text!r}")
    return int(ms)


@dataclass(frozen=True)
class Entry:
    """One decoded entry: its ops, and the position it leads to."""

    index: int
    epoch: int
    time_ms: int
    ops: list[Any]

    @property
    def where(self) -> str:
        return f"redis op log entry {entry_id(self.index)}"


def decode_entry(identifier: bytes | str, fields: dict[bytes, bytes], after: Position) -> tuple[Entry, Position]:
    """Decode the entry that must follow `after`; raises JournalCorrupt when it does not
    (a gap: entries were lost or trimmed) or when its frame is damaged: a bad entry is
    never skipped."""
    index = index_of(identifier)
    where = f"redis op log entry {entry_id(index)}"
    if index != after.index + 1:
        raise JournalCorrupt(where, None, f"expected index {after.index + 1} after {after.index}")
    try:
        epoch, time_ms, frame = int(fields[b"e"]), int(fields[b"t"]), fields[b"f"]
    except (KeyError, ValueError):
        raise JournalCorrupt(where, None, "missing or malformed fields e, t, f") from None
    if epoch < after.epoch:
        raise JournalCorrupt(where, None, f"epoch {epoch} after epoch {after.epoch}")
    record = decode_frame(frame, where)
    if not isinstance(record, list):
        raise JournalCorrupt(where, None, "the frame does not hold a list of ops")
    return Entry(index, epoch, time_ms, record), Position(index, epoch, frame_crc(frame))
