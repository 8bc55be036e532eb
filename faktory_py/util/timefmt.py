"""Timestamps as Faktory writes and reads them (spec §4.3).

Faktory formats with Go's RFC3339Nano layout in UTC and parses ``at`` (and friends) with
``time.Parse`` on the same layout. Clients parse what we write and send what Go accepts, so
both directions follow Go rather than ``datetime.isoformat``/``fromisoformat``, which differ
in trailing zeros, offsets and what they accept. Times are unix seconds as floats, the unit
the rest of the server schedules in.
"""

from __future__ import annotations

import calendar
import functools
import math
from datetime import datetime, timedelta, timezone

GO_LAYOUT = "2006-01-02T15:04:05.999999999Z07:00"

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _utc(unix_seconds: float) -> datetime:
    """Round to whole microseconds first, so 1.9999999 is 2 s, never "01.999999..." nor 60 s.

    Splitting off the whole seconds first is exact, so only the fraction is scaled and the
    result is the microsecond nearest to the float itself.
    """
    whole = math.floor(unix_seconds)
    micros = round((unix_seconds - whole) * 1_000_000)
    return _EPOCH + timedelta(seconds=whole, microseconds=micros)


def _date(t: datetime) -> str:
    """``%Y`` is not zero-padded below year 1000 on every platform; Go always pads."""
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}"


def format_time(unix_seconds: float) -> str:
    """Go's RFC3339Nano in UTC: fraction without trailing zeros, no ``.`` when whole, ``Z``.

    Every PUSH formats timestamps, so the date-and-time part is cached per second, and the
    last result whole: every job of a PUSHB is stamped with the same "now". (One entry, not
    an LRU cache: each PUSH's "now" is new, and an LRU cache's miss costs a third as much
    as the formatting.)
    """
    global _last_formatted
    last = _last_formatted
    if last[0] == unix_seconds:
        return last[1]
    global _last_second
    whole = math.floor(unix_seconds)
    micros = round((unix_seconds - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    second = _last_second
    if second[0] != whole:
        second = _last_second = (whole, _second(whole))
    # the six digits of the fraction as `str` writes 1_000_000 + micros: a third faster than
    # a `06d` format spec
    text = f"{second[1]}.{str(1_000_000 + micros)[1:].rstrip('0')}Z" if micros else f"{second[1]}Z"
    _last_formatted = (unix_seconds, text)  # one tuple: a reader in another thread sees a whole pair
    return text


_last_formatted: tuple[float, str] = (math.nan, "")
#: the last second `format_time` formatted, and its text (the PUSHes of one second share it)
_last_second: tuple[int | None, str] = (None, "")


@functools.lru_cache(maxsize=256)
def _second(whole: int) -> str:
    t = _EPOCH + timedelta(seconds=whole)
    return f"{_date(t)}T{t:%H:%M:%S}"


def utc_day(unix_seconds: float) -> str:
    """``YYYY-MM-DD`` in UTC: the key of the daily processed/failed counters; rounded to the
    microsecond first, as `_utc`. Every ACK and FAIL asks, so the last day's text is kept
    with the times that surely fall in it: from its start to its last second (whose last
    half microsecond rounds to the next day), and those return it at once."""
    global _last_day
    first, last, text = _last_day
    if first <= unix_seconds < last:
        return text
    whole = math.floor(unix_seconds)
    if round((unix_seconds - whole) * 1_000_000) == 1_000_000:
        whole += 1
    number = whole // 86400
    text = _day(number)
    _last_day = (number * 86400, number * 86400 + 86399, text)  # one tuple, as `_last_formatted`
    return text


_last_day: tuple[float, float, str] = (math.inf, -math.inf, "")


@functools.lru_cache(maxsize=4)
def _day(number: int) -> str:
    return _date(_EPOCH + timedelta(days=number))


def utc_clock(unix_seconds: float) -> str:
    """``HH:MM:SS UTC``: INFO's ``server_utc_time``."""
    return f"{_utc(unix_seconds):%H:%M:%S} UTC"


class _GoParseError(ValueError):
    """A failure worded like Go's ``time.ParseError`` so ``-ERR`` texts match Faktory's."""

    @classmethod
    def cannot_parse(cls, text: str, rest: str, element: str) -> _GoParseError:
        return cls(
            f"parsing time {_quote(text)} as {_quote(GO_LAYOUT)}: "
            f"cannot parse {_quote(rest)} as {_quote(element)}"
        )

    @classmethod
    def with_message(cls, text: str, message: str) -> _GoParseError:
        return cls(f"parsing time {_quote(text)}: {message}")


def _quote(s: str) -> str:
    """Go's ``time.quote``: ``"`` and ``\\`` escaped, non-ASCII and control bytes as ``\\xNN``."""
    out = ['"']
    for ch in s:
        if ch < " " or ch > "\x7f":
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", errors="replace"))
        elif ch in '"\\':
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class _Cursor:
    """Walks the text the way Go's parser walks its layout, one element at a time."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.rest = text

    def literal(self, expected: str) -> None:
        if not self.rest.startswith(expected):
            raise _GoParseError.cannot_parse(self.text, self.rest, expected)
        self.rest = self.rest[len(expected) :]

    def digits(self, element: str, fewest: int, most: int) -> str:
        """Take ASCII digits only: ``str.isdigit`` would also take ``٣``."""
        n = 0
        while n < most and n < len(self.rest) and "0" <= self.rest[n] <= "9":
            n += 1
        if n < fewest:
            raise _GoParseError.cannot_parse(self.text, self.rest, element)
        taken, self.rest = self.rest[:n], self.rest[n:]
        return taken

    def number(self, element: str, fewest: int, most: int) -> int:
        return int(self.digits(element, fewest, most))

    def check(self, value: int, low: int, high: int, what: str) -> int:
        if not low <= value <= high:
            raise _GoParseError.with_message(self.text, f"{what} out of range")
        return value


def parse_time(text: str) -> float:
    """Unix seconds from an RFC3339 timestamp, accepting what Go's ``time.Parse`` accepts.

    The fraction may have any length (digits after the ninth are ignored, as in Go) and may
    follow ``.`` or ``,``; the zone is ``Z`` or ``±HH:MM``; the ``T`` must be upper case; the
    hour may have one digit. Raises ValueError worded like Go's error.
    """
    c = _Cursor(text)
    year = c.number("2006", 4, 4)
    c.literal("-")
    month = c.check(c.number("01", 2, 2), 1, 12, "month")
    c.literal("-")
    day = c.number("02", 2, 2)  # checked against the month at the end, as Go does
    c.literal("T")
    hour = c.check(c.number("15", 1, 2), 0, 23, "hour")
    c.literal(":")
    minute = c.check(c.number("04", 2, 2), 0, 59, "minute")
    c.literal(":")
    second = c.check(c.number("05", 2, 2), 0, 59, "second")
    nanos = 0
    if len(c.rest) >= 2 and c.rest[0] in ".," and "0" <= c.rest[1] <= "9":
        c.rest = c.rest[1:]
        nanos = int(c.digits(".999999999", 1, len(c.rest))[:9].ljust(9, "0"))
    offset = _zone_offset(c)
    if c.rest:
        raise _GoParseError.with_message(text, f"extra text: {_quote(c.rest)}")
    if not 1 <= day <= _days_in(month, year):
        raise _GoParseError.with_message(text, "day out of range")
    whole = _days_since_epoch(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return (whole - offset) + nanos / 1e9


def _zone_offset(c: _Cursor) -> int:
    """Seconds east of UTC from ``Z`` or ``±HH:MM`` (Go allows up to 24:60, so do we)."""
    if c.rest.startswith("Z"):
        c.rest = c.rest[1:]
        return 0
    zone = c.rest[:6]
    digits = zone[1:3] + zone[4:6]
    if len(zone) < 6 or zone[0] not in "+-" or zone[3] != ":" or not _ascii_digits(digits):
        raise _GoParseError.cannot_parse(c.text, c.rest, "Z07:00")
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if minutes > 60:
        raise _GoParseError.with_message(c.text, "time zone offset minute out of range")
    if hours > 24:
        raise _GoParseError.with_message(c.text, "time zone offset hour out of range")
    c.rest = c.rest[6:]
    offset = hours * 3600 + minutes * 60
    return -offset if zone[0] == "-" else offset


def _ascii_digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def _days_in(month: int, year: int) -> int:
    if month == 2:
        return 29 if calendar.isleap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 in the proleptic Gregorian calendar; unlike ``datetime.date``
    it also covers year 0, which Go accepts."""
    # Count years from March so that the leap day is the last day of a counted year.
    y = year - 1 if month <= 2 else year
    era, year_of_era = divmod(y, 400)
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468
