"""Fast JSON for the hot paths: orjson, falling back to the standard library.

Every PUSH decodes a job and encodes it again for storage (compact, in Faktory's field
order), and the standard library spends ~10 µs on each of those where orjson spends 1-2.
orjson is a well-kept C/Rust extension; we lean on it only where its output is the same
JSON document: for anything it refuses (integers beyond 64 bits when encoding, lone
surrogates, NaN, numbers too large for a float64), the standard library does the work
and callers see exactly its results and errors.

Differences that remain, both valid JSON: floats with exponents print as `1e21` and
`1e-7` (Go prints `1e+21`, `1e-07`), and integer literals beyond 64 bits decode to the
nearest float64, as in Go.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

_STDLIB_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON without spaces, like Go's encoder (non-ASCII kept as is)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        # A lone surrogate cannot be UTF-8; like Go, write U+FFFD (here as "?") instead.
        return _STDLIB_ENCODER.encode(value).encode("utf-8", errors="replace")


def loads(data: str | bytes, fallback: Callable[[str], Any] = json.loads) -> Any:
    """Parse one JSON document; what orjson refuses is parsed by `fallback` (its errors)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return fallback(data if isinstance(data, str) else data.decode("utf-8", errors="replace"))
