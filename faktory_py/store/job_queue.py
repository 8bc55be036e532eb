"""One queue's pending jobs, oldest first, each kept as its compact JSON bytes.

Why bytes and not dicts: a queue can hold millions of jobs, and a decoded job is a tree
of Python objects (a dict, its keys, strings for every timestamp) costing several times
its JSON size. As one `bytes` object a queued job costs its JSON plus ~40 bytes, journal
replay and snapshots move the bytes as they are, and nothing is decoded until a job is
looked at (FETCH decodes only the head). Reading entries yields decoded job dicts, so
callers never see the encoding.
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

    __slots__ = ("_raws",)

    def __init__(self, raws: Iterable[bytes] = ()) -> None:
        self._raws: deque[bytes] = deque(raws)

    def __len__(self) -> int:
        return len(self._raws)

    def __bool__(self) -> bool:
        return bool(self._raws)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(decode, self._raws)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return decode(self._raws[index])

    def page(self, start: int, count: int) -> list[dict[str, Any]]:
        """Jobs `start` to `start + count` (decoding only those)."""
        return list(map(decode, itertools.islice(self._raws, start, start + count)))

    def raws(self) -> list[bytes]:
        """A copy of the encoded jobs, in order (for snapshots)."""
        return list(self._raws)

    def extend(self, raws: Iterable[bytes]) -> None:
        self._raws.extend(raws)

    def pop(self, jid: str) -> dict[str, Any]:
        """Take the job `jid` out: the head when live (FETCH takes the head), else a scan.

        The scan decodes only jobs whose bytes contain `"jid":<jid>` (every job with that
        jid does, being written by the same encoder), so deleting a few jobs from deep in
        a long queue does not decode the whole queue once per job.
        """
        head = decode(self._raws[0])
        if head["jid"] == jid:
            self._raws.popleft()
            return head
        needle = b'"jid":' + jsoncodec.dumps(jid)
        for index, raw in enumerate(self._raws):
            if needle in raw:
                job = decode(raw)
                if job["jid"] == jid:
                    del self._raws[index]
                    return job
        raise KeyError(jid)

    def clear(self) -> None:
        self._raws.clear()
