"""core/timings.py: the lock-free histograms the command path observes into."""

from __future__ import annotations

import math

from faktory_py.core.timings import OTHER_VERB, CommandTimes, Histogram


def test_buckets_are_upper_bounds_inclusive_and_cumulative() -> None:
    histogram = Histogram((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 1.0, 3.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [(0.1, 2), (1.0, 4), (math.inf, 5)]
    assert math.isclose(histogram.sum, 4.65)


def test_unknown_verbs_are_counted_under_other_and_known_ones_sorted() -> None:
    times = CommandTimes(["PUSH", "ACK"])
    times.observe("PUSH", 0.001)
    times.observe("push", 0.001)  # verbs are case-sensitive: an unknown command
    times.observe("BOGUS", 0.002)
    counts = {verb: histogram.cumulative()[-1][1] for verb, histogram in times}
    assert list(counts) == ["ACK", "PUSH", OTHER_VERB]
    assert counts == {"ACK": 0, "PUSH": 1, OTHER_VERB: 2}
