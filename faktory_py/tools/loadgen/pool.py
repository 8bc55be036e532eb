"""Runs roles in several load-generator processes, one thread per connection.

Every process connects (and identifies) all its connections first and reports ready; the
parent then starts them all at once and times the run from that moment to the last finite
thread's end (CLOCK_MONOTONIC is the same clock in every process). Each thread counts its
progress in its own slot of a shared array, which the parent reads for the progress line.

Every run is bounded: past `timeout` the parent sets the stop flag, each process shuts its
sockets down (which wakes any thread blocked in a read), and a process that still has not
reported a few seconds later is terminated.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..client import Address
from .conn import BenchError, Conn
from .roles import ROLES, Ctx, jid_prefix


@dataclass
class Task:
    """One load-generator process: `threads` threads running `role`, each with
    `conns_per_thread` connections and its own quota (None: run until stopped)."""

    role: str
    quotas: list[int | None]
    params: dict[str, Any] = field(default_factory=dict)
    conns_per_thread: int = 1
    worker: bool = False  # identify with a wid (needed for FETCH and BEAT)

    @property
    def background(self) -> bool:
        return self.quotas[0] is None


@dataclass
class Outcome:
    seconds: float  # start to the end of the last finite thread
    results: list[list[dict[str, Any]]]  # per task, per thread
    timed_out: bool
    generator_cpu: float = 0.0  # CPU seconds the load-generator processes used (whole run)
    server_cpu: float | None = None  # CPU seconds of `cpu_pids` from start to the end of the run

    def cores(self) -> dict[str, float | None]:
        """CPU use as cores busy during the timed part: is the generator the bottleneck?"""
        if self.seconds <= 0:
            return {}
        return {"generator_cores": self.generator_cpu / self.seconds,
                "server_cores": None if self.server_cpu is None else self.server_cpu / self.seconds}

    def merged(self, index: int) -> dict[str, Any]:
        """Task `index`'s thread results added up (lists are concatenated)."""
        return merge(self.results[index])


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for result in results:
        for key, value in result.items():
            if key == "ended":
                continue
            if isinstance(value, list):
                out.setdefault(key, []).extend(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = out.get(key, 0) + value
            else:
                out.setdefault(key, value)
    return out


def cpu_seconds(pids: list[int]) -> float | None:
    """utime + stime of the processes (Linux /proc), None if any cannot be read."""
    total = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` near-equal non-negative integers."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def raise_fd_limit() -> None:
    """Thousands of idle connections need thousands of file descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
        except (ValueError, OSError):
            pass


def _context() -> Any:
    # fork starts in milliseconds and needs nothing importable; elsewhere use the default.
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _process_main(target: Address, task: Task, index: int, first_slot: int, counters: Any,
                  ready: Any, start: Any, stop: Any, results: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    raise_fd_limit()
    groups: list[list[Conn]] = []
    try:
        prefix = jid_prefix()
        for t in range(len(task.quotas)):
            group = []
            for c in range(task.conns_per_thread):
                wid = f"bench-{prefix}-{t}-{c}" if task.worker else None
                group.append(Conn(target, wid))
            groups.append(group)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which gives up
        for group in groups:
            for conn in group:
                conn.close()
        ready.put((index, f"{type(exc).__name__}: {exc}"))
        return
    ready.put((index, None))
    start.wait()
    local_stop = threading.Event()
    out: list[dict[str, Any]] = [{} for _ in groups]
    role = ROLES[task.role]

    def run(t: int) -> None:
        ctx = Ctx(counters, first_slot + t, local_stop)
        try:
            result = role(groups[t], task.quotas[t], task.params, ctx)
        except Exception as exc:  # noqa: BLE001
            result = {"failure": "stopped" if local_stop.is_set() else
                      "".join(traceback.format_exception_only(type(exc), exc)).strip()}
        result["ended"] = time.monotonic()
        out[t] = result

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(len(groups))]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if stop.wait(0.05):
            local_stop.set()
            for group in groups:
                for conn in group:
                    conn.shutdown()
            break
    for thread in threads:
        thread.join(10)
    for group in groups:
        for conn in group:
            conn.close()
    results.put((index, out))


def run(target: Address, tasks: list[Task], *, timeout: float,
        on_progress: Callable[[list[int], float], None] | None = None,
        settle: Callable[[list[int]], bool] | None = None, settle_timeout: float = 5.0,
        connect_timeout: float = 120.0, cpu_pids: list[int] | None = None) -> Outcome:
    """Run `tasks` to completion (or `timeout`); see the module docstring.

    When every finite task is done, background tasks keep going until `settle(per-task
    progress counts)` is true or `settle_timeout` passes, then they are stopped too.
    """
    mp = _context()
    slots: list[int] = []
    total_slots = 0
    for task in tasks:
        slots.append(total_slots)
        total_slots += len(task.quotas)
    counters = mp.Array("q", total_slots, lock=False)
    ready, results = mp.Queue(), mp.Queue()
    start, stop = mp.Event(), mp.Event()
    procs = [mp.Process(target=_process_main, daemon=True,
                        args=(target, task, i, slots[i], counters, ready, start, stop, results))
             for i, task in enumerate(tasks)]

    def per_task() -> list[int]:
        return [sum(counters[slots[i] : slots[i] + len(task.quotas)]) for i, task in enumerate(tasks)]

    children_cpu = _children_cpu()
    server_cpu: float | None = None
    try:
        for proc in procs:
            proc.start()
        failures = []
        deadline = time.monotonic() + connect_timeout
        waiting = len(tasks)
        while waiting and not failures:
            try:
                _, failure = ready.get(timeout=0.2)
            except queue_mod.Empty:
                if time.monotonic() > deadline:
                    failures.append("load generator processes did not connect in time")
                elif any(proc.exitcode not in (None, 0) for proc in procs):
                    failures.append("a load generator process died while connecting")
                continue
            waiting -= 1
            if failure:
                failures.append(failure)
        if failures:
            raise BenchError("cannot connect: " + "; ".join(sorted(set(failures))))
        server_cpu = cpu_seconds(cpu_pids) if cpu_pids else None
        t0 = time.monotonic()
        start.set()
        collected: dict[int, list[dict[str, Any]]] = {}
        finite = {i for i, task in enumerate(tasks) if not task.background}
        timed_out = False
        settle_until: float | None = None
        end_by = t0 + timeout
        while len(collected) < len(tasks):
            try:
                index, out = results.get(timeout=0.1)
                collected[index] = out
            except queue_mod.Empty:
                pass
            now = time.monotonic()
            if on_progress is not None:
                on_progress(per_task(), now - t0)
            if stop.is_set():
                if now > end_by + 15:  # stopped but not reporting: give up on it
                    break
                continue
            if now > end_by:
                timed_out = True
                stop.set()
            elif finite <= collected.keys():
                if settle_until is None:
                    settle_until = now + settle_timeout
                if now > settle_until or settle is None or settle(per_task()):
                    stop.set()
                    end_by = now
        if server_cpu is not None:
            after = cpu_seconds(cpu_pids or [])
            server_cpu = None if after is None else after - server_cpu
        if on_progress is not None:
            on_progress(per_task(), time.monotonic() - t0)
        for i in range(len(tasks)):
            if i not in collected:
                collected[i] = [{"failure": "no report from the load generator process"}]
                timed_out = True
        ends = [r["ended"] for i in finite for r in collected[i] if "ended" in r]
        seconds = (max(ends) if ends else time.monotonic()) - t0
        for out in collected.values():
            for r in out:
                if r.get("failure") == "stopped" and timed_out:
                    r["failure"] = "timed out"
        outcome = Outcome(seconds, [collected[i] for i in range(len(tasks))], timed_out, server_cpu=server_cpu)
    finally:
        stop.set()
        start.set()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for q in (ready, results):
            q.close()
            q.join_thread()
    outcome.generator_cpu = _children_cpu() - children_cpu
    return outcome


def processes_for(connections: int, procs: int) -> list[int]:
    """How many of `connections` each of at most `procs` processes gets (none empty)."""
    return [n for n in split(connections, max(1, min(procs, connections))) if n]

