"""The benchmark workloads, each driving one running server through its URL.

(a) `a_load`     Faktory's load-test shape: 5 queues, half the connections push, half fetch
                 and ACK (1% FAIL), until every job has been pushed and fetched.
(b) `b_push`     PUSH only, pipelined.
(c) `c_pushb`    PUSHB bulk ingest, `batch` (1,000) jobs per call.
(d) `d_drain`    FETCH + ACK of a queue filled beforehand (the filling is not timed).
(e) `e_latency`  push -> fetch latency: fetchers wait in FETCH, one producer pushes at a
                 steady rate; p50/p99/p99.9 of (fetched at - pushed at).
(f) `f_idle`     (a) again while `idle_conns` worker connections BEAT every `idle_beat` s.
(g) `g_memory`   resident memory per queued job at each of `memory_jobs` (needs the server's
                 pids, which only a local server has; for Faktory, its Redis's pid too).

Restart time and the echo-server ceiling need servers the harness starts itself: they are
in the repository's `bench/` package. Every workload uses its own `bench-*` queues and
removes them afterwards (QUEUE REMOVE), so a server is left as it was found, except for the
1% of (a)'s jobs that were FAILed, which sit in the retry set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..client import Address
from . import pool
from .conn import BenchError, Conn, ReplyError
from .pool import Outcome, Task, split
from .progress import Progress
from .stats import latency_summary

LOAD_QUEUES = [f"bench-load-{i}" for i in range(5)]
WORKLOADS = ("a_load", "b_push", "c_pushb", "d_drain", "e_latency", "f_idle", "g_memory")


@dataclass(frozen=True)
class Sizes:
    """How big each workload is. The defaults are the full run."""

    procs: int = 2  # load-generator processes per side of a workload
    depth: int = 100  # commands per pipelined write
    load_jobs: int = 100_000
    load_conns: int = 10  # Faktory's load test default: 10 threads
    tool_threads: tuple[int, ...] = (10, 50, 200)  # R1: Faktory's load tool at each thread count
    fail: float = 0.01
    push_jobs: int = 100_000
    ceiling_jobs: int = 100_000  # (b) without pipelining, against the echo server and each server
    push_conns: int = 8
    pushb_jobs: int = 200_000
    pushb_conns: int = 4
    batch: int = 1000
    drain_jobs: int = 100_000
    drain_conns: int = 8
    latency_jobs: int = 10_000
    latency_rate: float = 1000.0
    latency_fetchers: int = 8
    idle_conns: int = 2000
    idle_beat: float = 15.0
    idle_per_proc: int = 1000
    idle_load_jobs: int = 50_000
    memory_jobs: tuple[int, ...] = (100_000, 1_000_000)  # the largest is also the restart size
    timeout: float = 600.0  # per workload run
    # R2/R3 (bench/clients/fleet): faktory_worker_go processes x their concurrency, no-op jobs
    fleet_workers: int = 4
    fleet_concurrency: int = 25
    fleet_drain_jobs: int = 200_000  # R2 (i): long enough to outlast FWG's 2 s start-up spread
    fleet_jobs: int = 100_000  # R2 (ii): pushed while the fleet runs them
    # R2 (ii): Go-client connections pushing, each waiting for every reply; as many as R1's fewest
    # threads, so the server rather than the producers' round trips sets the pace
    fleet_producers: int = 10
    fleet_latency_jobs: int = 10_000  # R3
    fleet_rate: float = 1000.0  # R3: jobs pushed per second

    @property
    def load_fetchers(self) -> int:
        """(a)'s FETCH + ACK connections: the half of `load_conns` that does not push."""
        return max(1, self.load_conns - max(1, self.load_conns // 2))

    def scaled(self, jobs: int) -> Sizes:
        """Every throughput job count set from `jobs` (memory and restart untouched)."""
        return replace(self, load_jobs=jobs, push_jobs=jobs, ceiling_jobs=jobs, pushb_jobs=2 * jobs,
                       drain_jobs=jobs, idle_load_jobs=max(1, jobs // 2), fleet_drain_jobs=2 * jobs,
                       fleet_jobs=jobs)


PRESETS: dict[str, Sizes] = {
    "full": Sizes(),
    "small": Sizes(load_jobs=20_000, push_jobs=20_000, ceiling_jobs=20_000, pushb_jobs=40_000, drain_jobs=20_000,
                   latency_jobs=5_000, idle_load_jobs=20_000, memory_jobs=(100_000,),
                   fleet_drain_jobs=50_000, fleet_jobs=20_000, fleet_latency_jobs=5_000, timeout=300.0),
    "smoke": Sizes(procs=2, depth=50, load_jobs=1_000, load_conns=4, tool_threads=(2, 8), push_jobs=1_000, ceiling_jobs=1_000, push_conns=2,
                   pushb_jobs=4_000, pushb_conns=2, drain_jobs=1_000, drain_conns=2,
                   latency_jobs=100, latency_rate=500.0, latency_fetchers=2, idle_conns=50,
                   idle_beat=0.5, idle_load_jobs=500, memory_jobs=(2_000, 5_000), fleet_workers=2,
                   fleet_concurrency=5, fleet_drain_jobs=1_000, fleet_jobs=1_000, fleet_producers=2,
                   fleet_latency_jobs=200, fleet_rate=500.0, timeout=60.0),
}


def rss_kb(pids: list[int]) -> int:
    """Resident set size of the processes together (VmRSS from /proc), in KiB."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def _group(role: str, quotas: list[int | None], procs: int, params: dict[str, Any],
           worker: bool = False) -> list[Task]:
    """Spread one thread per quota over at most `procs` processes."""
    tasks, at = [], 0
    for n in pool.processes_for(len(quotas), procs):
        tasks.append(Task(role, quotas[at : at + n], params, worker=worker))
        at += n
    return tasks


@dataclass
class Bench:
    """Runs workloads against `target`; `progress` shows a live line on a terminal."""

    target: Address
    sizes: Sizes = field(default_factory=Sizes)
    progress: bool | None = None  # None: when stderr is a terminal
    log: Callable[[str], None] = lambda text: None
    pids: list[int] = field(default_factory=list)  # the server's processes, if local: CPU use, memory

    # --- plumbing ---------------------------------------------------------------

    def _run(self, label: str, tasks: list[Task], counted: list[int], total: int, **kw: Any) -> Outcome:
        bar = Progress(label, total, enabled=self.progress)

        def show(per_task: list[int], elapsed: float) -> None:
            bar.update(sum(per_task[i] for i in counted), elapsed)

        try:
            return pool.run(self.target, tasks, timeout=self.sizes.timeout, on_progress=show,
                            cpu_pids=self.pids or None, **kw)
        finally:
            bar.close()

    def control(self) -> Conn:
        return Conn(self.target)

    def _remove(self, *queues: str) -> None:
        with_conn = self.control()
        try:
            with_conn.command(("QUEUE REMOVE " + " ".join(queues)).encode())
        except (ReplyError, OSError):
            pass
        finally:
            with_conn.close()

    def queue_size(self, queue: str) -> int:
        conn = self.control()
        try:
            return int(conn.info()["faktory"]["queues"].get(queue, 0))
        finally:
            conn.close()

    def fill(self, queue: str, jobs: int) -> float:
        """PUSHB `jobs` jobs into `queue`; returns the seconds it took."""
        if jobs <= 0:
            return 0.0
        s = self.sizes
        conns = max(1, min(s.pushb_conns, -(-jobs // s.batch)))
        tasks = _group("pushb", list(split(jobs, conns)), s.procs, {"batch": s.batch, "queue": queue})
        outcome = self._run(f"filling {queue}", tasks, list(range(len(tasks))), jobs)
        _check(outcome, "filling " + queue)
        return outcome.seconds

    @staticmethod
    def _throughput(jobs: int, outcome: Outcome, merged: dict[str, Any]) -> dict[str, Any]:
        seconds = outcome.seconds
        result = {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds if seconds > 0 else None}
        result.update({k: v for k, v in merged.items() if k in ("errors", "nulls", "failed")})
        result.update(outcome.cores())
        result["failures"] = _failures(outcome)
        return result

    # --- workloads --------------------------------------------------------------

    def _load_tasks(self, jobs: int) -> tuple[list[Task], list[Task]]:
        s = self.sizes
        pushers = max(1, s.load_conns // 2)
        fetchers = s.load_fetchers
        push_procs = max(1, s.procs // 2)
        fetch_procs = max(1, s.procs - push_procs)
        push = _group("push", list(split(jobs, pushers)), push_procs,
                      {"depth": s.depth, "queues": LOAD_QUEUES})
        fetch = _group("fetch_ack", list(split(jobs, fetchers)), fetch_procs,
                       {"depth": s.depth, "queues": LOAD_QUEUES, "fail": s.fail}, worker=True)
        return push, fetch

    def _load_result(self, jobs: int, outcome: Outcome, push: int, fetch: int) -> dict[str, Any]:
        pushed = pool.merge([r for i in range(push) for r in outcome.results[i]])
        fetched = pool.merge([r for i in range(push, push + fetch) for r in outcome.results[i]])
        result = self._throughput(jobs, outcome, {})
        result.update(pushed=pushed.get("jobs", 0), fetched=fetched.get("jobs", 0),
                      failed=fetched.get("failed", 0), nulls=fetched.get("nulls", 0),
                      errors=pushed.get("errors", 0) + fetched.get("errors", 0))
        ops = result["pushed"] + 2 * result["fetched"]  # PUSH, FETCH, ACK/FAIL
        result["ops_per_s"] = ops / outcome.seconds if outcome.seconds > 0 else None
        return result

    def a_load(self) -> dict[str, Any]:
        jobs = self.sizes.load_jobs
        push, fetch = self._load_tasks(jobs)
        tasks = push + fetch
        outcome = self._run("a_load", tasks, list(range(len(tasks))), 2 * jobs)
        self._remove(*LOAD_QUEUES)
        return self._load_result(jobs, outcome, len(push), len(fetch))

    def b_push(self) -> dict[str, Any]:
        s = self.sizes
        tasks = _group("push", list(split(s.push_jobs, s.push_conns)), s.procs,
                       {"depth": s.depth, "queues": ["bench-push"]})
        outcome = self._run("b_push", tasks, list(range(len(tasks))), s.push_jobs)
        self._remove("bench-push")
        return self._throughput(s.push_jobs, outcome, pool.merge([r for t in outcome.results for r in t]))

    def c_pushb(self) -> dict[str, Any]:
        s = self.sizes
        conns = max(1, min(s.pushb_conns, -(-s.pushb_jobs // s.batch)))
        tasks = _group("pushb", list(split(s.pushb_jobs, conns)), s.procs,
                       {"batch": s.batch, "queue": "bench-pushb"})
        outcome = self._run("c_pushb", tasks, list(range(len(tasks))), s.pushb_jobs)
        self._remove("bench-pushb")
        result = self._throughput(s.pushb_jobs, outcome, pool.merge([r for t in outcome.results for r in t]))
        result["batch"] = s.batch
        return result

    def d_drain(self) -> dict[str, Any]:
        s = self.sizes
        self._remove("bench-drain")
        fill_seconds = self.fill("bench-drain", s.drain_jobs)
        tasks = _group("fetch_ack", list(split(s.drain_jobs, s.drain_conns)), s.procs,
                       {"depth": s.depth, "queues": ["bench-drain"]}, worker=True)
        outcome = self._run("d_drain", tasks, list(range(len(tasks))), s.drain_jobs)
        left = self.queue_size("bench-drain")
        self._remove("bench-drain")
        result = self._throughput(s.drain_jobs, outcome, pool.merge([r for t in outcome.results for r in t]))
        result.update(fill_seconds=fill_seconds, left_in_queue=left)
        return result

    def e_latency(self) -> dict[str, Any]:
        s = self.sizes
        queue = "bench-latency"
        fetchers = _group("latency_fetch", [None] * s.latency_fetchers, s.procs, {"queue": queue}, worker=True)
        pusher = Task("latency_push", [s.latency_jobs], {"rate": s.latency_rate, "queue": queue, "delay": 0.3})
        tasks = [pusher, *fetchers]

        def all_fetched(per_task: list[int]) -> bool:
            return sum(per_task[1:]) >= per_task[0]

        outcome = self._run("e_latency", tasks, [0], s.latency_jobs, settle=all_fetched, settle_timeout=5.0)
        self._remove(queue)
        pushed = outcome.merged(0)
        fetched = pool.merge([r for t in outcome.results[1:] for r in t])
        result = latency_summary(fetched.get("latencies_ms", []))
        result.update(pushed=pushed.get("jobs", 0), rate=s.latency_rate, fetchers=s.latency_fetchers,
                      missing=pushed.get("jobs", 0) - result["samples"],
                      errors=pushed.get("errors", 0) + fetched.get("errors", 0),
                      failures=_failures(outcome, [0]), **outcome.cores())
        return result

    def f_idle(self) -> dict[str, Any]:
        s = self.sizes
        jobs = s.idle_load_jobs
        idle = [Task("idle", [None], {"beat": s.idle_beat}, conns_per_thread=n, worker=True)
                for n in split(s.idle_conns, max(1, -(-s.idle_conns // s.idle_per_proc))) if n]
        push, fetch = self._load_tasks(jobs)
        tasks = push + fetch + idle
        load = list(range(len(push) + len(fetch)))
        outcome = self._run("f_idle", tasks, load, 2 * jobs)
        self._remove(*LOAD_QUEUES)
        result = self._load_result(jobs, outcome, len(push), len(fetch))
        beats = pool.merge([r for t in outcome.results[len(load):] for r in t])
        rounds = latency_summary(beats.get("beat_round_ms", []))
        result.update(idle_connections=beats.get("connections", 0), beats=beats.get("beats", 0),
                      beat_errors=beats.get("errors", 0), beat_round_p99_ms=rounds["p99_ms"],
                      idle_failures=[r["failure"] for t in outcome.results[len(load):] for r in t
                                     if "failure" in r and r["failure"] != "stopped"])
        return result

    def g_memory(self, keep: bool = False, settle: float = 1.0) -> dict[str, Any]:
        """RSS per queued job at each size in `sizes.memory_jobs` (of the processes in `pids`)."""
        pids = self.pids
        if not pids:
            raise ValueError("g_memory needs the server's process ids")
        queue = "bench-memory"
        self._remove(queue)
        time.sleep(settle)
        empty = rss_kb(pids)
        result: dict[str, Any] = {"rss_kb_empty": empty, "pids": len(pids)}
        filled = 0
        for size in sorted(self.sizes.memory_jobs):
            self.fill(queue, size - filled)
            filled = size
            queued = self.queue_size(queue)
            time.sleep(settle)
            rss = rss_kb(pids)
            result[f"rss_kb_{size}"] = rss
            result[f"bytes_per_job_{size}"] = (rss - empty) * 1024 / size
            result[f"queued_{size}"] = queued
        if not keep:
            self._remove(queue)
        return result

    # --- all of them --------------------------------------------------------------

    def run(self, names: list[str]) -> dict[str, dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {}
        for name in names:
            if name == "g_memory" and not self.pids:
                self.log("g_memory: skipped (needs --pid: the server's process ids)")
                continue
            started = time.monotonic()
            try:
                results[name] = getattr(self, name)()
            except (BenchError, RuntimeError) as exc:  # e.g. too many connections for (f): go on
                results[name] = {"failures": [str(exc)]}
            self.log(f"{name}: {summary(name, results[name])}  ({time.monotonic() - started:.1f}s)")
        return results


def _failures(outcome: Outcome, tasks: list[int] | None = None) -> list[str]:
    indices = range(len(outcome.results)) if tasks is None else tasks
    return [r["failure"] for i in indices for r in outcome.results[i]
            if "failure" in r and r["failure"] != "stopped"]


def _check(outcome: Outcome, what: str) -> None:
    failures = _failures(outcome)
    if failures or outcome.timed_out:
        raise RuntimeError(f"{what} failed: {'; '.join(failures) or 'timed out'}")


def summary(name: str, result: dict[str, Any]) -> str:
    """One line for a workload's result."""
    def num(key: str, fmt: str = ",.0f") -> str:
        value = result.get(key)
        return "-" if value is None else format(value, fmt)

    bad = result.get("failures") or result.get("idle_failures")
    tail = f"  FAILURES: {'; '.join(bad)}" if bad else ""
    if name == "e_latency":
        return (f"p50 {num('p50_ms', '.2f')} ms  p99 {num('p99_ms', '.2f')} ms  p99.9 {num('p999_ms', '.2f')} ms"
                f"  ({num('samples')} samples, {num('missing')} missing){tail}")
    if name == "g_memory":
        sizes = sorted(int(k.rsplit("_", 1)[1]) for k in result if k.startswith("bytes_per_job_"))
        return "  ".join(f"{size:,} jobs: {result[f'bytes_per_job_{size}']:,.0f} B/job" for size in sizes)
    line = f"{num('jobs_per_s')} jobs/s  ({num('jobs')} jobs in {num('seconds', '.2f')} s)"
    if name == "f_idle":
        line += f"  idle {num('idle_connections')}, {num('beats')} beats, {num('beat_errors')} errors"
    return line + tail


def save_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=_default) + "\n")


def _default(value: Any) -> Any:
    if isinstance(value, Sizes):
        return asdict(value)
    raise TypeError(f"not JSON: {value!r}")
