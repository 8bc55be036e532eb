"""Cron entries and a server without I/O for the cron tests: a `Manager` over a `MemoryStore`
with the server's features, a clock the test sets (forwards, or back to step it), the due
timer's loop emulated as server/timers.py runs it, and a restart that rebuilds the store from
what was journaled (through msgpack) or from a snapshot."""

from __future__ import annotations

import calendar
import json
from typing import Any

from faktory_py.config import CronConfig, CronEntry, cron
from faktory_py.core.lifecycle import Manager
from faktory_py.features.cron.feature import Cron
from faktory_py.server.app import enterprise_features
from faktory_py.store.memory import MemoryStore
from helpers.model_replay import replay, roundtrip, snapshot_records


def utc(*fields: int) -> float:
    """Unix seconds of a UTC date and time (year, month, day[, hour, minute, second])."""
    return float(calendar.timegm((*fields, 0, 0, 0)[:6]))


def cron_entries(*tables: dict[str, Any], defaults: dict[str, Any] | None = None) -> CronConfig:
    """`[[cron]]` tables as faktory_py/config/crontab.py reads them (each `{"schedule": …, "job": {…}, …}`)."""
    return cron([{"job": {"type": "CronJob"}, **table} for table in tables], defaults or {})


class CronServer:
    """A server's semantics, cron included, its timer run by hand at `now`."""

    def __init__(self, config: CronConfig, now: float, records: list[list[dict[str, Any]]] | None = None) -> None:
        #: every committed op list, as the journal would give it back
        self.records: list[list[dict[str, Any]]] = []
        self.now = now
        self.store = MemoryStore(sink=self._sink)
        features = enterprise_features(self.store, cron=config)
        cron_feature = features.find(Cron)
        assert cron_feature is not None
        self.cron = cron_feature
        self.features = features
        if records is not None:
            replay(self.store, records)
            self.records = list(records)
        self.manager = Manager(self.store, features=features)

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.records.append(roundtrip(ops))
        return len(self.records)

    def run_timer(self) -> None:
        """What the due timer does at `now`: run what is due until nothing more is."""
        while (due := self.manager.next_due()) is not None and due <= self.now:
            self.manager.run_due(self.now)

    def advance(self, to: float) -> None:
        """Let time run to `to`, the timer waking at each due time on the way (1 ms late, as
        server/timers.py wakes), then at `to`."""
        while (due := self.manager.next_due()) is not None and due <= to:
            self.now = max(self.now, min(due + 0.001, to))
            self.run_timer()
        self.now = to
        self.run_timer()

    def step_clock(self, to: float) -> None:
        """The wall clock jumps to `to` (back or forward), and the timer wakes."""
        self.now = to
        self.run_timer()

    def restart(self, config: CronConfig | None, now: float, *, snapshot: bool = False) -> CronServer:
        """A new server on this one's journal (or snapshot), started at `now` and booted (its
        timer's first run)."""
        records = snapshot_records(self.store) if snapshot else self.records
        server = CronServer(config if config is not None else self.config_in_force(), now, records)
        server.run_timer()
        return server

    def config_in_force(self) -> CronConfig:
        return CronConfig(tuple(self.cron.entries.values()))  # type: ignore[arg-type]

    def jobs(self) -> list[dict[str, Any]]:
        """Every job still queued, in each queue's order (the order cron pushed them)."""
        return [job for queue in self.store.queue_names() for job in self.store.queued(queue)]

    def fired(self, entry: CronEntry | None = None) -> list[float]:
        """The ticks cron fired a job for (from the journal: a job since fetched and ACKed
        still counts), in the order they fired, for one entry or all."""
        return [op["tick"] for record in self.records for op in record
                if op["op"] == "cron_tick" and op["outcome"] == "fired" and (entry is None or op["id"] == entry.id)]

    def pushed(self) -> list[dict[str, Any]]:
        """Every job cron pushed (journaled `enqueue`/`zadd` ops carrying `custom._cron`), in order."""
        jobs = []
        for record in self.records:
            for op in record:
                found = [json.loads(raw) for raw in op["raws"]] if op["op"] == "enqueue" else (
                    [op["job"]] if op["op"] == "zadd" else [])
                jobs += [job for job in found if "_cron" in job.get("custom", {})]
        return jobs


def job_of(entry: CronEntry) -> dict[str, Any]:
    return json.loads(entry.job)
