"""The checks every section shares: positive seconds and counts, flags, Faktory's queue names, a
table of our own (`[faktory_py.*]`: an unknown key is refused), a mode's error text and a
`host:port` binding (protocol/spec.md §8). The section modules read their tables with these,
so a given mistake gets the same message wherever it is made.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Container, Mapping
from typing import Any

from ..errors import ConfigError

#: Faktory's queue names (a throttle, a `[cron.job]` and statsd's `queueLatency` name queues)
_QUEUE_NAME = re.compile(r"[a-zA-Z0-9._-]+")


def _seconds(section: Mapping[str, Any], table: str, name: str, default: float) -> float:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"[{table}] {name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _count(section: Mapping[str, Any], table: str, name: str, default: int) -> int:
    value = section.get(name, default)
    if type(value) is not int or value < 1:
        raise ConfigError(f"[{table}] {name} must be a positive integer, not {value!r}")
    return value


def _flag(section: Mapping[str, Any], table: str, name: str, default: bool) -> bool:
    """A `true`/`false` setting; anything else (`0`, `"off"`) is refused, not read as truthy."""
    value = section.get(name, default)
    if type(value) is not bool:
        raise ConfigError(f"[{table}] {name} must be true or false, not {value!r}")
    return value


def _positive_int(section: Mapping[str, Any], name: str, default: int) -> int:
    value = section.get(name, default)
    if type(value) is not int or value < 1:
        raise ConfigError(f"[faktory_py] {name} must be a positive integer")
    return value


def _own_table(value: Any, keys: Container[str], example: str, fail: Callable[[str], ConfigError],
               name: str = "") -> None:
    """Check a table of our own (`[faktory_py.*]`, our extension keys): a table, and an unknown
    key refused, not ignored (one ignored would not do what it says). `name`: the key the table
    is under, prefixed to the messages."""
    prefix = f"{name} " if name else ""
    if not isinstance(value, dict):
        raise fail(f"{prefix}must be a table, e.g. {example}")
    for key in value:
        if key not in keys:
            raise fail(f'{name + ": " if name else ""}unknown key "{key}"')


def _mode_error(key: str, values: tuple[str, ...]) -> str:
    return f"{key} must be " + " or ".join(f'"{value}"' for value in values)


def split_binding(binding: str, default_port: int) -> tuple[str, int]:
    """`host:port`, `:port` (all interfaces) or `[::1]:port` → (host, port)."""
    host, sep, port = binding.rpartition(":")
    if not sep:
        host, port = binding, str(default_port)
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"invalid binding {binding!r}: expected host:port") from None
