"""`[throttles]` (Faktory Enterprise's, protocol/spec.md §11.1), with our extensions: the
`[faktory_py.throttles]` defaults of the modes (§11.7), rates (§11.5), partitions (§11.8) and
`[faktory_py.limits.<name>]`, named limits over jobtypes and queues (§11.9).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..util.limits import Limit, Rate
from .values import _QUEUE_NAME, _mode_error, _own_table


@dataclass(frozen=True, slots=True)
class Throttle(Limit):
    """One `[throttles.<queue>]` entry (protocol/spec.md §11.1): at most `concurrency` jobs
    of `queue` reserved at once across the server, at most `worker` per worker process;
    `rate`, `slot_release`, `on_worker_lost` and `partition` are our extensions."""

    queue: str


@dataclass(frozen=True, slots=True)
class NamedLimit(Limit):
    """One `[faktory_py.limits.<name>]` entry (protocol/spec.md §11.9): the limits of a
    throttle over the jobs whose jobtype is one of `jobtypes` and whose queue is one of
    `queues` (None: any)."""

    name: str
    jobtypes: tuple[str, ...] | None = None
    queues: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ThrottlesConfig:
    """`[throttles]` and `[faktory_py.limits]`: the entries, and the warnings their unknown
    keys gave (logged at boot)."""

    entries: tuple[Throttle, ...] = ()
    warnings: tuple[str, ...] = ()
    limits: tuple[NamedLimit, ...] = ()


#: keys of a throttle entry this version reads; any other is warned about and ignored
_THROTTLE_KEYS = ("concurrency", "worker", "timeout", "slot_release", "on_worker_lost", "rate", "partition")
#: keys of a `[faktory_py.limits.<name>]` entry (any other is refused: it is our section)
_LIMIT_KEYS = (*_THROTTLE_KEYS, "jobtypes", "queues")
#: a partition selector: a job's jobtype, its queue, or a path into its custom or args
_SELECTOR = re.compile(r"jobtype|queue|(custom|args)(\.[^.]+)+")
#: the values of the modes of a throttle entry, its default first (protocol/spec.md §11.7)
_THROTTLE_MODES = {"slot_release": ("timeout", "job_end"), "on_worker_lost": ("fail", "keep")}
#: bounds of `rate = { limit = L, period = P }` (protocol/spec.md §11.5)
_RATE_LIMITS = (1, 100_000)
_RATE_PERIODS = (0.001, 86_400)


def throttles(section: Any, defaults: Any = None, limits: Any = None) -> ThrottlesConfig:
    """`[throttles]`, in either TOML spelling (inline tables or `[throttles.<queue>]`
    sub-tables are the same document), with `[faktory_py.throttles]`'s `defaults` for the
    modes an entry does not set. A bad entry raises `config: throttles.<queue>: <reason>`
    (protocol/spec.md §11.1); an unknown key only warns, so a configuration Faktory
    Enterprise accepts still boots."""
    if not isinstance(section, dict):
        raise ConfigError("config: throttles: must be a table of queue = { ... } entries")
    default_modes = _default_modes({} if defaults is None else defaults)
    limits = {} if limits is None else limits
    entries: list[Throttle] = []
    warnings: list[str] = []
    for queue, entry in section.items():
        def fail(reason: str, queue: str = queue) -> ConfigError:
            return ConfigError(f"config: throttles.{queue}: {reason}")

        if not _QUEUE_NAME.fullmatch(queue):
            raise fail("invalid queue name")
        if not isinstance(entry, dict):
            raise fail("must be a table, e.g. { concurrency = 4, timeout = 60 }")
        for key in entry:
            if key not in _THROTTLE_KEYS:
                warnings.append(f'config: throttles.{queue}: unknown key "{key}" ignored')
        if "timeout" not in entry:
            raise fail("timeout is required")
        entries.append(Throttle(queue=queue, **_limits(entry, default_modes, fail)))
    named: list[NamedLimit] = []
    if not isinstance(limits, dict):
        raise ConfigError("config: faktory_py.limits: must be a table of name = { ... } entries")
    for name, entry in limits.items():
        def fail(reason: str, name: str = name) -> ConfigError:
            return ConfigError(f"config: faktory_py.limits.{name}: {reason}")

        if not _QUEUE_NAME.fullmatch(name):
            raise fail("invalid limit name")
        if name in section:
            raise fail(f"the name is taken by [throttles.{name}]")
        _own_table(entry, _LIMIT_KEYS, '{ jobtypes = ["RenderPDF"], concurrency = 2 }', fail)
        selectors = {key: _names(entry[key], key, fail) for key in ("jobtypes", "queues") if key in entry}
        if not selectors:
            raise fail("needs jobtypes or queues")
        named.append(NamedLimit(name=name, **selectors, **_limits(entry, default_modes, fail)))
    return ThrottlesConfig(tuple(entries), tuple(warnings), tuple(named))


def _limits(entry: dict[str, Any], default_modes: dict[str, str],
            fail: Callable[[str], ConfigError]) -> dict[str, Any]:
    """The limits and modes of a throttle or named limit entry, checked."""
    limits: dict[str, Any] = {}
    for key in ("timeout", "concurrency", "worker"):
        value = entry.get(key)
        if value is not None and (type(value) is not int or value < 1):
            raise fail(f"{key} must be an integer >= 1")
        limits[key] = value
    limits["rate"] = None if "rate" not in entry else _rate(entry["rate"], fail)
    if limits["concurrency"] is None and limits["worker"] is None and limits["rate"] is None:
        raise fail("needs concurrency, worker or rate")
    for key, values in _THROTTLE_MODES.items():
        limits[key] = entry.get(key, default_modes[key])
        if limits[key] not in values:
            raise fail(_mode_error(key, values))
    if "partition" in entry:
        limits["partition"] = _partition(entry["partition"], fail)
    return limits


def _partition(value: Any, fail: Callable[[str], ConfigError]) -> tuple[str, ...]:
    """`partition = [selector, ...]` (protocol/spec.md §11.8)."""
    usage = 'partition must be a list of "jobtype", "queue", "custom.<path>" or "args.<path>"'
    if not isinstance(value, list) or not value:
        raise fail(usage)
    for selector in value:
        if not isinstance(selector, str) or not _SELECTOR.fullmatch(selector):
            raise fail(f"{usage}, not {selector!r}")
    if len(set(value)) != len(value):
        raise fail("partition names a selector twice")
    return tuple(value)


def _names(value: Any, key: str, fail: Callable[[str], ConfigError]) -> tuple[str, ...]:
    """`jobtypes = [...]` or `queues = [...]` of a named limit: a non-empty list of names."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise fail(f"{key} must be a non-empty list of names")
    if key == "queues" and not all(_QUEUE_NAME.fullmatch(v) for v in value):
        raise fail("queues: invalid queue name")
    return tuple(value)


def _default_modes(section: Any) -> dict[str, str]:
    """`[faktory_py.throttles]`: the modes of every throttle entry that does not set its own
    (protocol/spec.md §11.7). Our own section, so an unknown key is refused, not ignored."""
    def fail(reason: str) -> ConfigError:
        return ConfigError(f"config: faktory_py.throttles: {reason}")

    _own_table(section, _THROTTLE_MODES, '{ slot_release = "job_end" }', fail)
    modes: dict[str, str] = {}
    for key, values in _THROTTLE_MODES.items():
        modes[key] = section.get(key, values[0])
        if modes[key] not in values:
            raise fail(_mode_error(key, values))
    return modes


def _rate(value: Any, fail: Callable[[str], ConfigError]) -> Rate:
    """`rate = { limit = L, period = P }`. Any other key is refused, not ignored:
    it is our extension, and a key ignored there would not limit what it says."""
    _own_table(value, ("limit", "period"), "{ limit = 100, period = 60 }", fail, "rate")
    limit, period = value.get("limit"), value.get("period")
    low, high = _RATE_LIMITS
    if type(limit) is not int or not low <= limit <= high:
        raise fail(f"rate.limit must be an integer from {low} to {high}")
    low, high = _RATE_PERIODS
    if type(period) not in (int, float) or not low <= period <= high:
        raise fail(f"rate.period must be a number of seconds from {low} to {high}")
    return Rate(limit, float(period))
