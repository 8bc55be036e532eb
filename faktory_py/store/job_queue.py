"""One queue's pending jobs, oldest first, each kept as its compact JSON bytes, packed.

Why bytes and not dicts: a queue can hold millions of jobs, and a decoded job is a tree
of Python objects (a dict, its keys, strings for every timestamp) costing several times
its JSON size. Why packed: one `bytes` object per job would add ~41 bytes to each (the
object's header, a deque slot, the allocator's rounding), a fifth of a typical job. So a
queue is a run of *chunks*: `_SLOTS` consecutive jobs' bytes back to back in one buffer,
with an array of where each ends, and a queued job costs its JSON plus 4 bytes. Journal
replay joins a record's jobs into chunks at C speed; nothing is decoded until a job is
looked at (FETCH decodes only the head). Reading entries yields decoded job dicts, so
callers never see the encoding.

Every job also has a *position*: a number that is its own while it is queued (the head's is
`base`, each job appended gets the next), so an index kept beside the queue (throttles'
classes, protocol/spec.md §11.8) can name a job deep in it and `take` it without a scan.
Position p lives in chunk (p - origin) // _SLOTS, where `origin` is the position of the
first chunk's first slot: every chunk but the last holds exactly `_SLOTS` slots. A job
taken from the middle leaves a hole (its slot marked gone), so the later positions stay
where they are; a chunk drops its holes' bytes once they are a quarter of its slots.
Holes at the head are skipped as soon as they get there, so the head is always a job and
the head path costs what it did; a chunk leaves when its last slot has.
"""

from __future__ import annotations

import itertools
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from ..util import jsoncodec

#: Jobs per chunk: the chunk's own cost (~200 bytes) spread over them is under a byte per
#: job, while a chunk stays small enough to copy when it is compacted or snapshotted.
_SLOTS = 256
#: The array type of a chunk's offsets; a chunk whose bytes outgrow it widens to "Q".
_OFFSETS = "I"


def encode(job: dict[str, Any]) -> bytes:
    """How a job is stored in a queue: compact UTF-8 JSON, as Go's encoder writes it.

    Copied into a bytes object of its own size: orjson's result keeps the 1 KiB buffer
    it was written into, which would quadruple what a job costs until it is packed.
    """
    return memoryview(jsoncodec.dumps(job)).tobytes()


def decode(raw: bytes) -> dict[str, Any]:
    return jsoncodec.loads(raw)


class _Chunk:
    """Up to `_SLOTS` consecutive positions of a queue: the jobs' bytes back to back."""

    __slots__ = ("data", "ends", "gone", "dead")

    def __init__(self) -> None:
        #: a bytearray while this is the queue's last chunk and has room, then bytes
        self.data: bytes | bytearray = bytearray()
        #: slot i's job is data[ends[i - 1]:ends[i]] (slot 0's starts at 0)
        self.ends = array(_OFFSETS)
        #: gone[i] is 1 when slot i is a hole; None until the chunk has one
        self.gone: bytearray | None = None
        #: holes whose bytes are still in `data`
        self.dead = 0

    def raw(self, slot: int) -> bytes:
        ends = self.ends
        raw = self.data[ends[slot - 1] if slot else 0:ends[slot]]
        return raw if isinstance(raw, bytes) else bytes(raw)

    def live(self, slot: int) -> bool:
        return self.gone is None or not self.gone[slot]

    def holding(self, needle: bytes, low: int, high: int) -> Iterator[int]:
        """The slots in [low, high) holding a job whose bytes contain `needle`: one search
        of the chunk's bytes, in C."""
        data, ends = self.data, self.ends
        at, stop = ends[low - 1] if low else 0, ends[high - 1] if high else 0
        while (match := data.find(needle, at, stop)) >= 0:
            slot = bisect_right(ends, match)
            if self.live(slot):
                yield slot
            at = ends[slot]

    def fill(self, raws: list[bytes]) -> None:
        """Append `raws` (no more than the slots left); a chunk that becomes full is sealed."""
        size = len(self.data)
        if (size + sum(map(len, raws))) >> (8 * self.ends.itemsize):
            self.ends = array("Q", self.ends)
        empty = not self.ends
        self.ends.extend(itertools.islice(itertools.accumulate(map(len, raws), initial=size), 1, None))
        if empty and len(raws) == _SLOTS:
            self.data = b"".join(raws)
        else:
            self.data += b"".join(raws)
            if len(self.ends) == _SLOTS:
                self.data = bytes(self.data)

    def compact(self, first: int) -> None:
        """Drop the bytes of the holes and of the slots before `first` (already taken);
        new objects replace the old ones, which a snapshot may still be reading."""
        ends, data, gone = self.ends, self.data, self.gone
        parts = []
        kept = array(ends.typecode)
        size = start = 0
        for slot, end in enumerate(ends):
            if slot >= first and (gone is None or not gone[slot]):
                parts.append(data[start:end])
                size += end - start
            kept.append(size)
            start = end
        joined = b"".join(parts)
        self.data = bytearray(joined) if isinstance(data, bytearray) else joined
        self.ends = kept
        self.dead = 0


def _live(data: bytes | bytearray, ends: array[int], gone: bytes | bytearray | None,
          first: int) -> Iterator[tuple[int, bytes]]:
    """(slot, bytes) of the jobs of a chunk's parts, from slot `first` on."""
    start = ends[first - 1] if first else 0
    for slot in range(first, len(ends)):
        end = ends[slot]
        if gone is None or not gone[slot]:
            raw = data[start:end]
            yield slot, raw if isinstance(raw, bytes) else bytes(raw)
        start = end


class JobQueue:
    """A FIFO of encoded jobs (see the module docstring)."""

    __slots__ = ("_chunks", "_origin", "_first", "_count", "_located", "_scanned")

    def __init__(self, raws: Iterable[bytes] = ()) -> None:
        #: never empty while a job is queued, emptied when the last one leaves
        self._chunks: deque[_Chunk] = deque()
        #: the position of `_chunks[0]`'s slot 0; without chunks, the next position
        self._origin = 0
        #: the slot of the head in `_chunks[0]`
        self._first = 0
        self._count = 0
        #: (jid, position) of the last job `at` read: where `pop` finds it without a scan
        self._located: tuple[str, int] | None = None
        #: the position after the last job a scan found: where the next scan starts
        self._scanned = 0
        self.extend(raws)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(decode, self._jobs())

    def _jobs(self) -> Iterator[bytes]:
        return (raw for _position, raw in self.positioned())

    def head(self) -> dict[str, Any]:
        return decode(self._chunks[0].raw(self._first))

    @property
    def end(self) -> int:
        """The position the next job appended gets."""
        chunks = self._chunks
        return self._origin + (len(chunks) - 1) * _SLOTS + len(chunks[-1].ends) if chunks else self._origin

    def positioned(self) -> Iterator[tuple[int, bytes]]:
        """(position, encoded job) of every job, in order (an index rebuilding itself)."""
        first = self._first
        for index, chunk in enumerate(self._chunks):
            origin = self._origin + index * _SLOTS
            for slot, raw in _live(chunk.data, chunk.ends, chunk.gone, first):
                yield origin + slot, raw
            first = 0

    def _slot(self, position: int) -> tuple[_Chunk, int] | None:
        """The chunk and slot of the job at `position`, None if it left. Deque indexing walks
        blocks of 64 chunks in C; nothing is decoded."""
        index = position - self._origin
        if index < self._first or position >= self.end:
            return None
        chunk_index, slot = divmod(index, _SLOTS)
        chunk = self._chunks[chunk_index]
        return (chunk, slot) if chunk.live(slot) else None

    def at(self, position: int) -> dict[str, Any] | None:
        """The job at `position`, None if it left; no job is decoded but this one, and `pop`
        then takes it without a scan."""
        found = self._slot(position)
        if found is None:
            return None
        job = decode(found[0].raw(found[1]))
        self._located = (job["jid"], position)
        return job

    def page(self, start: int, count: int) -> list[dict[str, Any]]:
        """Jobs `start` to `start + count`, stepping over whole chunks before them (decoding
        only those)."""
        jobs: list[dict[str, Any]] = []
        first = self._first
        for chunk in self._chunks:
            if len(jobs) == count:
                break
            live = len(chunk.ends) - first - (chunk.gone.count(1, first) if chunk.gone else 0)
            if start >= live:
                start -= live
            else:
                for _slot, raw in itertools.islice(_live(chunk.data, chunk.ends, chunk.gone, first),
                                                   start, start + count - len(jobs)):
                    jobs.append(decode(raw))
                start = 0
            first = 0
        return jobs

    def frozen(self) -> Iterator[bytes]:
        """The encoded jobs, in order, as they are now (for snapshots): copied here, read
        later, from another thread while the queue goes on changing. Full chunks are shared,
        not copied: their bytes and offsets are only ever replaced, never changed."""
        parts = []
        first = self._first
        for chunk in self._chunks:
            gone = None if chunk.gone is None else bytes(chunk.gone)
            if isinstance(chunk.data, bytearray):  # the last chunk, still filling
                parts.append((bytes(chunk.data), array(chunk.ends.typecode, chunk.ends), gone, first))
            else:
                parts.append((chunk.data, chunk.ends, gone, first))
            first = 0
        return (raw for part in parts for _slot, raw in _live(*part))

    def extend(self, raws: Iterable[bytes]) -> None:
        raws = raws if isinstance(raws, list) else list(raws)
        chunks = self._chunks
        done = 0
        while done < len(raws):
            if not chunks or len(chunks[-1].ends) == _SLOTS:
                chunks.append(_Chunk())
            chunk = chunks[-1]
            part = raws[done:done + _SLOTS - len(chunk.ends)]
            chunk.fill(part)
            done += len(part)
        self._count += len(raws)

    def pop(self, jid: str) -> tuple[dict[str, Any], int]:
        """Take the job `jid` out, with the position it had: the head when live (FETCH takes
        the head), the job `at` last read (FETCH took it from an index), else a scan.

        The scan searches each chunk's bytes for `"jid":<jid>` (every job with that jid
        holds it, being written by the same encoder) and decodes only the jobs where it is
        found, so deleting a few jobs from deep in a long queue does not decode the whole
        queue once per job. It starts after the job the last scan found, then wraps around:
        journal replay reserves jobs FETCH took from behind held-back ones (no `at` read
        there), one after the other, and each is then found next to the last instead of
        after all the held-back jobs again.
        """
        if not self._count:
            raise KeyError(jid)
        head = self.head()
        if head["jid"] == jid:
            position = self._origin + self._first
            self._advance()
            return head, position
        located = self._located
        if located is not None and located[0] == jid:
            found = self._slot(located[1])
            if found is not None and (job := decode(found[0].raw(found[1])))["jid"] == jid:
                self._hole(located[1], *found)
                return job, located[1]
        needle = b'"jid":' + jsoncodec.dumps(jid)
        start = min(max(self._origin + self._first, self._scanned), self.end)
        for first, last in ((start, self.end), (self._origin + self._first, start)):
            found_at = self._search(needle, jid, first, last)
            if found_at is not None:
                job, position, chunk, slot = found_at
                self._hole(position, chunk, slot)
                self._scanned = position + 1
                return job, position
        raise KeyError(jid)

    def _search(self, needle: bytes, jid: str, first: int, last: int) -> tuple[dict[str, Any], int, _Chunk, int] | None:
        """The job `jid` at a position in [first, last), with its chunk and slot."""
        if first >= last:
            return None
        low, high = first - self._origin, last - self._origin
        chunks = itertools.islice(self._chunks, low // _SLOTS, (high - 1) // _SLOTS + 1)
        for index, chunk in enumerate(chunks, low // _SLOTS):
            origin = index * _SLOTS
            for slot in chunk.holding(needle, max(low - origin, 0), min(high - origin, len(chunk.ends))):
                if (job := decode(chunk.raw(slot)))["jid"] == jid:
                    return job, self._origin + origin + slot, chunk, slot
        return None

    def _advance(self) -> None:
        """The head left: the next job becomes the head (holes and used-up chunks go)."""
        self._count -= 1
        self._located = None
        if not self._count:
            self.clear()
            return
        chunks = self._chunks
        chunk, first = chunks[0], self._first + 1
        while True:
            if first == _SLOTS:  # a full chunk used up; a job follows, so another chunk does
                chunks.popleft()
                self._origin += _SLOTS
                chunk, first = chunks[0], 0
            if chunk.live(first):
                break
            first += 1
        self._first = first

    def _hole(self, position: int, chunk: _Chunk, slot: int) -> None:
        """Take the job at `position` out, the positions of the others staying theirs."""
        if position == self._origin + self._first:
            self._advance()
            return
        self._located = None
        self._count -= 1
        if chunk.gone is None:
            chunk.gone = bytearray(_SLOTS)
        chunk.gone[slot] = 1
        chunk.dead += 1
        if chunk.dead * 4 >= _SLOTS:
            chunk.compact(self._first if chunk is self._chunks[0] else 0)

    def clear(self) -> None:
        self._origin = self.end
        self._first = 0
        self._chunks.clear()
        self._count = 0
        self._located = None
