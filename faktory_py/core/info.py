"""The INFO document: the union of the fields every client reads (protocol/clients.md §6).

Rust decodes it into typed structs (so every key and integer type matters), FWG needs
`tasks.Workers`, Ruby and Node read `tasks.*.size` right after a change, so every count
here is computed from live state at the moment of the request.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any

from .. import FAKTORY_VERSION
from ..util.jsoncodec import go_float
from ..util.timefmt import format_time, utc_clock
from .lifecycle import Manager
from .workers import WorkerRegistry


@dataclass
class ServerStats:
    """Numbers INFO reports about the server process itself."""

    started_at: float
    connections: int = 0
    command_count: int = 0


def _used_memory_mb() -> int:
    """Peak resident memory of the process in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def build_info(manager: Manager, workers: WorkerRegistry, stats: ServerStats, description: str,
               fetches_waiting: int, now: float) -> dict[str, Any]:
    state = manager.store.statistics()
    queues = dict(sorted(state.queues.items()))
    tasks: dict[str, Any] = {
        "Busy": {"reaped": manager.reaped_reservations, "size": state.working},
        "Workers": {"reaped": workers.reaped, "size": len(workers)},
    }
    for task, size in (("Dead", state.dead), ("Retries", state.retries), ("Scheduled", state.scheduled)):
        counts = manager.tasks[task]
        tasks[task] = {"cycles": counts.cycles, "enqueued": counts.enqueued,
                       "size": size, "wall_time_sec": go_float(counts.wall_time)}
    extra: dict[str, Any] = {}
    for info in manager.features.info:
        extra.update(info.info_fields())
    return {
        "now": format_time(now),
        "server_utc_time": utc_clock(now),
        "faktory": {
            "queues": queues,
            "sets": {"dead": state.dead, "retries": state.retries,
                     "scheduled": state.scheduled, "working": state.working},
            "tasks": dict(sorted(tasks.items())),
            "total_failures": state.failures,
            "total_processed": state.processed,
            "total_enqueued": sum(queues.values()),
            "total_queues": len(queues),
            **extra,
        },
        "server": {
            "description": description,
            "faktory_version": FAKTORY_VERSION,
            # Rust's conformance test wants uptime > 0 straight after start: round up.
            "uptime": max(1, int(now - stats.started_at)),
            "connections": stats.connections,
            "command_count": stats.command_count,
            "used_memory_mb": _used_memory_mb(),
            # ours, not Faktory's (spec.md §3 INFO): tests wait on it instead of sleeping
            "fetches_waiting": fetches_waiting,
        },
    }
