"""The INFO document: the union of the fields every client reads (faktory-clients.md §6).

Rust decodes it into typed structs (so every key and integer type matters), FWG needs
`tasks.Workers`, Ruby and Node read `tasks.*.size` right after a change, so every count
here is computed from live state at the moment of the request.
"""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING, Any

from . import FAKTORY_VERSION
from .timefmt import format_time, utc_clock
from .wire import go_float

if TYPE_CHECKING:
    from .commands import Dispatcher


def _used_memory_mb() -> int:
    """Peak resident memory of the process in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def build_info(dispatcher: Dispatcher, now: float) -> dict[str, Any]:
    manager, store = dispatcher.manager, dispatcher.manager.store
    sizes = manager.set_sizes()
    queues = {name: len(jobs) for name, jobs in sorted(store.queues.items())}
    tasks: dict[str, Any] = {
        "Busy": {"reaped": manager.reaped_reservations, "size": sizes["working"]},
        "Workers": {"reaped": dispatcher.workers.reaped, "size": len(dispatcher.workers)},
    }
    for task, set_name in (("Dead", "dead"), ("Retries", "retries"), ("Scheduled", "scheduled")):
        stats = manager.tasks[task]
        tasks[task] = {"cycles": stats.cycles, "enqueued": stats.enqueued,
                       "size": sizes[set_name], "wall_time_sec": go_float(stats.wall_time)}
    stats = dispatcher.stats
    extra: dict[str, Any] = {}
    for extension in manager.extensions:
        extra.update(extension.info_fields())
    return {
        "now": format_time(now),
        "server_utc_time": utc_clock(now),
        "faktory": {
            "queues": queues,
            "sets": {"dead": sizes["dead"], "retries": sizes["retries"],
                     "scheduled": sizes["scheduled"], "working": sizes["working"]},
            "tasks": dict(sorted(tasks.items())),
            "total_failures": store.failures,
            "total_processed": store.processed,
            "total_enqueued": sum(queues.values()),
            "total_queues": len(queues),
            **extra,
        },
        "server": {
            "description": dispatcher.description,
            "faktory_version": FAKTORY_VERSION,
            # Rust's conformance test wants uptime > 0 straight after start: round up.
            "uptime": max(1, int(now - stats.started_at)),
            "connections": stats.connections,
            "command_count": stats.command_count,
            "used_memory_mb": _used_memory_mb(),
            # ours, not Faktory's (spec.md §3 INFO): tests wait on it instead of sleeping
            "fetches_waiting": dispatcher.waiters.statistics().fetches_waiting,
        },
    }
