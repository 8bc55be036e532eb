"""Waiting for something another process does, with a deadline instead of a sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import trio


def eventually(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.1f} s waiting for {what}", pytrace=False)
        time.sleep(interval)


def fetches_blocked(info: Callable[[], dict[str, Any]], count: int, timeout: float = 5) -> None:
    """Wait until exactly `count` FETCHes are blocked in faktory_py (INFO's
    `server.fetches_waiting`, ours: protocol/spec.md §3 INFO); `info` returns a fresh INFO."""
    eventually(lambda: info()["server"]["fetches_waiting"] == count, timeout,
               f"{count} blocked FETCH(es)", interval=0.02)


async def until(check: Callable[[], object]) -> None:
    """In a trio test: poll a server-side observable every 10 ms until it holds (the test's
    hang guard bounds the wait)."""
    while not check():
        await trio.sleep(0.01)
