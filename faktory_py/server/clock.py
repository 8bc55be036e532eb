"""Wall-clock time derived from trio's clock, so tests can drive it with MockClock.

Job timestamps and set scores are unix seconds; timers sleep on trio's clock. Reading
both through one `Clock` keeps them in step: jump a MockClock by a day and scheduled jobs
become due, reservations expire and timestamps move a day on.
"""

from __future__ import annotations

import time

import trio


class Clock:
    """unix time = the wall clock at creation + trio time elapsed since then."""

    def __init__(self, start: float | None = None) -> None:
        """`start`: the unix time it reads now (a test's chosen date), else the host's."""
        self._wall0 = time.time() if start is None else start
        self._trio0 = trio.current_time()

    def now(self) -> float:
        return self._wall0 + (trio.current_time() - self._trio0)

    def trio_time(self, unix: float) -> float:
        """The trio clock reading at which `now()` will equal `unix`."""
        return self._trio0 + (unix - self._wall0)
