"""A set of jobs ordered by a score (unix time), keyed by jid.

Faktory keeps `scheduled`, `retries`, `dead` and `working` as Redis sorted sets; we keep
the same shape in memory: O(1) lookup by jid, O(log n) insert/remove, and ordered
iteration for "what is due now" and for paging.
"""

from __future__ import annotations

from collections.abc import Iterator
from heapq import heapify, heappop, heappush
from typing import Any

from sortedcontainers import SortedList


class SortedJobSet:
    """jid → (score, entry), iterable in (score, jid) order. Entries are opaque to the set."""

    __slots__ = ("_by_jid", "_order")

    def __init__(self) -> None:
        self._by_jid: dict[str, tuple[float, Any]] = {}
        self._order: SortedList = SortedList()

    def __len__(self) -> int:
        return len(self._by_jid)

    def __contains__(self, jid: str) -> bool:
        return jid in self._by_jid

    def add(self, jid: str, score: float, entry: Any) -> None:
        """Insert, replacing any entry with the same jid (its score may change)."""
        self.remove(jid)
        self._by_jid[jid] = (score, entry)
        self._order.add((score, jid))

    def remove(self, jid: str) -> Any | None:
        """Remove and return the entry for jid, or None if absent."""
        found = self._by_jid.pop(jid, None)
        if found is None:
            return None
        self._order.remove((found[0], jid))
        return found[1]

    def get(self, jid: str) -> tuple[float, Any] | None:
        return self._by_jid.get(jid)

    def first_score(self) -> float | None:
        # (the dict's truth, not the SortedList's `__len__`: unique's lock set is asked at every ACK)
        return self._order[0][0] if self._by_jid else None

    def due(self, now: float) -> list[tuple[float, str, Any]]:
        """Entries with score <= now, earliest first (a list: callers change the set)."""
        out = []
        for score, jid in self._order:
            if score > now:
                break
            out.append((score, jid, self._by_jid[jid][1]))
        return out

    def items(self) -> Iterator[tuple[float, str, Any]]:
        """(score, jid, entry) in score order."""
        for score, jid in self._order:
            yield score, jid, self._by_jid[jid][1]

    def page(self, offset: int, limit: int) -> list[tuple[float, str, Any]]:
        """Up to `limit` entries from position `offset` in score order.

        Touches only the entries returned (O(log n + limit)), so a web page of a set with
        100k jobs costs the same as one of a set with 30.
        """
        return [(score, jid, self._by_jid[jid][1])
                for score, jid in self._order.islice(offset, offset + limit)]

    def clear(self) -> None:
        self._by_jid.clear()
        self._order.clear()

    def copy(self) -> SortedJobSet:
        clone = SortedJobSet()
        clone._by_jid = dict(self._by_jid)
        clone._order = self._order.copy()
        return clone


class LazyJobSet:
    """`SortedJobSet`'s interface for the reservations (`working`), whose order is read
    rarely: every FETCH adds one entry and every ACK removes one, while the order matters
    only to the due timer (the earliest score, and the entries due when one is) and to a
    web page or a snapshot. A `SortedList` costs ~1 µs per job for keeping that order; here
    an entry is a dict item plus a `(score, jid)` on a heap, which a removal leaves behind
    (stale: its jid gone, or back with another score) until it reaches the top or the heap
    is rebuilt (when stale ones outnumber the live). Reading in order sorts the live entries
    (O(n log n), as reading them all costs O(n) anyway); `due` sorts only those due, and
    when the earliest is not due, nothing at all.
    """

    __slots__ = ("_by_jid", "_heap")

    def __init__(self) -> None:
        self._by_jid: dict[str, tuple[float, Any]] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._by_jid)

    def __contains__(self, jid: str) -> bool:
        return jid in self._by_jid

    def add(self, jid: str, score: float, entry: Any) -> None:
        """Insert, replacing any entry with the same jid (its score may change)."""
        by_jid, heap = self._by_jid, self._heap
        by_jid[jid] = (score, entry)
        heappush(heap, (score, jid))
        if len(heap) > 2 * len(by_jid) + 64:
            self._heap = [(score, jid) for jid, (score, _entry) in by_jid.items()]
            heapify(self._heap)

    def remove(self, jid: str) -> Any | None:
        """Remove and return the entry for jid, or None if absent."""
        found = self._by_jid.pop(jid, None)
        return None if found is None else found[1]

    def get(self, jid: str) -> tuple[float, Any] | None:
        return self._by_jid.get(jid)

    def first_score(self) -> float | None:
        heap, by_jid = self._heap, self._by_jid
        while heap:
            score, jid = heap[0]
            found = by_jid.get(jid)
            if found is not None and found[0] == score:
                return score
            heappop(heap)  # stale
        return None

    def due(self, now: float) -> list[tuple[float, str, Any]]:
        """Entries with score <= now, earliest first (a list: callers change the set)."""
        first = self.first_score()
        if first is None or first > now:
            return []
        return sorted((score, jid, entry) for jid, (score, entry) in self._by_jid.items() if score <= now)

    def items(self) -> Iterator[tuple[float, str, Any]]:
        """(score, jid, entry) in score order."""
        return iter(self._sorted())

    def page(self, offset: int, limit: int) -> list[tuple[float, str, Any]]:
        """Up to `limit` entries from position `offset` in score order."""
        return self._sorted()[offset:offset + limit]

    def _sorted(self) -> list[tuple[float, str, Any]]:
        # (score, jid) is unique per entry, so the entries never compare
        return sorted((score, jid, entry) for jid, (score, entry) in self._by_jid.items())

    def clear(self) -> None:
        self._by_jid.clear()
        self._heap.clear()

    def copy(self) -> LazyJobSet:
        clone = LazyJobSet()
        clone._by_jid = dict(self._by_jid)
        clone._heap = list(self._heap)
        return clone
