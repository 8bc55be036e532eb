"""The tests' name for the one blocking client (faktory_py/tools/client.py), and jids.

Tests speak raw bytes through it (so they can send malformed lines and check exact reply
bytes); its reader checks every bulk's length against the bytes. Real client libraries are
tested separately: this is for the protocol core only.
"""

from __future__ import annotations

import hashlib
import time

from faktory_py.tools.client import Address, Client, ReplyError

__all__ = ["RawClient", "ReplyError", "new_jid"]


class RawClient(Client):
    """`Client` to a test server's loopback port (every test server listens there)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(Address(host, port))


def new_jid() -> str:
    return hashlib.sha1(str(time.perf_counter_ns()).encode()).hexdigest()[:24]
