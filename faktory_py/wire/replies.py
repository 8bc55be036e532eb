"""RESP2 replies as bytes: the subset of RESP2 the server answers in (protocol/spec.md §1)."""

from __future__ import annotations

from typing import Any

from ..util import jsoncodec

OK = b"+OK\r\n"
NULL = b"$-1\r\n"


def _one_line(text: str) -> bytes:
    """A reply line must not contain CR or LF, or the client would read two replies.

    Lone surrogates (which JSON escapes can smuggle into a str) become ``?`` rather than
    turning a reply into an exception.
    """
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", errors="replace")


def simple(text: str) -> bytes:
    """A RESP simple string, e.g. the ``+HI {...}`` greeting."""
    return b"+" + _one_line(text) + b"\r\n"


def error(message: str, code: str = "ERR") -> bytes:
    """A RESP error line ``-CODE message``; clients raise on ``ERR`` and hand other codes
    (``NOTUNIQUE``) back to the caller."""
    return b"-" + _one_line(f"{code} {message}") + b"\r\n"


def bulk(payload: bytes | str) -> bytes:
    """A RESP bulk string; the length counts UTF-8 bytes, not characters."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", errors="replace")
    return b"$%d\r\n%b\r\n" % (len(payload), payload)


def bulk_json(value: Any) -> bytes:
    """Every JSON reply (INFO, FETCH, PUSHB, BEAT state, LATENCY) is a bulk string."""
    return bulk(jsoncodec.dumps(value))

