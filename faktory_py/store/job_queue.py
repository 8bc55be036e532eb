"""One queue's pending jobs, oldest first, each kept as its compact JSON bytes.

Why bytes and not dicts: a queue can hold millions of jobs, and a decoded job is a tree
of Python objects (a dict, its keys, strings for every timestamp) costing several times
its JSON size. As one `bytes` object a queued job costs its JSON plus ~40 bytes, journal
replay and snapshots move the bytes as they are, and nothing is decoded until a job is
looked at (FETCH decodes only the head). Reading entries yields decoded job dicts, so
callers never see the encoding.

Every job also has a *position*: a number that is its own while it is queued (the head's is
`base`, each job appended gets the next), so an index kept beside the queue (throttles'
classes, protocol/spec.md §11.8) can name a job deep in it and `take` it without a scan.
A job taken from the middle leaves a hole (None) where it was, so the later positions stay
where they are; holes at the head are dropped as soon as they get there, so the head is
always a job and the head path costs what it did.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from ..util import jsoncodec


def encode(job: dict[str, Any]) -> bytes:
    """How a job is stored in a queue: compact UTF-8 JSON, as Go's encoder writes it.

    Copied into a bytes object of its own size: orjson's result keeps the 1 KiB buffer
    it was written into, which would quadruple what a queued job costs.
    """
    return memoryview(jsoncodec.dumps(job)).tobytes()


def decode(raw: bytes) -> dict[str, Any]:
    return jsoncodec.loads(raw)


class JobQueue:
    """A FIFO of encoded jobs (see the module docstring)."""

    __slots__ = ("_raws", "_base", "_holes", "_located", "_scanned", "_head")

    def __init__(self, raws: Iterable[bytes] = ()) -> None:
        self._raws: deque[bytes | None] = deque(raws)
        #: the position of `_raws[0]`
        self._base = 0
        #: how many entries of `_raws` are holes (None), none of them at the head
        self._holes = 0
        #: (jid, position) of the last job `at` read: where `pop` finds it without a scan
        self._located: tuple[str, int] | None = None
        #: the position after the last job a scan found: where the next scan starts
        self._scanned = 0
        #: (encoded, decoded) of the last head `head` read: FETCH reads the head, then
        #: reserving it pops it, which then decodes nothing (jobs are never mutated)
        self._head: tuple[bytes, dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self._raws) - self._holes

    def __bool__(self) -> bool:
        return bool(self._raws)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(decode, self._jobs())

    def _jobs(self) -> Iterator[bytes]:
        return (raw for raw in self._raws if raw is not None) if self._holes else iter(self._raws)  # type: ignore[arg-type]

    def head(self) -> dict[str, Any]:
        raw = self._raws[0]
        assert raw is not None
        job = decode(raw)
        self._head = (raw, job)
        return job

    @property
    def end(self) -> int:
        """The position the next job appended gets."""
        return self._base + len(self._raws)

    def positioned(self) -> Iterator[tuple[int, bytes]]:
        """(position, encoded job) of every job, in order (an index rebuilding itself)."""
        return ((self._base + index, raw) for index, raw in enumerate(self._raws) if raw is not None)

    def at(self, position: int) -> dict[str, Any] | None:
        """The job at `position`, None if it left. Deque indexing walks blocks of 64 entries
        in C, no job is decoded but this one; `pop` then takes it without a scan."""
        index = position - self._base
        if not 0 <= index < len(self._raws):
            return None
        raw = self._raws[index]
        if raw is None:
            return None
        job = decode(raw)
        self._located = (job["jid"], position)
        return job

    def page(self, start: int, count: int) -> list[dict[str, Any]]:
        """Jobs `start` to `start + count` (decoding only those)."""
        return list(map(decode, itertools.islice(self._jobs(), start, start + count)))

    def raws(self) -> list[bytes]:
        """A copy of the encoded jobs, in order (for snapshots)."""
        return list(self._jobs())

    def extend(self, raws: Iterable[bytes]) -> None:
        self._raws.extend(raws)

    def pop(self, jid: str) -> tuple[dict[str, Any], int]:
        """Take the job `jid` out, with the position it had: the head when live (FETCH takes
        the head), the job `at` last read (FETCH took it from an index), else a scan.

        The scan decodes only jobs whose bytes contain `"jid":<jid>` (every job with that
        jid does, being written by the same encoder), so deleting a few jobs from deep in
        a long queue does not decode the whole queue once per job. It starts after the job
        the last scan found, then wraps around: journal replay reserves jobs FETCH took from
        behind held-back ones (no `at` read there), one after the other, and each is then
        found next to the last instead of after all the held-back jobs again.
        """
        raws = self._raws
        raw = raws[0]
        cached = self._head
        # (the same bytes object decodes to an equal job: no need to ask where it came from)
        head = cached[1] if cached is not None and cached[0] is raw else decode(raw)  # type: ignore[arg-type]  # the head is never a hole
        if head["jid"] == jid:
            self._head = None
            position = self._base
            raws.popleft()
            self._base += 1
            if raws and raws[0] is None:
                self._popleft_holes()
            return head, position
        located = self._located
        if located is not None and located[0] == jid:
            index = located[1] - self._base
            raw = raws[index] if 0 <= index < len(raws) else None
            if raw is not None and (job := decode(raw))["jid"] == jid:
                self._hole(index)
                return job, located[1]
        needle = b'"jid":' + jsoncodec.dumps(jid)
        start = min(max(0, self._scanned - self._base), len(raws))
        for first, last in ((start, len(raws)), (0, start)):
            for index, raw in enumerate(itertools.islice(raws, first, last), first):
                if raw is not None and needle in raw:
                    job = decode(raw)
                    if job["jid"] == jid:
                        position = self._base + index
                        self._hole(index)
                        self._scanned = position + 1
                        return job, position
        raise KeyError(jid)

    def _popleft_holes(self) -> None:
        """Drop the holes the head left at the front."""
        raws = self._raws
        while raws and raws[0] is None:
            raws.popleft()
            self._base += 1
            self._holes -= 1

    def _hole(self, index: int) -> None:
        """Take the job at `index` out, the positions of the others staying theirs."""
        self._located = None
        if index == 0:
            self._raws.popleft()
            self._base += 1
            self._popleft_holes()
        else:
            self._raws[index] = None
            self._holes += 1

    def clear(self) -> None:
        self._base += len(self._raws)
        self._raws.clear()
        self._holes = 0
        self._located = None
        self._head = None
