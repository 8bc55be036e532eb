"""`/metrics`: the server's state and timings in Prometheus' text format (protocol/spec.md §13).

The exposition is `prometheus-client`'s: a custom collector reads, at scrape time, what INFO
and the web UI read (the store's `statistics()`, the INFO document, the worker registry, the
features' own counts) and the histograms the server observes (core/timings.py). Nothing is
counted twice and nothing is kept per scrape. A scrape costs O(queues + worker processes),
never O(jobs): a queue's size is a length and its latency reads only its head job
(`Manager.latency`), as QUEUE LATENCY does.

Label values are bounded: queues beyond `[faktory_py.metrics] max_queues` (in the order they
became known) are summed under `queue="(other)"`, which no queue can be called (queue names
are `[a-zA-Z0-9._-]+`); verbs are the server's own plus `other`; sets, worker states and
throttled queues (configured by the operator) are fixed lists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.timings import Histogram
from ..core.workers import STATES
from ..features.batches.feature import Batches
from ..features.unique import UniqueJobs
from ..store.api import StoreStatistics
from .state import WebState

#: Prometheus' classic text format, which every Prometheus reads (Debian's 2.x too); our names
#: and labels are all legacy-valid, so `generate_latest` writes exactly that format
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: the label value of the queues past `max_queues` (no queue name has parentheses)
OTHER_QUEUES = "(other)"


def _histogram(name: str, documentation: str, labels: list[str],
               series: list[tuple[list[str], Histogram]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, histogram in series:
        buckets = [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]
        family.add_metric(values, buckets, histogram.sum)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class ServerCollector(Collector):
    """Everything `/metrics` says about the server (see module doc)."""

    def __init__(self, state: WebState, max_queues: int) -> None:
        self.state = state
        self.max_queues = max_queues

    def collect(self) -> Iterator[Metric]:
        state = self.state
        now = state.now()
        info = state.info(now)
        stats = state.manager.store.statistics()
        yield from self._jobs(stats, info["faktory"])
        yield from self._queues(stats.queues, stats.paused, now)
        yield from self._server(info["server"])
        yield from self._features(info["faktory"])
        yield from self._timings()

    def _jobs(self, stats: StoreStatistics, faktory: dict[str, Any]) -> Iterator[Metric]:
        yield CounterMetricFamily("faktory_jobs_processed", "Jobs ended (ACK, FAIL or reservation expiry) "
                                  "since the last FLUSH", value=stats.processed)
        yield CounterMetricFamily("faktory_jobs_failed", "Jobs failed (FAIL or reservation expiry) since the "
                                  "last FLUSH", value=stats.failures)
        yield CounterMetricFamily("faktory_jobs_pushed", "Jobs stored by PUSH and PUSHB since the server started",
                                  value=self.state.manager.pushed)
        if "total_expired" in faktory:
            yield CounterMetricFamily("faktory_jobs_expired", "Jobs dropped at FETCH because their expires_at "
                                      "had passed", value=faktory["total_expired"])
        tasks = faktory["tasks"]
        moved = CounterMetricFamily("faktory_set_enqueued", "Jobs the timers moved from a set into their queue, "
                                    "when due", labels=["set"])
        for task, label in (("Scheduled", "scheduled"), ("Retries", "retries")):
            moved.add_metric([label], tasks[task]["enqueued"])
        yield moved
        yield CounterMetricFamily("faktory_dead_purged", "Dead jobs removed at the end of their time in the "
                                  "dead set", value=tasks["Dead"]["enqueued"])
        sets = GaugeMetricFamily("faktory_set_size", "Entries of a sorted set; working: jobs reserved by "
                                 "workers", labels=["set"])
        for name in ("scheduled", "retries", "dead", "working"):
            sets.add_metric([name], getattr(stats, name))
        yield sets

    def _server(self, server: dict[str, Any]) -> Iterator[Metric]:
        yield _gauge("faktory_connections", "Open client connections", server["connections"])
        yield _gauge("faktory_fetches_waiting", "FETCHes waiting for a job", server["fetches_waiting"])
        yield CounterMetricFamily("faktory_commands", "Commands answered", value=server["command_count"])
        processes = GaugeMetricFamily("faktory_worker_processes", "Worker processes known by their heartbeat, "
                                      "by state", labels=["state"])
        by_state = dict.fromkeys(STATES, 0)
        for worker in self.state.workers.workers.values():
            by_state[worker.state] += 1
        for name, count in by_state.items():
            processes.add_metric([name], count)
        yield processes
        yield _gauge("faktory_journal_writable", "1 while the journal can be written, 0 while commands that "
                     "change state are refused", 0 if self.state.refusal() else 1)

    def _queues(self, sizes: Mapping[str, int], paused: frozenset[str], now: float) -> Iterator[Metric]:
        names = list(sizes)
        named, rest = names[:self.max_queues], names[self.max_queues:]
        latency = self.state.manager.latency(names, now)
        size = GaugeMetricFamily("faktory_queue_size", "Jobs waiting in a queue", labels=["queue"])
        age = GaugeMetricFamily("faktory_queue_latency_seconds", "Age of the oldest job waiting in a queue "
                                "(0 when empty)", labels=["queue"])
        stopped = GaugeMetricFamily("faktory_queue_paused", "1 while a queue is paused", labels=["queue"])
        for name in named:
            size.add_metric([name], sizes[name])
            age.add_metric([name], latency[name])
            stopped.add_metric([name], 1 if name in paused else 0)
        if rest:
            size.add_metric([OTHER_QUEUES], sum(sizes[name] for name in rest))
            age.add_metric([OTHER_QUEUES], max(latency[name] for name in rest))
            stopped.add_metric([OTHER_QUEUES], sum(1 for name in rest if name in paused))
        yield size
        yield age
        yield stopped
        yield _gauge("faktory_queues", "Known queues (those past max_queues are summed as "
                     f"queue=\"{OTHER_QUEUES}\")", len(names))

    def _features(self, faktory: dict[str, Any]) -> Iterator[Metric]:
        features = self.state.features
        batches = features.find(Batches)
        if batches is not None:
            yield _gauge("faktory_batches", "Batches not yet finished", len(batches.batches))
        unique = features.find(UniqueJobs)
        if unique is not None:
            yield _gauge("faktory_unique_locks", "Unique locks held", len(unique.locks))
        statsd = faktory.get("statsd")
        if statsd is not None:
            yield CounterMetricFamily("faktory_statsd_packets", "statsd packets sent", value=statsd["packets"])
            yield CounterMetricFamily("faktory_statsd_errors", "statsd packets that could not be sent (lost)",
                                      value=statsd["errors"])
        for section, label, what in (("throttles", "queue", "throttle"), ("limits", "limit", "limit")):
            entries = faktory.get(section, {})
            if entries:
                yield from _limit_gauges(entries, label, what)

    def _timings(self) -> Iterator[Metric]:
        timings = self.state.timings
        if timings.enabled:  # else not observed (`[faktory_py.metrics] timings = false`): left out, not zeros
            yield _histogram("faktory_command_duration_seconds", "A command's service time, from its line read "
                             "to its reply ready (neither a FETCH's wait nor the journal write and fsync its "
                             "reply then waits for, shared by the replies of a batch: see faktory_journal_*)",
                             ["verb"], [([verb], histogram) for verb, histogram in timings.commands])
            yield _histogram("faktory_fetch_wait_seconds", "How long a FETCH that found no job waited (until a "
                             "job or its timeout)", [], [([], timings.fetch_wait)])
        yield _histogram("faktory_journal_write_seconds", "One journal frame's write", [],
                         [([], timings.journal_write)])
        yield _histogram("faktory_journal_fsync_seconds", "One journal fsync", [], [([], timings.journal_fsync)])
        yield _histogram("faktory_journal_compaction_seconds", "One journal compaction (snapshot written)", [],
                         [([], timings.compaction)])


def metrics_endpoint(state: WebState, max_queues: int) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint: its own registry (the server's collector, and the process's
    CPU, memory and file descriptors from prometheus-client's `ProcessCollector`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(state, max_queues))
    ProcessCollector(registry=registry)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)
    return metrics


def create_metrics_app(state: WebState, max_queues: int) -> Starlette:
    """`/metrics` alone, without auth: what `[faktory_py.metrics] binding` serves to scrapers
    (bind it where only they can reach it)."""
    return Starlette(routes=[Route("/metrics", metrics_endpoint(state, max_queues))])


def _limit_gauges(entries: dict[str, Any], label: str, what: str) -> Iterator[Metric]:
    """The gauges of INFO's `throttles` (by queue) or `limits` (named limits, by name):
    slots taken and jobs held back, summed over partitions, and the `concurrency` limit (per
    partition in a partitioned entry, protocol/spec.md §11.8)."""
    name = "faktory_throttle_limit" if what == "throttle" else "faktory_limit_concurrency"
    in_use = GaugeMetricFamily(f"faktory_{what}_in_use", f"{what.capitalize()} slots taken", labels=[label])
    limit = GaugeMetricFamily(name, f"A {what}'s concurrency limit (per partition when partitioned)",
                              labels=[label])
    waiting = GaugeMetricFamily(f"faktory_{what}_waiting", f"Jobs held back by a full {what}", labels=[label])
    for key, entry in sorted(entries.items()):
        in_use.add_metric([key], entry["in_use"])
        waiting.add_metric([key], entry["waiting"])
        if entry["concurrency"] is not None:
            limit.add_metric([key], entry["concurrency"])
    yield in_use
    yield limit
    yield waiting
