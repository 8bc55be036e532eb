"""How long the server's work takes: histograms observed on the command path, read at scrape time.

The command path observes one duration per command, so an observation must cost next to
nothing: a `Histogram` here is a list of bucket counts and a sum, changed with a bisect and
two additions, no lock (the server observes from its one trio thread only; work done in a
worker thread is observed once it returns), no object per observation. The `/metrics`
endpoint (web/metrics.py) turns them into Prometheus histograms when it is scraped.

What that costs: two clock reads and one observation, ~0.25 µs per command, under 1 µs per
job of PUSH, FETCH and ACK: about 1% of the server's CPU per job under Faktory's load tool
(70–105 µs). Runs of the same server differ by 10–25% in that CPU per job (how many
connections each turn of the I/O loop finds ready changes the syscalls per job), so a few
repetitions with timings on and off (the bench's `faktory_py-notimings`) cannot resolve
1%: the 4–11% they once showed was that spread (issue 17; at 2d02326, 5 alternating runs each gave
104.3 against 103.3 µs per job at 10 threads, 82.0 against 81.0 at 50).

Label values stay bounded: `CommandTimes` has one histogram per verb the server knows, and
every other verb a client sends (a typo, an unknown command) is counted under `other`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

#: upper bounds (seconds) for work on the command path: commands, journal writes and fsyncs
FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0)
#: ... for waits that last up to a FETCH's timeout, and for compactions
SLOW_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
#: the label of the verbs `CommandTimes` does not know (lower case: no verb is)
OTHER_VERB = "other"


class Histogram:
    """Counts of observations per bucket (`le` upper bounds, and +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float] = FAST_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) per bucket, the last bound +Inf (Prometheus' form)."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            total += count
            out.append((bound, total))
        return out


class CommandTimes:
    """One histogram per known verb, plus `other` for the rest (see module doc)."""

    __slots__ = ("_by_verb", "_other")

    def __init__(self, verbs: Iterable[str]) -> None:
        self._by_verb = {verb: Histogram() for verb in verbs}
        self._other = Histogram()

    def observe(self, verb: str, seconds: float) -> None:
        # `Histogram.observe` spelled out: a call less per command (see the module doc)
        histogram = self._by_verb.get(verb, self._other)
        histogram.counts[bisect_left(histogram.bounds, seconds)] += 1
        histogram.sum += seconds

    def __iter__(self) -> Iterator[tuple[str, Histogram]]:
        """(verb label, histogram), the known verbs sorted, then `other`."""
        yield from sorted(self._by_verb.items())
        yield OTHER_VERB, self._other


@dataclass(eq=False)
class Timings:
    """Every duration the server observes (the names of their Prometheus histograms in
    web/metrics.py say what each measures)."""

    commands: CommandTimes
    #: False (`[faktory_py.metrics] timings = false`): the command path observes nothing,
    #: and reads no clock to do so (server/tcp.py); the journal's histograms still count
    enabled: bool = True
    fetch_wait: Histogram = field(default_factory=lambda: Histogram(SLOW_BUCKETS))
    journal_write: Histogram = field(default_factory=Histogram)
    journal_fsync: Histogram = field(default_factory=Histogram)
    compaction: Histogram = field(default_factory=lambda: Histogram(SLOW_BUCKETS))
