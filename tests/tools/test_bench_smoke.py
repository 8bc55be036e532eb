"""The benchmark harness at tiny sizes, so it cannot rot: it measures nothing worth reading.

`python -m bench --smoke` starts faktory_py and the echo server (and the real Faktory when
FAKTORY_BIN is set, as tests/run.sh does) and must produce a number for every workload;
`faktory-py bench --url ... --smoke` must get through every workload against a server we
started. Faktory's load tool (R1/R4) runs in the smoke only when its binary is already cached
(a smoke run never builds it). The worker fleet (R2/R3, bench/clients/fleet) is built here
first, so its rows always run when Go is installed (under CI, Go must be); the Redis backend's
rows (`faktory_py-redis`, R1/R4 and R3) whenever redis-server is installed (under CI, it must
be), `faktory_py-always` beside `faktory_py` in R1 for issue 15's ratio, and `faktory_py-io2`
(two connection processes) in R1 for its table; on two CPUs or more, R1 and R2 again with the
load generator pinned to one of them. The full benchmark
is never run here (bench/README.md).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from helpers.toolchain import under_ci

from bench import fleet, loadtool
from faktory_py.tools import gobuild

WORKLOADS = {
    "a_load": "jobs_per_s", "b_push": "jobs_per_s", "c_pushb": "jobs_per_s", "d_drain": "jobs_per_s",
    "e_latency": "p99_ms", "f_idle": "jobs_per_s", "g_memory": "bytes_per_job_5000", "h_restart": "seconds",
    "i_ceiling": "fraction", "j_throttled": "jobs_per_s",
}
#: what only `python -m bench` measures: it starts the servers (restart, the echo ceiling, a
#: throttle in conf.d)
HARNESS_ONLY = {"h_restart", "i_ceiling", "j_throttled"}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def fleet_built() -> bool:
    """The fleet program built (it is cached: later runs find it); False without Go outside CI."""
    binary, problem = fleet.build()
    if binary is None and (under_ci() or gobuild.find_go() is not None):
        pytest.fail(f"the bench's worker fleet cannot be built: {problem}", pytrace=False)
    return binary is not None


def _redis_installed() -> bool:
    if shutil.which("redis-server") is None and under_ci():
        pytest.fail("redis-server is not installed (tests/run.sh installs it)", pytrace=False)
    return shutil.which("redis-server") is not None


def test_python_m_bench_smoke(tmp_path: Path, fleet_built: bool) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--workdir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["finished"] and not data["errors"]
    for workload, key in WORKLOADS.items():
        runs = data["runs"][workload]["faktory_py"]
        assert runs and all(_number(run[key]) for run in runs), (workload, runs)
        assert not any(run.get("failures") for run in runs), (workload, runs)
        assert _number(data["summary"][f"{workload}.{key}"]["faktory_py"]["median"])
    if data["faktory_name"]:  # FAKTORY_BIN was set: the real Faktory ran too, and got ratios
        for workload, key in WORKLOADS.items():
            if workload != "i_ceiling":
                assert _number(data["ratios"][f"{workload}.{key}"]["value"]), workload
    assert data["runs"]["a_load"]["faktory_py"][0]["fetched"] == data["sizes"]["load_jobs"]
    # with and without the command timings side by side (issue 17)
    assert _number(data["timings_cost"]["b_push.jobs_per_s"]["value"])
    assert "| (b) PUSH only, pipelined | " in (out / "RESULTS.md").read_text().split("## The cost of command timings")[1]
    throttled = data["runs"]["j_throttled"]["faktory_py"][0]
    assert throttled["fetched"] == data["sizes"]["load_jobs"] and throttled["throttled_queue"] == "bench-load-0"
    assert "| (j) load shape, one queue throttled, pipelined" in (out / "RESULTS.md").read_text()
    assert data["runs"]["e_latency"]["faktory_py"][0]["missing"] == 0
    assert data["runs"]["f_idle"]["faktory_py"][0]["idle_connections"] == data["sizes"]["idle_conns"]
    assert "| (a) Faktory load shape, pipelined |" in (out / "RESULTS.md").read_text()
    markdown = (out / "RESULTS.md").read_text()
    tool = os.access(loadtool.cached_binary(), os.X_OK)
    if tool:
        _check_load_tool(data, markdown)
    if fleet_built:
        _check_fleet(data, markdown)
    if _redis_installed():
        _check_redis(data, markdown, tool, fleet_built)


def _check_fleet(data: dict, markdown: str) -> None:
    """R2 (both shapes) and R3 from the faktory_worker_go fleet: every job run and acknowledged."""
    sizes = data["sizes"]
    for workload, jobs in (("r2_drain", sizes["fleet_drain_jobs"]), ("r2_produce", sizes["fleet_jobs"]),
                           ("r3_latency", sizes["fleet_latency_jobs"])):
        (run,) = data["runs"][workload]["faktory_py"]
        assert "failure" not in run and run["jobs"] == jobs, run
        assert run["left_in_queue"] == 0 and run["failures"] == 0, run  # all acknowledged, none failed
        assert _number(run["jobs_per_s"]) and run["workers"] == sizes["fleet_workers"], run
    (latency,) = data["runs"]["r3_latency"]["faktory_py"]
    assert latency["samples"] == sizes["fleet_latency_jobs"] and 0 < latency["p50_ms"] <= latency["p99_ms"], latency
    if data["faktory_name"]:
        for name in ("r2_drain.jobs_per_s", "r2_produce.jobs_per_s", "r3_latency.p99_ms"):
            assert _number(data["ratios"][name]["value"]), name
    assert "| R2 worker fleet (" in markdown and "| R3 push → start p99, " in markdown
    if data["load_cpu"] is not None:  # R2 again with the fleet on one CPU
        for workload, jobs in (("r2_drain", sizes["fleet_drain_jobs"]), ("r2_produce", sizes["fleet_jobs"])):
            (run,) = data["runs"][f"{workload}_pinned"]["faktory_py"]
            assert run["jobs"] == jobs and run["left_in_queue"] == 0 and run["failures"] == 0, run
            if data["faktory_name"]:
                assert _number(data["ratios"][f"{workload}_pinned.jobs_per_s"]["value"]), workload
        assert f"with {sizes['fleet_producers']} Go producers, load generator on CPU {data['load_cpu']} only |" \
            in markdown


def _check_redis(data: dict, markdown: str, tool: bool, fleet_built: bool) -> None:
    """faktory_py on the Redis op log: R3 with the fleet, R1/R4 with the load tool; the table
    against the embedded store."""
    if fleet_built:
        (run,) = data["runs"]["r3_latency"]["faktory_py-redis"]
        assert run["samples"] == data["sizes"]["fleet_latency_jobs"] and run["left_in_queue"] == 0, run
        assert _number(data["redis"]["vs_embedded"]["r3_latency.p99_ms"]["value"])
    if tool:
        for t in data["sizes"]["tool_threads"]:
            (r1,) = data["runs"][f"r1_t{t}"]["faktory_py-redis"]
            assert r1["pops"] == r1["pushes"] >= data["sizes"]["load_jobs"] and _number(r1["cpu_s_per_1000"]), r1
            assert _number(data["redis"]["vs_embedded"][f"r1_t{t}.cpu_s_per_1000"]["value"])
    if tool or fleet_built:
        assert "## The Redis backend" in markdown


def _check_load_tool(data: dict, markdown: str) -> None:
    """R1 and R4 for every thread count, leading the table, with ratios when Faktory ran."""
    threads = data["sizes"]["tool_threads"]
    assert len(threads) >= 2 and data["workloads"][0] == "r1_load_tool"
    for t in threads:
        (run,) = data["runs"][f"r1_t{t}"]["faktory_py"]
        # the tool rounds the job count per thread, so a few more than asked may be pushed
        assert run["threads"] == t and run["pops"] == run["pushes"] >= data["sizes"]["load_jobs"], run
        assert _number(run["jobs_per_s"]) and _number(run["cpu_s_per_1000"]) and run["cpu_s_per_1000"] > 0, run
        if data["faktory_name"]:
            assert _number(data["ratios"][f"r1_t{t}.jobs_per_s"]["value"])
            assert _number(data["ratios"][f"r1_t{t}.cpu_s_per_1000"]["value"])
    assert f"R1 at {max(threads)} threads against {min(threads)} " in markdown
    if data["load_cpu"] is not None:  # R1 again with the load tool on one CPU
        for t in threads:
            (run,) = data["runs"][f"r1_t{t}_pinned"]["faktory_py"]
            assert run["pops"] == run["pushes"] >= data["sizes"]["load_jobs"], run
            if data["faktory_name"]:
                assert _number(data["ratios"][f"r1_t{t}_pinned.jobs_per_s"]["value"])
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[1].startswith(f"| R1 Faktory's load tool, {threads[0]} threads |"), table[:3]
    # fsync always beside everysec in R1, with issue 15's target (at least half)
    for t in threads:
        assert _number(data["always_ratio"][f"r1_t{t}.jobs_per_s"]["value"])
    always = markdown.split("## fsync always")[1]
    assert f"| R1 Faktory's load tool, {threads[0]} threads | " in always and "| ≥ 0.5 |" in always
    # two connection processes beside the in-process I/O loop (issue 15), every process's CPU counted
    for t in threads:
        (io2,) = data["runs"][f"r1_t{t}"]["faktory_py-io2"]
        assert io2["pops"] == io2["pushes"] >= data["sizes"]["load_jobs"] and _number(io2["cpu_s_per_1000"]), io2
    processes = markdown.split("## Connection processes")[1]
    assert "| load tool threads | 0 jobs/s | 0 CPU µs/job | 2 jobs/s | 2 CPU µs/job |" in processes
    assert f"\n| {threads[0]} | " in processes


def test_faktory_py_bench_url_smoke(server, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert server.proc is not None
    proc = subprocess.run(
        [sys.executable, "-m", "faktory_py", "bench", "--url", server.url, "--smoke", "--no-progress",
         "--pid", str(server.proc.pid), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())["results"]
    assert set(results) == set(WORKLOADS) - HARNESS_ONLY
    with server.client() as c:  # the bench queues are gone again
        assert c.handshake() == b"OK"
        assert not [q for q in c.info()["faktory"]["queues"] if q.startswith("bench-")]
