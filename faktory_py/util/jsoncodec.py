"""JSON for the server: one strict decoder for what clients send, fast codecs for the rest.

Every PUSH decodes a job and encodes it again for storage (compact, in Faktory's field
order), and the standard library spends ~10 µs on each of those where orjson spends 1-2.
orjson is a well-kept C/Rust extension; we lean on it only where its output is the same
JSON document: for anything it refuses (lone surrogates, numbers too large for a float64,
invalid JSON), the standard library does the work, under the same rules.

`decode` is the edge: every JSON argument of every command goes through it (protocol/spec.md
§4.4), so anything it returns can be encoded by `dumps`, packed and unpacked by the journal's
msgpack and replayed. Its rules:

* nesting is bounded (`MAX_DEPTH`), far below orjson's encoder (254 levels), msgpack's
  unpacker (1024) and the stdlib's recursion, with room for the levels the journal wraps
  around a value (a record's list, an op, a job, a batch);
* an integer outside what msgpack packs (int64 and uint64) becomes the nearest float64, as
  in Go and orjson; one beyond float64's range is refused (protocol/DEVIATIONS.md §1 #12);
* `NaN` and `Infinity` are refused (not JSON); a lone surrogate becomes U+FFFD, as in Go.

Differences that remain, both valid JSON: floats with exponents print as `1e21` and
`1e-7` (Go prints `1e+21`, `1e-07`).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import orjson

#: How deep a client's JSON document may nest (PUSH's job object is level 1, its args 2).
MAX_DEPTH = 128
_MIN_INT = -(1 << 63)
_MAX_UINT = (1 << 64) - 1
#: Longest text that cannot hold a valid JSON document nested deeper than MAX_DEPTH
_SHALLOW = 2 * MAX_DEPTH + 1
#: Longest decimal integer that can be inside [_MIN_INT, _MAX_UINT] (sign excluded)
_MAX_INT_DIGITS = len(str(_MAX_UINT))

_STDLIB_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON without spaces, like Go's encoder (non-ASCII kept as is)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        # A lone surrogate cannot be UTF-8; like Go, write U+FFFD (here as "?") instead.
        return _STDLIB_ENCODER.encode(value).encode("utf-8", errors="replace")


def loads(data: str | bytes) -> Any:
    """Parse JSON the server wrote itself (a stored job): no limits to enforce."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


class InvalidJSON(ValueError):
    """A client's JSON that `decode` refuses; the message says why (callers prefix it)."""


def decode(text: str) -> Any:
    """Parse one JSON document a client sent, under the rules of the module docstring."""
    # Every command's JSON comes here. A valid document nests no deeper than half its length
    # (each level opens and closes), so one of up to `_SHALLOW` characters (ACK's `{"jid":…}`,
    # some 45; most jobs) goes to orjson at once; anything else, and what orjson refuses, is
    # first checked for depth: cheaply (too few brackets to be too deep), else by a scan.
    short = len(text) <= _SHALLOW
    if short:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    if len(text) > MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH:
        depth = nesting_depth(text)
        if depth > MAX_DEPTH:
            raise InvalidJSON(f"nesting depth {depth} exceeds the limit of {MAX_DEPTH}")
    if not short:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        value = _STDLIB_DECODER.decode(text)
    except ValueError as exc:  # json.JSONDecodeError, or our hooks' refusals
        raise InvalidJSON(str(exc)) from None
    if _SURROGATE.search(text) or _SURROGATE_ESCAPE.search(text):
        value = _replace_surrogates(value)
    return value


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings don't count).

    Runs on the text, before any decoder could recurse into it; linear, and without a
    Python loop per character.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _reject_constant(name: str) -> Any:
    """`NaN`/`Infinity` are not JSON: Python's decoder takes them, Go's does not, and
    echoing them back in a FETCH would break every client's JSON parser."""
    raise InvalidJSON(f"invalid character {name[0]!r} looking for beginning of value")


def _finite_float(text: str) -> float:
    """A number too large for a float64 (`1e400`) is an error in Go, not infinity."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise InvalidJSON(f"cannot unmarshal number {_abbreviated(text)} into a float64")
    return value


def _bounded_int(text: str) -> int | float:
    """An integer msgpack can pack stays exact; a larger one becomes the nearest float64.

    (`int()` of a long text is never attempted: Python refuses more than 4300 digits.)
    """
    if len(text.lstrip("-")) <= _MAX_INT_DIGITS:
        value = int(text)
        if _MIN_INT <= value <= _MAX_UINT:
            return value
    return _finite_float(text)


def _abbreviated(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} digits)"


_STDLIB_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def compact_json(value: Any) -> str:
    """JSON without spaces, like Go's encoder: clients split on spaces (Node's HI parsing)
    and MUTATE filters match substrings such as `"jobtype":"X"` of stored payloads."""
    return dumps(value).decode()


def canonical(value: Any) -> str:
    """Canonical JSON: compact, object keys sorted, so equal values give equal texts
    (a throttle's partition keys, protocol/spec.md §11.8)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def go_float(value: float) -> float | int:
    """Go prints an integral float64 without a fraction (`0`, not `0.0`)."""
    return int(value) if value.is_integer() else value
