"""The sections about jobs that belong together: `[batches]` (protocol/spec.md §10),
`[faktory_py.workflows]` (job dependencies) and `[faktory_py.results]` (outcomes and results),
both protocol/spec.md §14.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .values import _count, _flag, _seconds

#: `[batches] policy`: whether a committed batch is immutable (protocol/spec.md §10.3)
BATCH_POLICIES = ("strict", "permissive")


@dataclass(frozen=True)
class BatchesConfig:
    """`[batches]` (protocol/spec.md §10)."""

    policy: str = "strict"
    #: an open batch not committed within this many seconds is dropped (no callbacks)
    uncommitted_ttl: float = 30 * 60.0
    #: a batch is forgotten this many seconds after it is done (every callback ACKed)
    retention: float = 24 * 3600.0


@dataclass(frozen=True)
class WorkflowsConfig:
    """`[faktory_py.workflows]`: job dependencies (protocol/spec.md §14)."""

    #: the key of `custom` naming a job's dependencies; "" turns dependencies off
    dependency_key: str = "after"
    #: seconds a dependent waits for a dependency jid the server has never seen
    unknown_timeout: float = 1800.0
    #: the most dependencies one job may name
    max_deps: int = 10000


@dataclass(frozen=True)
class ResultsConfig:
    """`[faktory_py.results]`: job outcomes and results (protocol/spec.md §14.6)."""

    #: seconds an outcome record is kept after its job ended (longer while a held job needs it)
    ttl: float = 86400.0
    #: the largest result an ACK may carry, encoded
    max_bytes: int = 65536
    #: past this many bytes, `custom._after` carries outcomes without results
    inject_max_bytes: int = 262144
    #: a tracked job's last TRACK SET `desc` is its result when it succeeds without one
    from_track_desc: bool = False


def _batches(section: Mapping[str, Any]) -> BatchesConfig:
    policy = section.get("policy", BatchesConfig.policy)
    if policy not in BATCH_POLICIES:
        raise ConfigError(f"[batches] policy must be one of {', '.join(BATCH_POLICIES)}, not {policy!r}")
    return BatchesConfig(policy=policy,
                         uncommitted_ttl=_seconds(section, "batches", "uncommitted_ttl", BatchesConfig.uncommitted_ttl),
                         retention=_seconds(section, "batches", "retention", BatchesConfig.retention))


def _workflows(section: Mapping[str, Any]) -> WorkflowsConfig:
    table = "faktory_py.workflows"
    key = section.get("dependency_key", WorkflowsConfig.dependency_key)
    if not isinstance(key, str):
        raise ConfigError(f"[{table}] dependency_key must be a string (\"\" turns dependencies off), not {key!r}")
    return WorkflowsConfig(dependency_key=key,
                           unknown_timeout=_seconds(section, table, "unknown_timeout", WorkflowsConfig.unknown_timeout),
                           max_deps=_count(section, table, "max_deps", WorkflowsConfig.max_deps))


def _results(section: Mapping[str, Any]) -> ResultsConfig:
    table = "faktory_py.results"
    return ResultsConfig(from_track_desc=_flag(section, table, "from_track_desc", ResultsConfig.from_track_desc),
                         ttl=_seconds(section, table, "ttl", ResultsConfig.ttl),
                         max_bytes=_count(section, table, "max_bytes", ResultsConfig.max_bytes),
                         inject_max_bytes=_count(section, table, "inject_max_bytes", ResultsConfig.inject_max_bytes))
