"""Faktory Enterprise's statsd metrics, as DogStatsD lines (protocol/spec.md §15).

Why: dashboards and alerts built for Faktory Enterprise (Grafana, Datadog) read these names.
This module only words the lines; the server sends them (server/statsd.py: a non-blocking
UDP socket, a bounded buffer, errors counted), so nothing here does I/O and a line costs
one string format on the command path. It is a feature only when `[statsd] location` is
set: a server without it registers no observer, and its commands pay nothing.

Per job, told by the job lifecycle once a step is committed (`core.hooks.ObserveHook`),
each tagged `queue:<queue>,jobtype:<jobtype>` and the configured tags: `jobs.count` (ACK or
FAIL), `jobs.failed` (FAIL), `jobs.perform` (ms from FETCH to ACK), `jobs.expired`,
`uniq.lock` (a unique job pushed), `uniq.denied` (`-NOTUNIQUE`), and ours, `jobs.pushed` and
`jobs.fetched`. Every 30 s (`report`): the global gauges, `queue.size` / `queue.latency`, and
ours: throttles' `throttle.in_use` / `throttle.waiting` (named limits': `limit.*`), cron's
`cron.fired` … counts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from ..core.registry import Feature
from ..store.api import Job, Reservation
from .unique import unique_for

#: what a DataDog tag value may hold; anything else in a queue or jobtype becomes "_"
_UNSAFE = re.compile(r"[^\w\-:./]")


class LineSink(Protocol):
    """Where the lines go (server/statsd.py's UDP sender)."""

    def add(self, line: str) -> None:
        """Take one line; never blocks, never raises."""

    def statistics(self) -> dict[str, int]:
        """Counts for INFO: packets sent, send errors, lines lost."""


@functools.lru_cache(maxsize=4096)
def _job_tags(queue: str, jobtype: str, common: str) -> str:
    """`|#queue:…,jobtype:…` and the configured tags (cached: a few jobtypes repeat)."""
    return f"|#queue:{_UNSAFE.sub('_', queue)},jobtype:{_UNSAFE.sub('_', jobtype)}{common}"


def _number(value: float) -> str:
    """An integer as such, else three decimals at most (statsd takes both)."""
    return str(int(value)) if value == int(value) else f"{value:.3f}".rstrip("0").rstrip(".")


class StatsdMetrics:
    """The lines of the lifecycle's events and of the periodic report (see module doc)."""

    def __init__(self, sink: LineSink, namespace: str = "faktory.", tags: Iterable[str] = (),
                 max_queues: int = 100) -> None:
        self.sink = sink
        self.prefix = namespace
        tags = tuple(tags)
        #: appended to each job's tags, and alone (`|#…`) to every other line
        self._common = "".join(f",{tag}" for tag in tags)
        self._global = f"|#{','.join(tags)}" if tags else ""
        #: queues named in `queue.size`, as `/metrics` names them
        self.max_queues = max_queues
        #: cron's totals at the last report: `cron.*` counts what happened since
        self._cron_totals: dict[str, int] = {}

    def feature(self) -> Feature:
        return Feature("statsd", self, observe=self, info=self)

    def info_fields(self) -> dict[str, Any]:
        """INFO's `faktory.statsd`: how sending goes (errors count up while statsd is unreachable)."""
        return {"statsd": self.sink.statistics()}

    def _job(self, name: str, value: str, job: Job) -> None:
        tags = _job_tags(job.get("queue", "default"), job.get("jobtype", ""), self._common)
        self.sink.add(f"{self.prefix}{name}:{value}{tags}")

    # --- ObserveHook ----------------------------------------------------------------

    def pushed(self, job: Job, now: float) -> None:
        self._job("jobs.pushed", "1|c", job)
        if unique_for(job) is not None:
            self._job("uniq.lock", "1|c", job)

    def denied(self, job: Job, now: float) -> None:
        self._job("uniq.denied", "1|c", job)

    def fetched(self, job: Job, wid: str, now: float) -> None:
        self._job("jobs.fetched", "1|c", job)

    def acked(self, res: Reservation, now: float) -> None:
        self._job("jobs.count", "1|c", res.job)
        self._job("jobs.perform", f"{_number(max(0.0, now - res.reserved_at) * 1000)}|ms", res.job)

    def failed(self, res: Reservation, now: float) -> None:
        self._job("jobs.count", "1|c", res.job)
        self._job("jobs.failed", "1|c", res.job)

    def expired(self, job: Job, now: float) -> None:
        self._job("jobs.expired", "1|c", job)

    # --- every 30 s -----------------------------------------------------------------

    def report(self, info: Mapping[str, Any], latency: Callable[[list[str]], Mapping[str, float]],
               latency_queues: Iterable[str] | None) -> None:
        """From an INFO document: the global gauges, `queue.size` of the first `max_queues`
        queues (by name), `queue.latency` (seconds) of `latency_queues` that exist (None: of
        those same queues), each throttle's and named limit's gauges, and what cron did since
        the last report."""
        add, prefix, tags, common = self.sink.add, self.prefix, self._global, self._common
        faktory, sets = info["faktory"], info["faktory"]["sets"]
        for name, value in (("processed", faktory["total_processed"]), ("failures", faktory["total_failures"]),
                            ("enqueued", faktory["total_enqueued"]), ("scheduled", sets["scheduled"]),
                            ("retries", sets["retries"]), ("dead", sets["dead"]), ("working", sets["working"]),
                            ("connections", info["server"]["connections"])):
            add(f"{prefix}{name}:{value}|g{tags}")
        queues = faktory["queues"]
        named = list(queues)[:self.max_queues]
        for queue in named:
            add(f"{prefix}queue.size:{queues[queue]}|g|#queue:{queue}{common}")
        wanted = named if latency_queues is None else [q for q in latency_queues if q in queues]
        for queue, seconds in latency(wanted).items():
            add(f"{prefix}queue.latency:{_number(seconds)}|g|#queue:{queue}{common}")
        for section, kind in (("throttles", "throttle"), ("limits", "limit")):
            for name, entry in faktory.get(section, {}).items():
                for key in ("in_use", "waiting"):
                    add(f"{prefix}{kind}.{key}:{entry[key]}|g|#{kind}:{name}{common}")
        cron = faktory.get("cron", {})
        for key in ("fired", "missed", "denied", "skipped"):
            total = cron.get(key, 0)
            since, self._cron_totals[key] = total - self._cron_totals.get(key, 0), total
            if since > 0:  # < 0 after a FLUSH or a reload that removed entries: counted again from there
                add(f"{prefix}cron.{key}:{since}|c{tags}")
