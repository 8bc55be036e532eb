"""Go-compatible timestamps (spec §4.3)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faktory_py.util.timefmt import format_time, parse_time, utc_clock, utc_day

UTC = timezone.utc
T0 = datetime(2026, 7, 1, 0, 34, 46, tzinfo=UTC).timestamp()  # 2026-07-01T00:34:46Z
GO_PREFIX = 'as "2006-01-02T15:04:05.999999999Z07:00": cannot parse '

# Microseconds since the epoch within ±2**32 s (years 1833–2106), where a float of unix
# seconds still pins down the microsecond.
micros = st.integers(min_value=-(2**32) * 10**6, max_value=2**32 * 10**6 - 1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (T0, "2026-07-01T00:34:46Z"),
        (T0 + 0.5, "2026-07-01T00:34:46.5Z"),
        (T0 + 0.123456, "2026-07-01T00:34:46.123456Z"),
        (T0 + 0.1, "2026-07-01T00:34:46.1Z"),
        (T0 + 0.05, "2026-07-01T00:34:46.05Z"),
        (T0 + 0.000001, "2026-07-01T00:34:46.000001Z"),
        (0, "1970-01-01T00:00:00Z"),
        (1.9999999, "1970-01-01T00:00:02Z"),
        (59.9999996, "1970-01-01T00:01:00Z"),
        (86399.9999999, "1970-01-02T00:00:00Z"),
        (1.0000004, "1970-01-01T00:00:01Z"),
        (-0.5, "1969-12-31T23:59:59.5Z"),
        (951782400, "2000-02-29T00:00:00Z"),
        (-62135596800, "0001-01-01T00:00:00Z"),
        (-30610310400, "0999-12-31T00:00:00Z"),
    ],
)
def test_format_time(seconds: float, text: str) -> None:
    assert format_time(seconds) == text


@given(micros)
def test_format_time_agrees_with_datetime(us: int) -> None:
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    text = format_time(us / 1e6)
    whole, _, rest = text.partition(".")
    assert text.endswith("Z")
    assert not rest.endswith("0Z") and rest != "Z"  # no trailing zeros, no bare "."
    seconds = datetime.strptime(whole.rstrip("Z"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert seconds == expected.replace(microsecond=0)
    assert int((rest.rstrip("Z") or "0").ljust(6, "0")) == expected.microsecond


@given(micros)
def test_round_trip(us: int) -> None:
    text = format_time(us / 1e6)
    assert abs(parse_time(text) - us / 1e6) < 1e-6
    assert format_time(parse_time(text)) == text


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-(24 * 60) + 1, max_value=24 * 60 - 1),
)
def test_offsets(local: datetime, offset_minutes: int) -> None:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = f"{local.isoformat(timespec='microseconds')}{sign}{hours:02d}:{minutes:02d}"
    expected = local.replace(tzinfo=timezone(timedelta(minutes=offset_minutes))).timestamp()
    assert parse_time(text) == pytest.approx(expected, abs=1e-6, rel=1e-15)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2026-07-01T00:34:46Z", T0),
        ("2026-07-01T00:34:46.5Z", T0 + 0.5),
        ("2026-07-01T00:34:46,5Z", T0 + 0.5),
        ("2026-07-01T00:34:46.123456789Z", T0 + 0.123456789),
        ("2026-07-01T00:34:46.1234567891234Z", T0 + 0.123456789),
        ("2026-07-01T00:34:46.000Z", T0),
        ("2026-07-01T02:34:46+02:00", T0),
        ("2026-06-30T23:04:46-01:30", T0),
        ("2026-07-01T00:34:46+00:00", T0),
        ("2026-07-01T00:34:46-00:00", T0),
        ("2026-07-01T0:34:46Z", T0),
        ("2026-07-02T00:34:46+24:00", T0),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC).timestamp()),
        ("2000-02-29T12:00:00Z", datetime(2000, 2, 29, 12, tzinfo=UTC).timestamp()),
        ("1969-12-31T23:59:59.5Z", -0.5),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC).timestamp()),
        ("0000-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC).timestamp() - 366 * 86400),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()),
    ],
)
def test_parse_time_accepts_what_go_accepts(text: str, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds, abs=1e-6, rel=0)


def test_parse_time_error_reads_like_go() -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_time("bogus")
    assert str(excinfo.value) == (
        'parsing time "bogus" as "2006-01-02T15:04:05.999999999Z07:00": cannot parse "bogus" as "2006"'
    )


@pytest.mark.parametrize(
    ("text", "tail"),
    [
        ("", GO_PREFIX + '"" as "2006"'),
        ("2026", GO_PREFIX + '"" as "-"'),
        ("2026/07/01T00:34:46Z", GO_PREFIX + '"/07/01T00:34:46Z" as "-"'),
        ("2026-7-01T00:34:46Z", GO_PREFIX + '"7-01T00:34:46Z" as "01"'),
        ("2026-07-1T00:34:46Z", GO_PREFIX + '"1T00:34:46Z" as "02"'),
        ("2026-07-01t00:34:46Z", GO_PREFIX + '"t00:34:46Z" as "T"'),
        ("2026-07-01 00:34:46Z", GO_PREFIX + '" 00:34:46Z" as "T"'),
        ("2026-07-01Tx:34:46Z", GO_PREFIX + '"x:34:46Z" as "15"'),
        ("2026-07-01T00:3:46Z", GO_PREFIX + '"3:46Z" as "04"'),
        ("2026-07-01T00:34:4Z", GO_PREFIX + '"4Z" as "05"'),
        ("2026-07-01T00:34:46", GO_PREFIX + '"" as "Z07:00"'),
        ("2026-07-01T00:34:46z", GO_PREFIX + '"z" as "Z07:00"'),
        ("2026-07-01T00:34:46+0200", GO_PREFIX + '"+0200" as "Z07:00"'),
        ("2026-07-01T00:34:46+02", GO_PREFIX + '"+02" as "Z07:00"'),
        ("2026-07-01T00:34:46 02:00", GO_PREFIX + '" 02:00" as "Z07:00"'),
        ("2026-07-01T00:34:46.Z", GO_PREFIX + '".Z" as "Z07:00"'),
        ("2026-07-01T00:34:46Zjunk", ': extra text: "junk"'),
        ("2026-07-01T00:34:46Z\n", ': extra text: "\\x0a"'),
        ("2026-13-01T00:00:00Z", ": month out of range"),
        ("2026-00-01T00:00:00Z", ": month out of range"),
        ("2026-04-31T00:00:00Z", ": day out of range"),
        ("2026-02-29T00:00:00Z", ": day out of range"),
        ("1900-02-29T00:00:00Z", ": day out of range"),
        ("2026-07-00T00:00:00Z", ": day out of range"),
        ("2026-07-01T24:00:00Z", ": hour out of range"),
        ("2026-07-01T00:60:00Z", ": minute out of range"),
        ("2026-07-01T00:00:60Z", ": second out of range"),
        ("2026-07-01T00:00:00+25:00", ": time zone offset hour out of range"),
        ("2026-07-01T00:00:00+00:61", ": time zone offset minute out of range"),
        (  # non-ASCII digits are not digits, and Go quotes them byte by byte
            "٢٠٢٦-07-01T00:00:00Z",
            GO_PREFIX + '"\\xd9\\xa2\\xd9\\xa0\\xd9\\xa2\\xd9\\xa6-07-01T00:00:00Z" as "2006"',
        ),
    ],
)
def test_parse_time_rejects(text: str, tail: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_time(text)
    message = str(excinfo.value)
    assert message.startswith("parsing time ")
    assert message.endswith(tail)


def test_quoted_text_escapes_quotes_and_backslashes() -> None:
    with pytest.raises(ValueError, match=r'^parsing time "a\\"b\\\\c" as'):
        parse_time('a"b\\c')


@given(st.text())
def test_parse_time_only_raises_value_error(text: str) -> None:
    try:
        parse_time(text)
    except ValueError as exc:
        assert str(exc).startswith("parsing time ")


def test_utc_day_and_clock() -> None:
    assert utc_day(T0) == "2026-07-01"
    assert utc_clock(T0) == "00:34:46 UTC"
    assert utc_day(0) == "1970-01-01"
    assert utc_clock(0) == "00:00:00 UTC"
    assert utc_clock(T0 + 0.75) == "00:34:46 UTC"


@given(st.floats(min_value=-62135596800, max_value=253402300000) | st.integers(0, 4_000_000_000).map(
    lambda day_edge: day_edge // 86400 * 86400 - 0.0000001))
def test_utc_day_is_format_times_date(unix_seconds: float) -> None:
    assert utc_day(unix_seconds) == format_time(unix_seconds)[:10]


def test_utc_day_and_clock_round_like_format_time() -> None:
    edge = 86399.9999999
    assert format_time(edge) == "1970-01-02T00:00:00Z"
    assert utc_day(edge) == "1970-01-02"
    assert utc_clock(edge) == "00:00:00 UTC"
    assert utc_day(86399.9) == "1970-01-01"
    assert utc_day(-30610310400) == "0999-12-31"
