"""Redis glob patterns, the real meaning of MUTATE's ``regexp`` filter (spec §3.10).

Faktory hands the filter to Redis ``SCAN … MATCH``, so clients write globs such as
``*\\"args\\":\\[\\"fizz\\"\\]*``. We follow Redis ``stringmatchlen`` element by element,
including its quirks (``[]`` matches nothing, ``[^]`` anything, an unclosed ``[`` runs to
the end of the pattern, ``[z-a]`` is ``[a-z]``), but compare characters rather than bytes.
"""

from __future__ import annotations

import re

_ANY = "[\\s\\S]"
_NOTHING = "[^\\s\\S]"


def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` into a regex that matches (with any of match, search or
    fullmatch) exactly the whole strings Redis would match.

    Each element other than ``*`` consumes one character, so the text between two stars can
    be matched at its leftmost occurrence without ever backtracking into it: atomic groups
    keep matching time linear in the string for any number of stars, where a naive
    translation to ``.*`` could take exponential time on a hostile MUTATE.
    """
    segments: list[list[str]] = [[]]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            segments.append([])
            i += 1
        elif ch == "?":
            segments[-1].append(_ANY)
            i += 1
        elif ch == "[":
            element, i = _bracket(pattern, i + 1)
            segments[-1].append(element)
        else:
            if ch == "\\" and i + 1 < len(pattern):
                i += 1
            segments[-1].append(re.escape(pattern[i]))
            i += 1
    parts = ["".join(segment) for segment in segments]
    if len(parts) == 1:
        body = parts[0]
    else:
        middle = "".join(f"(?>.*?{part})" for part in parts[1:-1] if part)
        body = parts[0] + middle + ".*" + parts[-1]
    return re.compile(f"\\A{body}\\Z", re.DOTALL)


def _bracket(pattern: str, i: int) -> tuple[str, int]:
    """Translate the class whose body starts at ``pattern[i]``; return it and the index just
    past its ``]`` (or the end of the pattern when it is never closed)."""
    negate = i < len(pattern) and pattern[i] == "^"
    if negate:
        i += 1
    ranges: list[tuple[str, str]] = []
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            ranges.append((pattern[i + 1], pattern[i + 1]))
            i += 2
        elif ch == "]":
            i += 1
            break
        elif i + 2 < len(pattern) and pattern[i + 1] == "-":
            low, high = sorted((ch, pattern[i + 2]))
            ranges.append((low, high))
            i += 3
        else:
            ranges.append((ch, ch))
            i += 1
    if not ranges:
        return (_ANY if negate else _NOTHING), i
    body = "".join(_class_char(low) + ("" if low == high else "-" + _class_char(high))
                   for low, high in ranges)
    return f"[{'^' if negate else ''}{body}]", i


def _class_char(ch: str) -> str:
    """A character escaped by code point, which is safe anywhere inside ``[...]``."""
    return f"\\U{ord(ch):08x}"
