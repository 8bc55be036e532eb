"""R2 and R3: a fleet of real faktory_worker_go processes (bench/clients/fleet, a Go program).

The program is built with faktory_py.tools.gobuild, as the Go conformance scenarios are: once
per digest of its sources, go.mod/go.sum and the Go version, cached under
~/.cache/faktory_py/bench-fleet/. It starts the worker processes itself, runs the producer
(the Go client), and prints one JSON object; this module runs it against a server, adds the
CPU the server's processes used meanwhile, and turns R3's latencies into percentiles the same
way (e) does (faktory_py.tools.loadgen.stats).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from faktory_py.tools import gobuild
from faktory_py.tools.loadgen.pool import cpu_seconds
from faktory_py.tools.loadgen.stats import latency_summary
from faktory_py.tools.loadgen.workloads import Sizes

from .machine import pinned_to

SOURCE = Path(__file__).resolve().parent / "clients" / "fleet"
NAME = "bench-fleet"
#: workload → the program's mode
MODES = {"r2_drain": "drain", "r2_produce": "produce", "r3_latency": "latency"}


def build(log=print) -> tuple[Path | None, str]:  # type: ignore[no-untyped-def]
    """The fleet program, built first if needed; (None, why) when it cannot be."""
    return gobuild.build(SOURCE, NAME, log=log)


def cached() -> tuple[Path | None, str]:
    """The fleet program only if a build of these very sources is cached (smoke runs never
    build it: the first build downloads Go modules), else (None, why)."""
    return gobuild.build(SOURCE, NAME, cached_only=True)


def run(binary: Path, workload: str, url: str, sizes: Sizes, pids: list[int] | None = None,
        cpu: int | None = None) -> dict[str, Any]:
    """One R2/R3 run against the server at `url` (the program and its workers on CPU `cpu`
    only, if given); the program's figures plus the server's CPU seconds meanwhile (whole run:
    fill, start-up, load)."""
    mode = MODES[workload]
    jobs = {"drain": sizes.fleet_drain_jobs, "produce": sizes.fleet_jobs, "latency": sizes.fleet_latency_jobs}[mode]
    command = [str(binary), mode, "-workers", str(sizes.fleet_workers), "-concurrency", str(sizes.fleet_concurrency),
               "-jobs", str(jobs), "-producers", str(sizes.fleet_producers), "-rate", str(sizes.fleet_rate),
               "-timeout", f"{sizes.timeout:.0f}s"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKTORY_")}
    env["FAKTORY_URL"] = url
    cpu_before = cpu_seconds(pids) if pids else None
    try:
        # The program's own -timeout stops the load; this one also covers the workers' shutdown.
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=sizes.timeout + 60,
                             preexec_fn=pinned_to(cpu))
    except subprocess.TimeoutExpired:
        return {"jobs": jobs, "failure": f"timed out after {sizes.timeout + 60:.0f}s"}
    cpu_after = cpu_seconds(pids) if pids else None
    try:
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"jobs": jobs, "failure": f"exit {out.returncode}: {(out.stdout + out.stderr).strip()[-800:]}"}
    if out.returncode:
        result["failure"] = f"exit {out.returncode}: {out.stderr.strip()[-800:]}"
    if "latencies_ms" in result:
        result.update(latency_summary(result.pop("latencies_ms")))
        # the rate the producer held: below `rate` when PUSH round trips took longer than the interval
        result["push_rate"] = jobs / result["push_seconds"] if result.get("push_seconds") else None
    if mode == "drain":
        # The headline: the fleet at full concurrency, once FWG's start-up spread is over (see
        # bench/clients/fleet/main.go); the whole drain when less than a quarter was left by then.
        result["steady"] = "steady_jobs_per_s" in result and 4 * result["steady_jobs"] >= jobs
        if result["steady"]:
            result["whole_jobs_per_s"], result["jobs_per_s"] = result.get("jobs_per_s"), result["steady_jobs_per_s"]
    if cpu_before is not None and cpu_after is not None:
        result["server_cpu_s"] = cpu_after - cpu_before
    return result
