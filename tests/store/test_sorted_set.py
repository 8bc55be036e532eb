"""The reservations' `LazyJobSet` (store/sorted_set.py) answers every read as `SortedJobSet`
does, whatever mix of adds (new jids, the same jid again with another or the same score),
removals and clears came before: its heap keeps stale entries, which must never show."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from faktory_py.store.sorted_set import LazyJobSet, SortedJobSet

JIDS = st.sampled_from([f"j{i}" for i in range(12)])
SCORES = st.integers(0, 6).map(float)


class LazyAgainstSorted(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lazy = LazyJobSet()
        self.sorted = SortedJobSet()

    @rule(jid=JIDS, score=SCORES)
    def add(self, jid: str, score: float) -> None:
        entry = (jid, score)
        self.lazy.add(jid, score, entry)
        self.sorted.add(jid, score, entry)

    @rule(jid=JIDS)
    def remove(self, jid: str) -> None:
        assert self.lazy.remove(jid) == self.sorted.remove(jid)

    @rule()
    def clear(self) -> None:
        self.lazy.clear()
        self.sorted.clear()

    @rule(now=SCORES)
    def due(self, now: float) -> None:
        assert self.lazy.due(now) == self.sorted.due(now)

    @rule(offset=st.integers(0, 12), limit=st.integers(0, 12))
    def page(self, offset: int, limit: int) -> None:
        assert self.lazy.page(offset, limit) == self.sorted.page(offset, limit)

    @rule()
    def copy(self) -> None:
        clone = self.lazy.copy()
        self.lazy.clear()  # the copy keeps its entries
        assert list(clone.items()) == list(self.sorted.items())
        self.lazy = clone

    @invariant()
    def agree(self) -> None:
        assert len(self.lazy) == len(self.sorted)
        assert self.lazy.first_score() == self.sorted.first_score()
        assert list(self.lazy.items()) == list(self.sorted.items())
        for jid in ("j0", "j5", "j11"):
            assert (jid in self.lazy, self.lazy.get(jid)) == (jid in self.sorted, self.sorted.get(jid))


def test_the_lazy_set_reads_as_the_sorted_one() -> None:
    run_state_machine_as_test(LazyAgainstSorted, settings=settings(
        max_examples=200, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]))


def test_stale_entries_are_dropped_when_they_outnumber_the_live() -> None:
    """Every FETCH adds and every ACK removes: the heap stays within twice the live
    entries (plus a constant), it does not grow with the jobs that passed through."""
    lazy = LazyJobSet()
    for i in range(10_000):
        lazy.add(f"j{i}", float(i), None)
        lazy.remove(f"j{i - 5}")
    assert len(lazy) == 5
    assert len(lazy._heap) <= 2 * 5 + 64 + 1
