"""Job payloads for the tests: one builder, so a test names only the fields it is about, and
the bytes of a PUSH of one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from helpers.rawclient import new_jid


def job(jid: str | None = None, **fields: Any) -> dict[str, Any]:
    """`{"jid", "jobtype": "T", "args": [], **fields}` in that key order (a field given
    overrides the default in place); `jid` None: a fresh one. A field given as `...` is left
    out, for a test of a payload that lacks it."""
    payload = {"jid": new_jid() if jid is None else jid, "jobtype": "T", "args": [], **fields}
    return {key: value for key, value in payload.items() if value is not ...}


def push_command(payload: Mapping[str, Any]) -> bytes:
    """`PUSH <payload as compact JSON>`, without its line ending (a test picks CRLF or LF)."""
    return b"PUSH " + json.dumps(payload, separators=(",", ":")).encode()
