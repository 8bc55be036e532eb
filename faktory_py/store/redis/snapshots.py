"""Snapshots of the state in Redis, sans-io: the records `Store.snapshot()` yields, as
journal frames packed into chunks of whole frames (protocol/spec.md §7.1).

The first frame is a header like a journal snapshot's, naming the log position the state
belongs to (`index`, `epoch` and `crc` of the entry it includes last): a loader applies
the records, then replays the stream from `index + 1`. A chunk is at most `chunk_bytes`
unless one frame alone is larger, so no single Redis value is huge (a replica's output
buffer limit, and memory spikes, scale with the largest value).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from ..journal import FORMAT, VERSION, JournalCorrupt, decode_frames, encode_frame
from .entries import Position

#: the target size of one chunk (`HSET snap:<gen> <i> <chunk>`)
CHUNK_BYTES = 1 << 20


def header(position: Position) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "kind": "snapshot", "index": position.index,
            "epoch": position.epoch, "crc": position.crc}


def encode_chunks(position: Position, records: Iterable[Any], chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The header and `records` as frames, packed into chunks of whole frames."""
    chunk: list[bytes] = []
    size = 0
    for record in _with_header(position, records):
        data = encode_frame(record)
        if chunk and size + len(data) > chunk_bytes:
            yield b"".join(chunk)
            chunk, size = [], 0
        chunk.append(data)
        size += len(data)
    yield b"".join(chunk)


def _with_header(position: Position, records: Iterable[Any]) -> Iterator[Any]:
    yield header(position)
    yield from records


def digest(chunks: Iterable[bytes]) -> int:
    """CRC32 over the chunks' CRC32s: one number that says a generation is the one written."""
    return zlib.crc32(b"".join(zlib.crc32(chunk).to_bytes(4, "big") for chunk in chunks))


def decode_chunks(chunks: Iterable[bytes], where: str) -> tuple[Position, Iterator[Any]]:
    """The position a snapshot belongs to, and its records (each chunk checked as it is
    read: a damaged snapshot is never loaded in part and then continued)."""
    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None:
        raise JournalCorrupt(where, None, "the snapshot has no chunks")
    frames = decode_frames(first, f"{where} chunk 0")
    head = next(frames)
    if not (isinstance(head, dict) and head.get("format") == FORMAT and head.get("kind") == "snapshot"
            and head.get("version") == VERSION):
        raise JournalCorrupt(where, 0, f"missing or invalid snapshot header {head!r}")
    try:
        position = Position(int(head["index"]), int(head["epoch"]), bytes(head["crc"]))
    except (KeyError, TypeError, ValueError):
        raise JournalCorrupt(where, 0, f"bad snapshot header {head!r}") from None

    def records() -> Iterator[Any]:
        yield from frames
        for number, chunk in enumerate(chunks, 1):
            yield from decode_frames(chunk, f"{where} chunk {number}")

    return position, records()
