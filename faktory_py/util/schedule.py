"""Cron schedules: the dialect of `[[cron]] schedule` and its ticks (protocol/spec.md §12.2).

A leaf, so that `config` can validate a schedule when it loads one and the cron feature can
compute ticks with the very same object. Ticks are unix seconds (UTC), the server's unit.

* 5 fields (Vixie/Debian cron) and 6 fields with seconds **first**, parsed and evaluated by
  cronsim, which follows Debian cron at DST changes: a fixed wall time skipped by
  spring-forward fires at the first instant after the gap, one repeated at fall-back fires
  once; `*` and steps in the minute or hour field follow real time.
* nicknames (`@daily` …), which cronsim does not read, are translated here first;
  `@reboot` is refused (a restart is not a tick: it would fire on every crash).
* `@every <duration>` ticks on a grid anchored to the epoch, not to the server's start.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from collections import deque
from datetime import datetime, timedelta, timezone
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

NICKNAMES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
#: where `Schedule.due` stops counting the ticks of a cron expression
MAX_COUNTED = 100_000
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the text says why (cronsim's own words
    for an expression, e.g. `Bad minute`)."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (the system's database, else the `tzdata` package)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f'unknown timezone "{name}"') from None


def every_seconds(expression: str) -> int | None:
    """The period of an `@every 1h30m` expression in seconds; None if it is not one."""
    if not expression.startswith("@every"):
        return None
    text = expression.removeprefix("@every").strip()
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ScheduleError(f'@every needs a duration such as "30s", "5m" or "1h30m", not "{text}"')
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    period = hours * 3600 + minutes * 60 + seconds
    if period < 1:
        raise ScheduleError("@every needs a duration of at least 1s")
    return period


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule in its zone. `expression` is as written; `cron` what cronsim reads
    (nickname translated), or None for `@every`, whose `period` is then set."""

    expression: str
    timezone: str = "UTC"
    cron: str | None = None
    period: int | None = None

    @classmethod
    def parse(cls, expression: str, timezone_name: str = "UTC") -> Schedule:
        """Raises ScheduleError with the reason (cronsim's message for a bad expression)."""
        text = " ".join(expression.split())
        tz = zone(timezone_name)
        if text == "@reboot":
            raise ScheduleError("@reboot is not supported: a restart is not a tick")
        period = every_seconds(text)
        if period is not None:
            return cls(text, timezone_name, None, period)
        cron = NICKNAMES.get(text, text)
        try:
            CronSim(cron, datetime(2000, 1, 1, tzinfo=tz))
        except CronSimError as exc:
            raise ScheduleError(str(exc)) from None
        return cls(text, timezone_name, cron, None)

    @cached_property
    def _zone(self) -> ZoneInfo:
        return zone(self.timezone)

    def next_after(self, unix: float) -> float:
        """The first tick strictly after `unix`."""
        if self.period is not None:
            return float((math.floor(unix / self.period) + 1) * self.period)
        assert self.cron is not None
        start = datetime.fromtimestamp(unix, self._zone)
        return next(CronSim(self.cron, start)).timestamp()

    def due(self, after: float, until: float, keep: int) -> tuple[int, list[float]]:
        """How many ticks fall in (after, until], and the last `keep` of them in order.

        The count stops at MAX_COUNTED ticks of a cron expression (a schedule of every
        second, down for weeks): the count is then a lower bound, and counting costs at
        most ~0.2 s. `@every` counts exactly, by arithmetic."""
        if self.period is not None:
            first = math.floor(after / self.period) + 1
            last = math.floor(until / self.period)
            count = max(0, last - first + 1)
            return count, [float(n * self.period) for n in range(max(first, last - keep + 1), last + 1)]
        recent: deque[float] = deque(maxlen=keep)
        count = 0
        tick = self.next_after(after)
        while tick <= until and count < MAX_COUNTED:
            count += 1
            recent.append(tick)
            tick = self.next_after(tick)
        if tick <= until:  # stopped counting: the most recent ticks are found backwards
            recent = deque(reversed(self._before(until, keep)), maxlen=keep)
        return count, list(recent)

    def _before(self, until: float, keep: int) -> list[float]:
        """The last `keep` ticks at or before `until`, latest first."""
        assert self.cron is not None
        start = datetime.fromtimestamp(until, self._zone) + timedelta(microseconds=1)
        ticks = CronSim(self.cron, start, reverse=True)
        return [next(ticks).timestamp() for _ in range(keep)]

    def explain(self) -> str:
        """A reading of the schedule in English, for the web UI."""
        if self.period is not None:
            return f"Every {self.expression.removeprefix('@every').strip()}"
        assert self.cron is not None
        try:
            return CronSim(self.cron, datetime.now(timezone.utc)).explain()
        except Exception:  # explain() does not cover every expression cronsim evaluates
            return self.expression
