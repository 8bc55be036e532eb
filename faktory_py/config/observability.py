"""What the server reports to monitoring: `[faktory_py.metrics]`, Prometheus' `/metrics`
(protocol/spec.md §13), and `[statsd]`, Faktory Enterprise's statsd metrics (protocol/spec.md §15).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .values import _QUEUE_NAME, _flag, split_binding

#: `[faktory_py.metrics] binding` without a port (web/metrics.py)
DEFAULT_METRICS_PORT = 7421


@dataclass(frozen=True)
class MetricsConfig:
    """`[faktory_py.metrics]`: Prometheus' `/metrics` (web/metrics.py)."""

    #: a binding (like `-w`'s) that serves `/metrics` alone, without auth, for scrapers;
    #: None: `/metrics` is only on the web UI's port, behind the UI's auth
    binding: str | None = None
    #: queues named in the per-queue gauges, in the order they became known; the rest are
    #: summed under `queue="(other)"`, so a server with many queues cannot flood Prometheus
    max_queues: int = 100
    #: time every command and FETCH wait (core/timings.py); False: the command path reads no
    #: clock for metrics, and `/metrics` leaves those two histograms out (the cost of timing is
    #: measured by the bench's `faktory_py-notimings` server)
    timings: bool = True


def _metrics(section: Mapping[str, Any]) -> MetricsConfig:
    binding = section.get("binding")
    if binding is not None and (not isinstance(binding, str) or not binding.strip()):
        raise ConfigError('[faktory_py.metrics] binding must be a binding like "127.0.0.1:7421"')
    if binding is not None:
        split_binding(binding, DEFAULT_METRICS_PORT)  # ConfigError if it is none
    max_queues = section.get("max_queues", MetricsConfig.max_queues)
    if type(max_queues) is not int or max_queues < 0:
        raise ConfigError("[faktory_py.metrics] max_queues must be an integer >= 0")
    return MetricsConfig(binding=binding, max_queues=max_queues,
                         timings=_flag(section, "faktory_py.metrics", "timings", MetricsConfig.timings))


@dataclass(frozen=True)
class StatsdConfig:
    """`[statsd]` in `conf.d/statsd.toml`: Faktory Enterprise's statsd metrics (protocol/spec.md §15)."""

    #: "host:port" of the statsd server (UDP); None: no metrics are sent
    location: str | None = None
    #: prepended to every metric name
    namespace: str = "faktory."
    #: DogStatsD tags sent with every metric, "name:value"
    tags: tuple[str, ...] = ()
    #: metrics per UDP packet: a buffer this full is sent at once (else within 100 ms)
    buffer_size: int = 15
    #: the queues whose `queue.latency` is sent with the global metrics
    queue_latency: tuple[str, ...] = ()
    #: `queueLatency = true`: every queue's (ours: our latency reads only a queue's head job)
    queue_latency_all: bool = False
    #: what the unknown keys gave (logged at boot)
    warnings: tuple[str, ...] = ()


#: DataDog's rule for a tag (protocol/spec.md §15)
_STATSD_TAG = re.compile(r"[a-zA-Z][\w\-:./]*")
_STATSD_RESERVED_TAGS = ("host", "device", "source", "service")
_STATSD_KEYS = ("location", "namespace", "tags", "bufferSize", "queueLatency")


def statsd(section: Any) -> StatsdConfig:
    """`[statsd]` (Faktory Enterprise's `conf.d/statsd.toml`); a bad value raises
    `config: statsd.<key>: <reason>`. Without `location` nothing is sent, whatever else is set."""
    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(f"config: statsd.{key}: {reason}")

    if not isinstance(section, dict):
        raise ConfigError('config: statsd: must be a table, e.g. [statsd] location = "127.0.0.1:8125"')
    warnings = tuple(f'config: statsd: unknown key "{key}" ignored' for key in section if key not in _STATSD_KEYS)
    location = section.get("location")
    if location is not None:
        host, sep, port = location.rpartition(":") if isinstance(location, str) else ("", "", "")
        if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise fail("location", 'must be "host:port", e.g. "127.0.0.1:8125"')
    namespace = section.get("namespace", StatsdConfig.namespace)
    if not isinstance(namespace, str) or any(c in namespace for c in ":|@#\n "):
        raise fail("namespace", 'must be a string without ":", "|", "@", "#" or spaces, e.g. "faktory."')
    tags = section.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise fail("tags", 'must be a list of "name:value" strings')
    for tag in tags:
        if not _STATSD_TAG.fullmatch(tag):
            raise fail("tags", f"{tag!r} is not a DataDog tag (a letter, then letters, digits, _-:./)")
        if tag.partition(":")[0] in _STATSD_RESERVED_TAGS:
            raise fail("tags", f"{tag!r}: {', '.join(_STATSD_RESERVED_TAGS)} are reserved tag names")
    size = section.get("bufferSize", StatsdConfig.buffer_size)
    if type(size) is not int or not 1 <= size <= 1000:
        raise fail("bufferSize", "must be an integer from 1 to 1000")
    queues = section.get("queueLatency", [])
    every = queues is True
    if isinstance(queues, bool):
        queues = []
    if not isinstance(queues, list) or not all(isinstance(q, str) and _QUEUE_NAME.fullmatch(q) for q in queues):
        raise fail("queueLatency", 'must be a list of queue names, e.g. ["critical", "default"], or true')
    return StatsdConfig(location, namespace, tuple(tags), size, tuple(queues), every, warnings)
