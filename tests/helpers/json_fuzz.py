"""Hypothesis strategies for hostile JSON, shared by the in-process property tests
(test_json_edge.py) and the fuzz run against a server process (test_fuzz_tcp.py).

They build JSON *text*, not Python values, so they can say what a Python encoder cannot:
integers of any length, `NaN`, escapes of lone surrogates, nesting deeper than any decoder
takes, and (`corrupted`) bytes that are not UTF-8. The depths and integers cluster at the
limits that matter (jsoncodec.MAX_DEPTH, orjson's 254 levels, msgpack's 1024, int64/uint64,
float64's range).

`FUZZ_EXAMPLES` (environment variable) raises the example count of every test built on
these strategies, for a longer run than the suite's (see README.md, "Fuzzing").
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: examples per property in the suite; `FUZZ_EXAMPLES=5000 pytest ...` for a long run
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None
#: hang guard (seconds) for a test built on these strategies: tight for the suite, grown for a long run
TIMEOUT = 120 + (EXAMPLES or 0) // 5


def fuzz_settings(default_examples: int) -> settings:
    return settings(max_examples=EXAMPLES or default_examples, deadline=None, derandomize=EXAMPLES is None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example, HealthCheck.function_scoped_fixture])


DEPTHS = (2, 64, 126, 127, 128, 129, 200, 253, 254, 255, 300, 1000, 1021, 1022, 1023, 1025, 5000)
BIG_INTS = tuple(map(str, (2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**38, -(10**38),
                           2**1023, 10**308, 10**309, 10**310))) + ("1" * 5000,)
BAD_NUMBERS = ("1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1.7976931348623157e308", "5e-324")
SURROGATE_ESCAPES = ("\\ud800", "\\udfff", "\\ud83d", "\\ude00", "\\u0000", "\\ud83d\\ude00")


def _string(text: str, escapes: list[str], ascii_only: bool) -> str:
    body = json.dumps(text, ensure_ascii=ascii_only)[1:-1]
    return '"' + body + "".join(escapes) + '"'


def mostly(good: st.SearchStrategy[str], hostile: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`good` nine times in ten: most requests should get far enough to be stored."""
    return st.integers(0, 9).flatmap(lambda n: hostile if n == 0 else good)


strings = st.builds(_string, st.text(max_size=12), st.lists(st.sampled_from(SURROGATE_ESCAPES), max_size=2),
                    st.booleans())
scalars = mostly(
    st.one_of(st.sampled_from(("null", "true", "false")), st.integers().map(str),
              st.floats(allow_nan=False, allow_infinity=False).map(repr), strings),
    st.one_of(st.sampled_from(BIG_INTS), st.sampled_from(BAD_NUMBERS)),
)
def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"


def _deep(depth: int, inner: str, objects: bool) -> str:
    return ('{"k":' * depth + inner + "}" * depth) if objects else ("[" * depth + inner + "]" * depth)


values = st.recursive(
    scalars,
    lambda children: mostly(
        st.one_of(st.lists(children, max_size=5).map(_array),
                  st.lists(st.tuples(strings, children), max_size=5).map(_object)),
        st.one_of(st.builds(_deep, st.sampled_from(DEPTHS), children, st.booleans()),
                  st.builds(lambda n, item: _array([item] * n), st.integers(100, 3000), scalars)),  # wide
    ),
    max_leaves=12,
)
string_lists = st.lists(strings, max_size=4).map(_array)


def _fields(d: dict[str, str]) -> str:
    return _object([(json.dumps(k), v) for k, v in d.items()])


def objects(**fields: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A JSON object with some of these fields (values as JSON text); sometimes any value instead."""
    return mostly(st.fixed_dictionaries({}, optional=fields).map(_fields), values)


def _job(jid: str, fields: dict[str, str]) -> str:
    return _fields({"jid": json.dumps(jid), "jobtype": '"T"', **fields})


def jobs(jid: str, at_choices: tuple[str, ...] = ('"2099-01-01T00:00:00Z"',)) -> st.SearchStrategy[str]:
    """A job object with hostile `args` (and maybe `custom`, `failure`, `retry`, ...), as JSON text."""
    ints = mostly(st.integers(-5, 30).map(str), scalars)
    optional = st.fixed_dictionaries({}, optional={
        "at": st.sampled_from(at_choices),
        "custom": objects(k=values, unique_for=ints, expires_in=ints, track=ints),
        "failure": objects(retry_count=ints, remaining=ints, message=mostly(strings, values),
                           backtrace=mostly(string_lists, values)),
        "retry": ints,
        "reserve_for": mostly(st.sampled_from(("60", "1800", "86400")), scalars),
        "queue": mostly(st.sampled_from(('"default"', '"q"')), values),
    })
    return st.builds(lambda args, rest: _job(jid, {"args": args, **rest}),
                     mostly(st.lists(values, max_size=4).map(_array), values), optional)


def corrupted(text: str) -> st.SearchStrategy[bytes]:
    """`text` as UTF-8, sometimes with bytes that are not UTF-8 spliced in."""
    raw = text.encode()
    bad = st.sampled_from((b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"))
    return st.one_of(st.just(raw), st.builds(
        lambda at, junk: raw[:at] + junk + raw[at:], st.integers(0, len(raw)), bad))
