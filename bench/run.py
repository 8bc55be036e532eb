"""`python -m bench`: faktory_py against the real Faktory, every workload, several repetitions.

Each repetition runs each workload on each server back to back, a fresh server (new port,
new data directory) every time, in an order that rotates between repetitions, so the
ratios compare numbers taken minutes apart rather than a whole run apart. Memory (g) and
restart (h) share one server lifetime: fill, measure, restart, time the first FETCH.
Results are saved after every repetition, so an interrupted run still leaves its numbers.
(j) is (a) against a faktory_py with one of (a)'s queues throttled (`THROTTLED`); OSS Faktory
has no throttles, so the report sets it beside Faktory's (a), which runs unthrottled.
R1 (`LOAD_TOOL`) runs first in every repetition: Faktory's own load tool, a real Go client that
waits for every reply, at each of `Sizes.tool_threads`; each thread count is recorded as a
workload of its own (`r1_t10`, ...) with its jobs/s and R4, the server's CPU per 1,000 jobs.
R2 and R3 (`FLEET`) follow: faktory_worker_go processes (bench/clients/fleet, bench/fleet.py)
draining a filled queue, running what a Go producer pushes, and push → start latency.
`faktory_py-redis` (issue 16) is faktory_py with its op log in a Redis the harness starts; it
runs R1/R4 and R3. `faktory_py-io1` and `faktory_py-io2` (issue 15) are faktory_py with one and
two connection processes (`--io-processes`); they run R1/R4 (smoke: `faktory_py-io2` only).
R1 and R2 run once more against faktory_py (everysec) and Faktory with the load generator
pinned to one CPU (`PINNED`, report.placed), the servers still free on every CPU: left free on
two cores, the load generator's threads also run on the CPU a server is on, and preempt it
(bench/README.md, "Placement").
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from faktory_py.tools.loadgen.pool import raise_fd_limit
from faktory_py.tools.loadgen.workloads import LOAD_QUEUES, PRESETS, Bench, Sizes, save_json, summary

from . import fleet, loadtool, report
from .machine import busy_cpu_seconds, describe, load_average, load_cpu, own_cpu_seconds
from .servers import FAKTORY_VERSION, Echo, FaktoryPy, FaktoryPyRedis, RealFaktory, Server, find_faktory

HERE = Path(__file__).resolve().parent
THROUGHPUT = ("a_load", "b_push", "c_pushb", "d_drain", "e_latency", "f_idle")
THROTTLED = "j_throttled"
LOAD_TOOL = "r1_load_tool"
FLEET = tuple(fleet.MODES)  # R2 (i) and (ii), R3
ALL = (LOAD_TOOL, *FLEET, *THROUGHPUT, "g_memory", "h_restart", "i_ceiling", THROTTLED)
#: the workloads that run again with the load generator pinned to one CPU (faktory_py and Faktory)
PINNED = (LOAD_TOOL, "r2_drain", "r2_produce")


def throttle_toml(sizes: Sizes) -> tuple[str, int, str]:
    """(j)'s throttle: (queue, concurrency, conf.d TOML). The first of (a)'s five queues gets
    `concurrency` = the most jobs (a)'s fetchers can hold at once (each pipelines `depth`
    FETCHes before it ACKs their jobs). A lower limit would bind, and then a fetcher whose own
    unacknowledged jobs hold the slots would wait out its pipelined FETCHes' 2 s timeouts: the
    load generator's pipelining, not the server, would set the pace. So (j) measures what a
    throttle costs FETCH and ACK (the gate on every FETCH, the slot index on every reservation
    and its end), with a limit that stays in force."""
    queue, concurrency = LOAD_QUEUES[0], sizes.load_fetchers * sizes.depth
    return queue, concurrency, f'[throttles]\n"{queue}" = {{ concurrency = {concurrency}, timeout = 60 }}\n'


@dataclass
class Variant:
    name: str
    make: Callable[[Path], Server]
    workloads: tuple[str, ...]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(PRESETS), default="full", help="workload sizes (default full)")
    p.add_argument("--smoke", action="store_const", const="smoke", dest="size",
                   help="tiny sizes, 1 repetition; Faktory only if FAKTORY_BIN is set; R1 and R2/R3 only when "
                   "Faktory's load tool and the fleet program are already built")
    p.add_argument("--reps", type=int, help="repetitions (default 5; smoke 1)")
    p.add_argument("--heavy-reps", type=int, help="repetitions of memory+restart (default 3; smoke 1)")
    p.add_argument("--jobs", type=int, help="jobs per throughput workload (overrides --size)")
    p.add_argument("--memory-jobs", help="comma-separated queue sizes for (g); the largest is (h)'s")
    p.add_argument("--workloads", default=",".join(ALL),
                   help="comma-separated, by name or letter (default all: r1, r2, r3, a..j)")
    p.add_argument("--servers", help="comma-separated of faktory_py, faktory_py-always, faktory_py-notimings, "
                   "faktory_py-redis, faktory_py-io1, faktory_py-io2, faktory, echo "
                   "(default all that can run; smoke: the same but faktory_py-io1, faktory only when FAKTORY_BIN is "
                   "set, and faktory_py-always in R1 only)")
    p.add_argument("--no-load-tool", action="store_true", help="skip Faktory's own load test (R1, R4)")
    p.add_argument("--no-pinned", action="store_true",
                   help="skip R1 and R2 with the load generator pinned to one CPU (run by default on 2+ CPUs)")
    p.add_argument("--load-threads", help="comma-separated thread counts for R1 (default 10,50,200; smoke 2,8)")
    p.add_argument("--out", type=Path, default=HERE, help="where results.json, RESULTS.md, results.png go "
                   "(default bench/)")
    p.add_argument("--workdir", type=Path, help="parent of the servers' data directories (default a temp dir)")
    return p


def _names(text: str) -> list[str]:
    names = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        found = [w for w in ALL if w == part or w.split("_", 1)[0] == part]
        if not found:
            raise SystemExit(f"unknown workload {part!r}: choose from {', '.join(ALL)}")
        names += found
    return names


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        smoke = args.size == "smoke"
        self.args = args
        self.sizes = PRESETS[args.size]
        if args.jobs:
            self.sizes = self.sizes.scaled(args.jobs)
        if args.load_threads:
            self.sizes = replace(self.sizes, tool_threads=tuple(int(x) for x in args.load_threads.split(",")))
        if args.memory_jobs:
            self.sizes = replace(self.sizes, memory_jobs=tuple(int(x) for x in args.memory_jobs.split(",")))
        self.reps = args.reps or (1 if smoke else 5)
        self.heavy_reps = min(self.reps, args.heavy_reps or (1 if smoke else 3))
        self.workloads = [w for w in _names(args.workloads) if not (args.no_load_tool and w == LOAD_TOOL)]
        self.faktory_bin, why = find_faktory()
        if smoke and not os.environ.get("FAKTORY_BIN"):
            self.faktory_bin, why = None, "smoke run without FAKTORY_BIN"
        wanted = args.servers.split(",") if args.servers else (
            ["faktory_py", "faktory", "faktory_py-always", "faktory_py-notimings", "faktory_py-redis", "faktory_py-io2",
             "echo"] if smoke
            else ["faktory_py", "faktory", "faktory_py-always", "faktory_py-notimings", "faktory_py-redis",
                  *report.IO_PROCESSES, "echo"])
        self.errors: list[str] = []
        self.skipped: list[str] = []
        self.variants: list[Variant] = []
        faktory_name = f"faktory-{FAKTORY_VERSION}"
        for name in wanted:
            if name == "faktory_py":
                self.variants.append(Variant("faktory_py", lambda b: FaktoryPy(b, "everysec"), ALL))
            elif name == "faktory_py-always":  # smoke: R1 only, for issue 15's always/everysec ratio
                self.variants.append(Variant("faktory_py-always", lambda b: FaktoryPy(b, "always"),
                                             (LOAD_TOOL,) if smoke else (LOAD_TOOL, *THROUGHPUT)))
            elif name == "faktory_py-notimings":  # what the command timings cost: R1/R4 and (b)
                self.variants.append(Variant("faktory_py-notimings", lambda b: FaktoryPy(b, timings=False),
                                             (LOAD_TOOL, "b_push")))
            elif name in report.IO_PROCESSES:  # issue 15: R1/R4 with connection processes
                count = report.IO_PROCESSES[name]
                self.variants.append(Variant(name, lambda b, n=count: FaktoryPy(b, io_processes=n), (LOAD_TOOL,)))
            elif name == "faktory_py-redis":  # issue 16: R1/R4 and R3 on the Redis op log
                if shutil.which("redis-server") is None:
                    self.skipped.append("faktory_py-redis: redis-server is not installed")
                    continue
                self.variants.append(Variant(report.REDIS, FaktoryPyRedis, (LOAD_TOOL, "r3_latency")))
            elif name == "faktory":
                if self.faktory_bin is None:
                    self.skipped.append(f"Faktory: {why}")
                    continue
                binary = self.faktory_bin
                self.variants.append(Variant(faktory_name, lambda b: RealFaktory(b, binary), ALL))
            elif name == "echo":
                self.variants.append(Variant("echo", Echo, ("i_ceiling",)))
            else:
                raise SystemExit(f"unknown server {name!r}")
        self.faktory_name = faktory_name if any(v.name == faktory_name for v in self.variants) else None
        #: where the pinned runs keep the load generator (None: no pinned runs)
        self.load_cpu = None if args.no_pinned else load_cpu()
        self.workdir = Path(tempfile.mkdtemp(prefix="faktory-bench-", dir=args.workdir))
        self.out: Path = args.out
        self.runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.tool_skipped: str | None = None
        self.fleet_binary: Path | None = None
        self.fleet_skipped: str | None = None
        self.counter = 0
        self.started = time.time()
        self.machine = describe(self.workdir, self.faktory_bin)
        self.cpu_at_start = (time.monotonic(), busy_cpu_seconds(), own_cpu_seconds())

    def log(self, text: str) -> None:
        print(text, flush=True)

    def record(self, workload: str, server: str, rep: int, result: dict[str, Any]) -> None:
        self.runs.setdefault(workload, {}).setdefault(server, []).append({"rep": rep, **result})

    def with_server(self, variant: Variant, work: Callable[[Server], dict[str, Any]]) -> dict[str, Any]:
        self.counter += 1
        server = variant.make(self.workdir / f"{self.counter:03d}-{variant.name}")
        try:
            server.start()
            return work(server)
        finally:
            server.shutdown()
            server.cleanup()

    def attempt(self, label: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return fn()
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
            text = f"{label}: {type(exc).__name__}: {exc}"
            self.errors.append(text.splitlines()[0][:500])
            self.log(f"  ERROR {text}")
            traceback.print_exc(file=sys.stderr)
            return {"error": str(exc)[:500]}

    def placements(self, order: list[Variant], workload: str) -> list[tuple[Variant, int | None]]:
        """Who runs `workload` in this repetition, and with the load generator on which CPU:
        every variant that runs it, free (None); then faktory_py and Faktory pinned (`PINNED`)."""
        runs: list[tuple[Variant, int | None]] = [(v, None) for v in order if workload in v.workloads]
        if self.load_cpu is not None and workload in PINNED:
            runs += [(v, self.load_cpu) for v, _ in runs if v.name in (report.OURS, self.faktory_name)]
        return runs

    def bench(self, server: Server, sizes: Sizes | None = None) -> Bench:
        return Bench(server.target, sizes or self.sizes, log=self.log, pids=server.pids())

    # --- one repetition ------------------------------------------------------------------

    def repetition(self, rep: int) -> None:
        shift = rep % len(self.variants)
        order = self.variants[shift:] + self.variants[:shift]
        tag = f"[{rep + 1}/{self.reps}]"
        if LOAD_TOOL in self.workloads:
            self.load_tool(rep, order, tag)
        if set(FLEET) & set(self.workloads):
            self.fleet(rep, order, tag)
        for workload in THROUGHPUT:
            if workload not in self.workloads:
                continue
            for variant in order:
                if workload in variant.workloads:
                    result = self.attempt(f"{tag} {workload} {variant.name}", lambda: self.with_server(
                        variant, lambda s: getattr(self.bench(s), workload)()))
                    self.record(workload, variant.name, rep, result)
                    self.log(f"{tag} {workload:9} {variant.name:17} {summary(workload, result)}")
        if THROTTLED in self.workloads:
            self.throttled(rep, tag)
        if "i_ceiling" in self.workloads:
            self.ceiling(rep, tag)
        if rep < self.heavy_reps and ({"g_memory", "h_restart"} & set(self.workloads)):
            for variant in order:
                if "g_memory" in variant.workloads:
                    self.memory_restart(variant, rep, tag)

    def throttled(self, rep: int, tag: str) -> None:
        """(j): (a) against faktory_py (fsync everysec) with `throttle_toml`'s throttle in its
        conf.d, checked in force (INFO) before the load starts."""
        if not any(v.name == report.OURS for v in self.variants):
            return
        queue, concurrency, toml = throttle_toml(self.sizes)
        variant = Variant(report.OURS, lambda b: FaktoryPy(b, "everysec", throttles=toml), (THROTTLED,))

        def work(server: Server) -> dict[str, Any]:
            bench = self.bench(server)
            conn = bench.control()
            try:
                throttles = conn.info()["faktory"].get("throttles", {})
            finally:
                conn.close()
            if throttles.get(queue, {}).get("concurrency") != concurrency:
                raise RuntimeError(f"the throttle on {queue} is not in force: {throttles}")
            return {**bench.a_load(), "throttled_queue": queue, "concurrency": concurrency}

        result = self.attempt(f"{tag} {THROTTLED} {variant.name}", lambda: self.with_server(variant, work))
        self.record(THROTTLED, variant.name, rep, result)
        self.log(f"{tag} {THROTTLED} {variant.name:17} {summary('a_load', result)} "
                 f"({queue} throttled to {concurrency})")

    def ceiling(self, rep: int, tag: str) -> None:
        """(i): PUSH one at a time (each connection waits for every reply, as real clients
        do) against the echo server and against each server, back to back."""
        echo = next((v for v in self.variants if v.name == "echo"), None)
        if echo is None:
            return
        sizes = replace(self.sizes, push_jobs=self.sizes.ceiling_jobs, depth=1)

        def push(variant: Variant) -> dict[str, Any]:
            result = self.attempt(f"{tag} i_ceiling {variant.name}",
                                  lambda: self.with_server(variant, lambda s: self.bench(s, sizes).b_push()))
            self.log(f"{tag} i_ceiling {variant.name:17} {summary('b_push', result)} (not pipelined)")
            return result

        ceiling = push(echo).get("jobs_per_s")
        for variant in self.variants:
            if variant.name == "echo" or "b_push" not in variant.workloads:
                continue
            result = push(variant)
            if ceiling and result.get("jobs_per_s"):
                self.record("i_ceiling", variant.name, rep, {
                    "jobs_per_s": result["jobs_per_s"], "echo_jobs_per_s": ceiling,
                    "fraction": result["jobs_per_s"] / ceiling})

    def memory_restart(self, variant: Variant, rep: int, tag: str) -> None:
        jobs = max(self.sizes.memory_jobs)

        def work(server: Server) -> dict[str, Any]:
            bench = self.bench(server)
            memory = self.attempt(f"{tag} g_memory {variant.name}", lambda: bench.g_memory(keep=True))
            self.record("g_memory", variant.name, rep, memory)
            self.log(f"{tag} g_memory  {variant.name:17} {summary('g_memory', memory)}")
            if "h_restart" not in self.workloads or "error" in memory:
                return {}

            def restart() -> dict[str, Any]:
                seconds = server.restart("bench-memory")
                return {"jobs": jobs, "seconds": seconds, "queued_after": bench.queue_size("bench-memory") + 1}

            result = self.attempt(f"{tag} h_restart {variant.name}", restart)
            self.record("h_restart", variant.name, rep, result)
            self.log(f"{tag} h_restart {variant.name:17} "
                     + (f"{result['seconds']:.2f} s to the first FETCH with {jobs:,} jobs queued"
                        if "seconds" in result else result.get("error", "")))
            return {}

        self.attempt(f"{tag} g/h {variant.name}", lambda: self.with_server(variant, work))

    def fleet(self, rep: int, order: list[Variant], tag: str) -> None:
        """R2 and R3: the faktory_worker_go fleet against each server, a fresh server per run."""
        if self.fleet_skipped:
            return
        if self.fleet_binary is None:
            binary, why = fleet.cached() if self.args.size == "smoke" else fleet.build(self.log)
            if binary is None:
                self.fleet_skipped = f"the worker fleet (R2, R3) is not available: {why.splitlines()[0]}"
                self.log(f"bench: {self.fleet_skipped}")
                return
            self.fleet_binary = binary
        binary = self.fleet_binary
        for workload in FLEET:
            if workload not in self.workloads:
                continue
            for variant, cpu in self.placements(order, workload):
                recorded = report.placed(workload, cpu)
                label = f"{recorded} {variant.name}"
                result = self.attempt(f"{tag} {label}", lambda: self.with_server(
                    variant, lambda s: fleet.run(binary, workload, s.url, self.sizes, s.pids(), cpu)))
                if "failure" in result:
                    self.errors.append(f"{tag} {label}: {result['failure'][:300]}")
                self.record(recorded, variant.name, rep, result)
                self.log(f"{tag} {workload:10} {variant.name:17} " + report.fleet_summary(workload, result)
                         + ("" if cpu is None else f" [load generator on CPU {cpu}]"))

    def load_tool(self, rep: int, order: list[Variant], tag: str) -> None:
        """R1 and R4: Faktory's load tool at each thread count against each server, with the
        CPU the server's processes used meanwhile."""
        if self.tool_skipped:
            return
        smoke = self.args.size == "smoke"
        binary = loadtool.cached_binary() if smoke else loadtool.build(self.log)
        if binary is None or not binary.exists():
            self.tool_skipped = "Faktory's load tool is not available (not built: smoke runs never build it)" \
                if smoke else "Faktory's load tool could not be built (see the log)"
            return
        for threads in self.sizes.tool_threads:
            workload = report.tool_workload(threads)
            for variant, cpu in self.placements(order, LOAD_TOOL):
                label = f"load tool {threads} {variant.name}" + ("" if cpu is None else f" on CPU {cpu}")
                result = self.attempt(f"{tag} {label}", lambda: self.with_server(
                    variant, lambda s: loadtool.run(binary, s.url, self.sizes.load_jobs, threads,
                                                    self.sizes.timeout, s.pids(), cpu)))
                if "failure" in result:
                    self.errors.append(f"{tag} {label}: {result['failure'][:300]}")
                self.record(report.placed(workload, cpu), variant.name, rep, result)
                self.log(f"{tag} load tool {threads:>3} threads {variant.name:17} "
                         + (f"{result['jobs_per_s']:,.0f} jobs/s, {result.get('cpu_s_per_1000', math.nan):.3f} "
                            "server CPU s per 1,000 jobs" if "jobs_per_s" in result else str(result))
                         + ("" if cpu is None else f" [load tool on CPU {cpu}]"))

    # --- output ------------------------------------------------------------------------------

    def data(self, finished: bool) -> dict[str, Any]:
        machine = dict(self.machine, load_average_end=load_average())
        wall0, busy0, own0 = self.cpu_at_start
        busy = busy_cpu_seconds()
        if busy is not None and busy0 is not None and time.monotonic() > wall0:
            # Everything busy on the machine minus this run's own processes: other people's work.
            machine["other_cpu_cores"] = max(0.0, (busy - busy0) - (own_cpu_seconds() - own0)) / (time.monotonic() - wall0)
        data: dict[str, Any] = {
            "schema": 1,
            "command": "python -m bench " + shlex.join(sys.argv[1:]),
            "started": datetime.fromtimestamp(self.started, timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": time.time() - self.started,
            "finished": finished,
            "size": self.args.size,
            "sizes": asdict(self.sizes),
            "reps": self.reps,
            "heavy_reps": self.heavy_reps,
            "machine": machine,
            "busy": report.busy_warning(machine),
            "faktory_version": FAKTORY_VERSION,
            "faktory_name": self.faktory_name,
            "load_cpu": self.load_cpu,
            "servers": {v.name: {"workloads": list(v.workloads)} for v in self.variants},
            "workloads": self.workloads,
            "skipped": self.skipped,
            "errors": self.errors,
            "runs": self.runs,
            "load_tool": {"jobs": self.sizes.load_jobs, "threads": list(self.sizes.tool_threads),
                          **({"skipped": self.tool_skipped} if self.tool_skipped else {})},
            "fleet": {"skipped": self.fleet_skipped} if self.fleet_skipped else {},
            "json_name": "results.json",
            "png_name": "results.png",
        }
        report.summarize(data)
        return data

    def save(self, finished: bool) -> dict[str, Any]:
        data = self.data(finished)
        self.out.mkdir(parents=True, exist_ok=True)
        if finished:
            data["chart"] = report.chart(data, self.out / "results.png")
            (self.out / "RESULTS.md").write_text(report.markdown(data))
        save_json(self.out / "results.json", data)
        return data

    def run(self) -> int:
        raise_fd_limit()
        self.log(f"bench: {', '.join(v.name for v in self.variants)}; {self.args.size} sizes; {self.reps} reps "
                 f"(memory/restart {self.heavy_reps}); machine {self.machine['cpu']} x{self.machine['cpus']}, "
                 f"load average {self.machine['load_average_start']}")
        for note in self.skipped:
            self.log(f"bench: skipped {note}")
        try:
            for rep in range(self.reps):
                self.repetition(rep)
                self.save(finished=False)
        except KeyboardInterrupt:
            self.log("bench: interrupted; writing what was measured")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        data = self.save(finished=True)
        self.log(f"bench: wrote {self.out / 'results.json'}, {self.out / 'RESULTS.md'}"
                 + (f", {self.out / 'results.png'}" if data.get("chart") else " (no chart: matplotlib missing)"))
        for name, ratio in data["ratios"].items():
            if ratio["value"] is not None:
                self.log(f"  {name:28} faktory_py/Faktory {ratio['value']:.2f}"
                         if not name.startswith("i_") else f"  {name:28} {ratio['value']:.2f} of the echo ceiling")
        for name, cost in data["timings_cost"].items():
            if cost["value"] is not None:
                self.log(f"  {name:28} timings on/off {cost['value']:.3f}")
        for name, ratio in data["always_ratio"].items():
            if ratio["value"] is not None:
                self.log(f"  {name:28} fsync always/everysec {ratio['value']:.2f} (target >= {report.ALWAYS_TARGET:g})")
        for against, ratios in (("faktory_py", data["redis"]["vs_embedded"]), ("Faktory", data["redis"]["vs_faktory"])):
            for name, ratio in ratios.items():
                if ratio["value"] is not None:
                    self.log(f"  {name:28} faktory_py-redis/{against} {ratio['value']:.2f}")
        return 1 if self.errors else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    return Runner(args).run()
