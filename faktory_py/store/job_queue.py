"""One queue's pending jobs, oldest first, each kept as its compact JSON bytes, packed.

Why bytes and not dicts: a queue can hold millions of jobs, and a decoded job is a tree
of Python objects (a dict, its keys, strings for every timestamp) costing several times
its JSON size. Why packed: one `bytes` object per job would add ~41 bytes to each (the
object's header, a deque slot, the allocator's rounding), a fifth of a typical job. So a
queue is a run of *chunks*: `_SLOTS` consecutive jobs' bytes back to back in one buffer,
with an array of where each ends, and a queued job costs its JSON plus 2 to 4 bytes. Snapshots
write a chunk as it is (`frozen`, the store's `enqueue_packed` op) and replay takes it back
as it is, so a restart neither creates nor joins an object per job; nothing is decoded
until a job is looked at (FETCH decodes only the head). Reading entries yields decoded job
dicts, so callers never see the encoding.

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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..util import jsoncodec

#: Jobs per chunk: the chunk's own cost (~200 bytes) spread over them is under a byte per
#: job, while a chunk stays small enough to copy when it is compacted or snapshotted.
_SLOTS = 256
#: The array types a chunk's offsets may have, the smallest that holds them is taken: a
#: chunk of jobs of up to 256 bytes costs 2 bytes per job, of up to 16 MiB 4.
_OFFSETS = ("H", "I", "Q")


def encode(job: dict[str, Any]) -> bytes:
    """How a job is stored in a queue: compact UTF-8 JSON, as Go's encoder writes it.

    Copied into a bytes object of its own size: orjson's result keeps the 1 KiB buffer
    it was written into, which would quadruple what a job costs until it is packed.
    """
    return memoryview(jsoncodec.dumps(job)).tobytes()


#: a queued job back from its bytes (`jsoncodec.loads` itself: every FETCH decodes its job, and
#: a wrapper would be one more call)
decode = jsoncodec.loads


class _Chunk:
    """Up to `_SLOTS` consecutive positions of a queue. The queue's last chunk, until it is
    full, keeps its jobs as they came (`pending`: one bytes object each, None for a slot
    that left); a full chunk is *sealed*: the jobs' bytes back to back in `data`, allocated
    once at their exact size (a buffer grown job by job would leave the allocator holes
    that cost as much as the packing saves)."""

    __slots__ = ("pending", "data", "ends", "gone", "dead")

    def __init__(self, data: bytes = b"", ends: Sequence[int] | None = None) -> None:
        """A chunk filling up, or (given `ends`) a sealed one."""
        self.pending: list[bytes | None] | None = [] if ends is None else None
        self.data = data
        #: once sealed, slot i's job is data[ends[i - 1]:ends[i]] (slot 0's starts at 0);
        #: unused while filling up (`pack` sets it), so a chunk filling up shares one empty
        #: array (most queues are short: a queue's first chunk is often its only one)
        self.ends = _NO_ENDS if ends is None else _offsets(ends)
        #: gone[i] is 1 when slot i is a hole; None until the chunk has one
        self.gone: bytearray | None = None
        #: holes of a sealed chunk whose bytes are still in `data`
        self.dead = 0

    def __len__(self) -> int:
        """Its slots, taken ones included."""
        return len(self.pending) if self.pending is not None else len(self.ends)

    def raw(self, slot: int) -> bytes:
        if self.pending is not None:
            return self.pending[slot]  # type: ignore[return-value]  # a live slot
        ends = self.ends
        return self.data[ends[slot - 1] if slot else 0:ends[slot]]

    def live(self, slot: int) -> bool:
        return self.gone is None or not self.gone[slot]

    def holding(self, needle: bytes, low: int, high: int) -> Iterator[int]:
        """The live slots in [low, high) whose job's bytes contain `needle` (a sealed chunk:
        one search of its bytes, in C)."""
        if self.pending is not None:
            for slot in range(low, high):
                raw = self.pending[slot]
                if raw is not None and needle in raw:
                    yield slot
            return
        data, ends = self.data, self.ends
        at, stop = ends[low - 1] if low else 0, ends[high - 1] if high else 0
        while (match := data.find(needle, at, stop)) >= 0:
            slot = bisect_right(ends, match)
            if self.live(slot):
                yield slot
            at = ends[slot]

    def add(self, raws: list[bytes]) -> None:
        """Append `raws` (no more than the slots left); a chunk that becomes full is sealed."""
        pending = self.pending
        assert pending is not None
        pending.extend(raws)
        if len(pending) == _SLOTS:
            self.pending = None
            self.pack(pending if None not in pending else [raw or b"" for raw in pending])  # type: ignore[arg-type]

    def pack(self, raws: list[bytes]) -> None:
        """Seal the chunk as `raws` (b"" for a slot that left)."""
        ends = list(itertools.accumulate(map(len, raws)))
        self.data = b"".join(raws)
        self.ends = _offsets(ends)

    def take(self, slot: int, first: int) -> None:
        """The job at `slot` left, the head's being at `first`: its bytes go now (pending) or
        once holes hold a quarter of the chunk (sealed; `compact`)."""
        if self.gone is None:
            self.gone = bytearray(_SLOTS)
        self.gone[slot] = 1
        if self.pending is not None:
            self.pending[slot] = None
        else:
            self.dead += 1
            if self.dead * 4 >= _SLOTS:
                self.compact(first)

    def compact(self, first: int) -> None:
        """Drop the bytes of the holes and of the slots before `first` (already taken); new
        objects replace the old ones, which a snapshot may still be reading."""
        ends, data = self.ends, self.data
        raws = [data[ends[slot - 1] if slot else 0:end] if slot >= first and self.live(slot) else b""
                for slot, end in enumerate(ends)]
        self.pack(raws)
        self.dead = 0

    def frozen(self, first: int) -> tuple[bytes, array[int]]:
        """Its jobs from slot `first` on, as they are now, packed (bytes back to back, where
        each ends): a sealed chunk without holes shares its bytes and offsets, which are
        replaced, never changed."""
        if self.pending is None and self.gone is None and first == 0:
            return self.data, self.ends
        raws = [self.raw(slot) for slot in range(first, len(self)) if self.live(slot)]
        return b"".join(raws), array("Q", itertools.accumulate(map(len, raws)))


_NO_ENDS: array[int] = array(_OFFSETS[0])


def _offsets(ends: Sequence[int]) -> array[int]:
    """`ends` in the smallest of the `_OFFSETS` types that holds them."""
    for typecode in _OFFSETS[:-1]:
        try:
            return array(typecode, ends)
        except OverflowError:
            continue
    return array(_OFFSETS[-1], ends)


def unpack(data: bytes, ends: Sequence[int]) -> Iterator[bytes]:
    """The jobs of a packed run (`JobQueue.frozen`), one bytes object each."""
    start = 0
    for end in ends:
        yield data[start:end]
        start = end


class JobQueue:
    """A FIFO of encoded jobs (see the module docstring)."""

    __slots__ = ("_chunks", "_origin", "_first", "_count", "_located", "_scanned", "_head")

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
        #: (position, decoded) of the last head `head` read: FETCH reads the head, then
        #: reserving it pops it, which then decodes nothing (jobs are never mutated)
        self._head: tuple[int, dict[str, Any]] | None = None
        self.extend(raws)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (decode(raw) for _position, raw in self.positioned())

    def head(self) -> dict[str, Any]:
        position = self._origin + self._first
        cached = self._head
        if cached is not None and cached[0] == position:  # positions are never reused
            return cached[1]
        job = decode(self._chunks[0].raw(self._first))
        self._head = (position, job)
        return job

    def head_stored(self) -> tuple[dict[str, Any], bytes]:
        """The head, decoded (as `head`), and its bytes as they are stored: what FETCH
        answers (the reply is the stored job, protocol/spec.md §3 FETCH)."""
        return self.head(), self._chunks[0].raw(self._first)

    @property
    def end(self) -> int:
        """The position the next job appended gets."""
        chunks = self._chunks
        return self._origin + (len(chunks) - 1) * _SLOTS + len(chunks[-1]) if chunks else self._origin

    def positioned(self) -> Iterator[tuple[int, bytes]]:
        """(position, encoded job) of every job, in order (an index rebuilding itself)."""
        first, origin = self._first, self._origin
        for chunk in self._chunks:
            for slot in range(first, len(chunk)):
                if chunk.live(slot):
                    yield origin + slot, chunk.raw(slot)
            first, origin = 0, origin + _SLOTS

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
            live = len(chunk) - first - (chunk.gone.count(1, first) if chunk.gone else 0)
            if start >= live:
                start -= live
            else:
                slots = (slot for slot in range(first, len(chunk)) if chunk.live(slot))
                jobs.extend(decode(chunk.raw(slot)) for slot in itertools.islice(slots, start, start + count - len(jobs)))
                start = 0
            first = 0
        return jobs

    def frozen(self) -> list[tuple[bytes, array[int]]]:
        """The jobs as they are now, packed in runs (bytes back to back, where each ends:
        `extend_packed` takes them back), for snapshots: to be read later, from another
        thread, while the queue goes on changing. Only the first and last chunks and those
        with holes are copied; the others are shared."""
        first, runs = self._first, []
        for chunk in self._chunks if self._count else ():  # (an emptied queue keeps a chunk: `_advance`)
            runs.append(chunk.frozen(first))
            first = 0
        return runs

    def extend(self, raws: Iterable[bytes]) -> int:
        """Append `raws`; returns the position of the first of them."""
        raws = raws if isinstance(raws, list) else list(raws)
        chunks = self._chunks
        if not chunks:
            if not raws:
                return self._origin
            chunks.append(_Chunk())
        pending = chunks[-1].pending
        if pending is not None and len(pending) + len(raws) < _SLOTS:  # PUSH's path: into the last chunk, not filling it
            first = self._origin + (len(chunks) - 1) * _SLOTS + len(pending)
            pending.extend(raws)
            self._count += len(raws)
            return first
        first = self.end
        done = 0
        while done < len(raws):
            if not chunks or len(chunks[-1]) == _SLOTS:
                chunks.append(_Chunk())
            chunk = chunks[-1]
            part = raws[done:done + _SLOTS - len(chunk)]
            chunk.add(part)
            done += len(part)
        self._count += len(raws)
        return first

    def extend_packed(self, data: bytes, ends: Sequence[int]) -> None:
        """Append a packed run of jobs (`frozen`). A run of a full chunk's jobs after a full
        chunk becomes a chunk as it is, sharing `data`; a shorter one into an empty queue
        takes a chunk's last slots, so that the full runs after it (a snapshot's) do too.
        Others are unpacked and appended job by job."""
        chunks = self._chunks
        if len(chunks) == 1 and not len(chunks[0]):  # an emptied queue's chunk (`_advance`): nothing to fill
            chunks.clear()
        lead = _SLOTS - len(ends)
        if not ends or lead < 0 or chunks and (lead or len(chunks[-1]) != _SLOTS):
            self.extend(list(unpack(data, ends)))
            return
        chunk = _Chunk(data, ends)
        if lead:
            chunk.ends[:0] = array(chunk.ends.typecode, bytes(lead * chunk.ends.itemsize))
            self._origin -= lead  # the run's first job keeps the position an append gives it
            self._first = lead
        chunks.append(chunk)
        self._count += len(ends)

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
            self._head = None
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
            for slot in chunk.holding(needle, max(low - origin, 0), min(high - origin, len(chunk))):
                if (job := decode(chunk.raw(slot)))["jid"] == jid:
                    return job, self._origin + origin + slot, chunk, slot
        return None

    def _advance(self) -> None:
        """The head left: the next job becomes the head (holes and used-up chunks go)."""
        self._count -= 1
        self._located = None
        chunks = self._chunks
        if not self._count:
            chunk = chunks[0]
            pending = chunk.pending
            if pending is not None and len(chunks) == 1:
                # the queue is empty, its one chunk filling up: it starts again at its slot 0,
                # at the position the next job gets, so a queue that empties at every FETCH
                # (workers waiting for each job) does not make a chunk at every PUSH
                self._origin += len(pending)
                self._first = 0
                pending.clear()
                chunk.gone = None
            else:
                self.clear()
            return
        chunk, first = chunks[0], self._first
        if chunk.pending is not None:
            chunk.pending[first] = None
        first += 1
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
        chunk.take(slot, self._first if chunk is self._chunks[0] else 0)

    def clear(self) -> None:
        self._origin = self.end
        self._first = 0
        self._chunks.clear()
        self._count = 0
        self._located = None
        self._head = None
