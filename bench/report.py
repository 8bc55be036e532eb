"""From the raw runs of a bench run to medians, faktory_py/Faktory ratios, Markdown and a chart."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from faktory_py.tools.loadgen.stats import spread

OURS = "faktory_py"
ALWAYS = "faktory_py-always"
#: faktory_py with `[faktory_py.metrics] timings = false`: what the command path's timings cost
NOTIMINGS = "faktory_py-notimings"
#: faktory_py with its op log in Redis (`--store redis://…`, issue 16)
REDIS = "faktory_py-redis"
#: faktory_py with connection processes (`--io-processes`, issue 15) → how many
IO_PROCESSES = {"faktory_py-io1": 1, "faktory_py-io2": 2}
ECHO = "echo"
#: issue 15's target for `fsync always` under R1: at least this fraction of everysec's jobs/s
ALWAYS_TARGET = 0.5


@dataclass(frozen=True)
class Metric:
    workload: str
    key: str
    label: str
    unit: str
    better: str  # "higher" or "lower"
    target: float | None  # faktory_py/Faktory ratio to reach (i: fraction of the echo ceiling)
    digits: int = 0
    #: the workload whose Faktory runs the ratio divides by, when Faktory cannot run this one
    #: ((j): OSS Faktory has no throttles, so its unthrottled (a))
    against: str | None = None

    @property
    def name(self) -> str:
        return f"{self.workload}.{self.key}"


def tool_workload(threads: int) -> str:
    """The workload R1/R4 record Faktory's load tool at `threads` threads under."""
    return f"r1_t{threads}"


def tool_metrics(data: dict[str, Any]) -> list[Metric]:
    """R1 (jobs/s) of Faktory's load tool, then R4 (server CPU per 1,000 jobs), per thread count."""
    threads = data["sizes"].get("tool_threads", ())
    return [
        *(Metric(tool_workload(t), "jobs_per_s", f"R1 Faktory's load tool, {t} threads", "jobs/s", "higher", 2.0)
          for t in threads),
        *(Metric(tool_workload(t), "cpu_s_per_1000", f"R4 server CPU per 1,000 jobs, load tool at {t} threads",
                 "CPU s", "lower", 1.0, 3) for t in threads),
    ]


def fleet_metrics(data: dict[str, Any]) -> list[Metric]:
    """R2 (jobs/s of the faktory_worker_go fleet, both shapes) and R3 (push → start latency)."""
    s = data["sizes"]
    fleet = f"{s['fleet_workers']} FWG × {s['fleet_concurrency']}"
    return [
        Metric("r2_drain", "jobs_per_s", f"R2 worker fleet ({fleet}) draining a filled queue", "jobs/s",
               "higher", 2.0),
        Metric("r2_produce", "jobs_per_s", f"R2 worker fleet ({fleet}) with {s['fleet_producers']} Go producers",
               "jobs/s", "higher", 2.0),
        Metric("r3_latency", "p50_ms", f"R3 push → start p50, {s['fleet_rate']:g} jobs/s, {fleet} waiting", "ms",
               "lower", None, 2),
        Metric("r3_latency", "p99_ms", f"R3 push → start p99, {s['fleet_rate']:g} jobs/s, {fleet} waiting", "ms",
               "lower", 1.0, 2),
        Metric("r3_latency", "p999_ms", f"R3 push → start p99.9, {s['fleet_rate']:g} jobs/s, {fleet} waiting",
               "ms", "lower", None, 2),
    ]


def placed(workload: str, cpu: int | None) -> str:
    """The workload a run is recorded under: `workload` itself with the load generator free,
    its pinned twin with the load generator kept on CPU `cpu`."""
    return workload if cpu is None else f"{workload}_pinned"


def pinned_metrics(data: dict[str, Any]) -> list[Metric]:
    """R1's jobs/s and R2 again, with the load generator pinned to CPU `load_cpu` and the
    servers free on every CPU (bench/run.py `PINNED`)."""
    cpu = data.get("load_cpu")
    if cpu is None:
        return []
    again = [m for m in (*tool_metrics(data), *fleet_metrics(data)) if m.key == "jobs_per_s"]
    return [replace(m, workload=placed(m.workload, cpu), label=f"{m.label}, load generator on CPU {cpu} only")
            for m in again]


def fleet_summary(workload: str, result: dict[str, Any]) -> str:
    """One log line's worth of an R2/R3 run."""
    if "error" in result or "failure" in result:
        return str(result.get("error") or result.get("failure"))
    if workload == "r3_latency":
        held = result.get("push_rate") or 0
        return (f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, p99.9 {result['p999_ms']:.2f} ms "
                f"over {result['samples']:,} jobs at {result['rate']:g}/s"
                + (f" (pushed at only {held:,.0f}/s: PUSH round trips outlasted the interval)"
                   if held < 0.95 * result["rate"] else ""))
    text = f"{result['jobs_per_s']:,.0f} jobs/s ({result['jobs']:,} jobs"
    if workload == "r2_drain":
        text += (", at full concurrency" if result.get("steady")
                 else ", whole drain: most of it ran before FWG's start-up spread was over")
    return text + ")"


def metrics(data: dict[str, Any]) -> list[Metric]:
    tools = tool_metrics(data)
    r1 = [m for m in tools if m.key == "jobs_per_s"]
    out = [
        *r1,
        *fleet_metrics(data),
        *pinned_metrics(data),
        *(m for m in tools if m not in r1),
        Metric("a_load", "jobs_per_s", "(a) Faktory load shape, pipelined", "jobs/s", "higher", 1.5),
        Metric("b_push", "jobs_per_s", "(b) PUSH only, pipelined", "jobs/s", "higher", 1.5),
        Metric("c_pushb", "jobs_per_s", "(c) PUSHB, 1,000 per call", "jobs/s", "higher", 1.5),
        Metric("d_drain", "jobs_per_s", "(d) drain: FETCH + ACK, pipelined", "jobs/s", "higher", 1.5),
        Metric("e_latency", "p50_ms", "(e) push→fetch latency p50", "ms", "lower", None, 2),
        Metric("e_latency", "p99_ms", "(e) push→fetch latency p99", "ms", "lower", 1.0, 2),
        Metric("e_latency", "p999_ms", "(e) push→fetch latency p99.9", "ms", "lower", None, 2),
        Metric("f_idle", "jobs_per_s", "(f) load shape + idle workers, pipelined", "jobs/s", "higher", None),
    ]
    for size in data["sizes"]["memory_jobs"]:
        out.append(Metric("g_memory", f"bytes_per_job_{size}", f"(g) RSS per queued job, {size:,} queued",
                          "bytes", "lower", 1.0))
    out.append(Metric("h_restart", "seconds", f"(h) restart to first FETCH, {max(data['sizes']['memory_jobs']):,} jobs",
                      "s", "lower", 1.0, 2))
    out.append(Metric("i_ceiling", "fraction", "(i) PUSH as a fraction of the echo ceiling", "", "higher", 0.6, 2))
    out.append(Metric("j_throttled", "jobs_per_s",
                      "(j) load shape, one queue throttled, pipelined (Faktory: (a), unthrottled)",
                      "jobs/s", "higher", None, against="a_load"))
    return out


def _value(run: dict[str, Any], key: str) -> float | None:
    value = run.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _by_rep(runs: list[dict[str, Any]], key: str) -> dict[int, float]:
    out = {}
    for run in runs:
        value = _value(run, key)
        if value is not None:
            out[run["rep"]] = value
    return out


def summarize(data: dict[str, Any]) -> None:
    """Add `summary` (median and spread per metric and server) and `ratios` to `data`."""
    faktory = data.get("faktory_name")
    summary: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for metric in metrics(data):
        runs = data["runs"].get(metric.workload, {})
        if metric.against and faktory and OURS in runs and faktory in data["runs"].get(metric.against, {}):
            runs = {**runs, faktory: data["runs"][metric.against][faktory]}
        per_server = {server: spread(list(_by_rep(server_runs, metric.key).values()))
                      for server, server_runs in runs.items()}
        summary[metric.name] = per_server
        if metric.workload == "i_ceiling":
            ours = per_server.get(OURS, {})
            ratios[metric.name] = _ratio_entry(metric, ours.get("median"),
                                               list(_by_rep(runs.get(OURS, []), metric.key).values()))
            continue
        if not faktory or faktory not in runs or OURS not in runs:
            continue
        ours_by_rep = _by_rep(runs[OURS], metric.key)
        theirs_by_rep = _by_rep(runs[faktory], metric.key)
        per_rep = [ours_by_rep[r] / theirs_by_rep[r] for r in sorted(ours_by_rep.keys() & theirs_by_rep.keys())
                   if theirs_by_rep[r]]
        ours_med, theirs_med = per_server[OURS]["median"], per_server[faktory]["median"]
        ratio = ours_med / theirs_med if ours_med is not None and theirs_med else None
        ratios[metric.name] = _ratio_entry(metric, ratio, per_rep)
    data["summary"] = summary
    data["ratios"] = ratios
    # the command-path timings' cost: R1, R4 and (b) with them / without (target: within 3%, issue 17)
    data["timings_cost"] = _versus(data, OURS, NOTIMINGS, lambda m: m.workload.startswith("r1_t")
                                   or m.workload == "b_push")
    # fsync always / everysec under R1 (issue 15: at least ALWAYS_TARGET)
    data["always_ratio"] = _versus(data, ALWAYS, OURS, lambda m: m.workload.startswith("r1_t")
                                   and m.key == "jobs_per_s")
    # the Redis op log against the embedded journal and against Faktory (issue 16): R1, R3, R4
    redis_rows = (lambda m: m.workload.startswith("r1_t") or m.workload == "r3_latency")
    data["redis"] = {"vs_embedded": _versus(data, REDIS, OURS, redis_rows),
                     "vs_faktory": _versus(data, REDIS, data.get("faktory_name") or "", redis_rows)}


def _versus(data: dict[str, Any], top: str, bottom: str, select: Callable[[Metric], bool]) -> dict[str, Any]:
    """Server `top` / server `bottom` for the metrics `select` picks, when both ran: the
    medians' ratio and the per-repetition ratios."""
    out: dict[str, Any] = {}
    for metric in metrics(data):
        if not select(metric):
            continue
        runs = data["runs"].get(metric.workload, {})
        if top not in runs or bottom not in runs:
            continue
        a, b = _by_rep(runs[top], metric.key), _by_rep(runs[bottom], metric.key)
        per_rep = [a[r] / b[r] for r in sorted(a.keys() & b.keys()) if b[r]]
        a_med, b_med = spread(list(a.values()))["median"], spread(list(b.values()))["median"]
        out[metric.name] = {"label": metric.label, "value": a_med / b_med if a_med is not None and b_med
                            else None, "per_rep": per_rep, "top": a_med, "bottom": b_med,
                            "unit": metric.unit, "digits": metric.digits}
    return out


def _ratio_entry(metric: Metric, value: float | None, per_rep: list[float]) -> dict[str, Any]:
    meets = None
    if value is not None and metric.target is not None:
        meets = value >= metric.target if metric.better == "higher" else value <= metric.target
    return {"value": value, "per_rep": per_rep, "min": min(per_rep) if per_rep else None,
            "max": max(per_rep) if per_rep else None, "better": metric.better, "target": metric.target,
            "meets_target": meets}


# --- Markdown ---------------------------------------------------------------------------------

def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    if digits == 0 and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}" if digits else f"{value:,.0f}"


def _cell(entry: dict[str, Any] | None, digits: int) -> str:
    if not entry or entry.get("median") is None:
        return "–"
    text = _fmt(entry["median"], digits)
    if entry["n"] > 1:
        text += f" ({_fmt(entry['min'], digits)}–{_fmt(entry['max'], digits)})"
    return text


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    faktory = data.get("faktory_name")
    servers = [s for s in (OURS, ALWAYS, NOTIMINGS, REDIS, faktory) if s and s in data["servers"]]
    heads = {OURS: "faktory_py (fsync everysec)", ALWAYS: "faktory_py (fsync always)",
             NOTIMINGS: "faktory_py (timings off)", REDIS: "faktory_py (Redis op log)"}
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{data['command']}` on {data['started']} in {data['duration_s']:.0f} s "
        f"(sizes: {data['size']}; {data['reps']} repetitions, memory and restart {data['heavy_reps']}).",
        "",
        f"**Machine:** {m['cpu']}, {m['cpus']} CPUs ({m['cpus_usable']} usable), {m['memory_gib']} GiB; "
        f"{m['os']}, kernel {m['kernel']}; Python {m['python']}, trio {m['trio']}, hiredis {m['hiredis']}; "
        f"{m.get('faktory') or 'no Faktory'}, {m.get('redis') or 'no Redis'}; data on {m.get('workdir_filesystem')}. "
        f"Load average at start {m['load_average_start']}, at end {m.get('load_average_end')}; "
        f"CPU used by other processes during the run: {_fmt(m.get('other_cpu_cores'), 2)} cores.",
        "",
    ]
    if data.get("busy"):
        lines += [f"> **Warning:** {data['busy']}", ""]
    if noise := self_noise_warning(data):
        lines += [f"> **Noise:** {noise}", ""]
    lines += [
        "Cells are medians over the repetitions, with the range (min–max) in brackets. The ratio is "
        "faktory_py (everysec) / Faktory, the medians' ratio, with the range of the per-repetition "
        "ratios (each repetition runs every server back to back). Servers, load generator and Redis "
        "share this one machine.",
        "",
        "R1 and R4 lead: Faktory's own load tool (github.com/contribsys/faktory/test/load "
        f"v{data['faktory_version']}, `load {data['load_tool']['jobs']} THREADS`), a real Go client whose "
        "threads each wait for every reply (each job: PUSH, FETCH, ACK), at "
        f"{', '.join(str(t) for t in data['load_tool']['threads'])} threads; its own jobs/s figure (R1), and the "
        "CPU seconds the server's processes (Faktory: with its Redis) used per 1,000 of its jobs (R4). "
        + (f"**{data['load_tool']['skipped']}.** " if data["load_tool"].get("skipped") else "")
        + "R2 and R3: a fleet of faktory_worker_go processes (bench/clients/fleet) doing no-op jobs — "
        "R2 draining a queue filled beforehand (untimed; jobs/s once the fleet runs at full concurrency, "
        "after faktory_worker_go's ~2 s start-up spread), and running what Go-client producers push "
        "(jobs/s from the first PUSH to the last job run); R3 the time from PUSH to the job's start with "
        "the fleet waiting, one job pushed at a fixed rate carrying its push time. "
        + (f"**{data['fleet']['skipped']}.** " if data.get("fleet", {}).get("skipped") else "")
        + ("Rows ending “load generator on CPU N only” run R1 or R2 again against faktory_py (everysec) "
           "and Faktory with the load generator's processes kept on that CPU (`sched_setaffinity`) and "
           "the servers still free to run on every CPU: the load generator then competes with the "
           "server for one CPU only, nearer to workers on machines of their own. "
           if data.get("load_cpu") is not None else "")
        + "The rows marked pipelined come from our own load generator, which sends up to 100 commands "
        "per write; real clients do not.",
        "",
        "| workload | unit | " + " | ".join(heads.get(s, s) for s in servers) + " | ratio | target | met |",
        "|---|---|" + "---|" * len(servers) + "---|---|---|",
    ]
    for metric in metrics(data):
        cells = data["summary"].get(metric.name, {})
        if metric.workload == "i_ceiling" or not any(c.get("median") is not None for c in cells.values()):
            continue  # (i) has a table of its own; a workload this run did not measure has no row
        ratio = data["ratios"].get(metric.name)
        ratio_text, target_text, met = "–", "–", ""
        if metric.target is not None:
            target_text = ("≥ " if metric.better == "higher" else "≤ ") + f"{metric.target:g}×"
        if ratio and ratio["value"] is not None:
            ratio_text = f"{ratio['value']:.2f}"
            if len(ratio["per_rep"]) > 1:
                ratio_text += f" ({ratio['min']:.2f}–{ratio['max']:.2f})"
            met = {True: "yes", False: "no", None: ""}[ratio["meets_target"]]
        lines.append(f"| {metric.label} | {metric.unit} | "
                     + " | ".join(_cell(cells.get(s), metric.digits) for s in servers)
                     + f" | {ratio_text} | {target_text} | {met} |")
    lines += _tool_scaling(data, servers, heads)
    lines += ["", "CPU busy during the timed part, in cores (medians): server (Faktory: with its Redis) / "
              "load generator. A generator near its share of the machine would mean it, not the server, "
              "set the pace.", "",
              "| workload | " + " | ".join(heads.get(s, s) for s in servers) + " |",
              "|---|" + "---|" * len(servers)]
    tools = [tool_workload(t) for t in data["sizes"].get("tool_threads", ())]
    for workload in (*tools, "a_load", "b_push", "c_pushb", "d_drain", "e_latency", "f_idle", "j_throttled"):
        runs = data["runs"].get(workload, {})
        cells = []
        for server in servers:
            got = [spread([r[k] for r in runs.get(server, []) if _value(r, k) is not None])["median"]
                   for k in ("server_cores", "generator_cores")]
            cells.append(" / ".join("–" if v is None else f"{v:.2f}" for v in got))
        if runs:
            lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    lines += _always_table(data)
    lines += _io_table(data)
    lines += _redis_table(data)
    lines += _timings_table(data)
    lines += ["", "## The ceiling (i)", ""]
    ceiling = data["runs"].get("i_ceiling", {})
    if ceiling:
        echo = data["summary"].get("i_ceiling.fraction", {})
        push = spread([r["echo_jobs_per_s"] for runs in ceiling.values() for r in runs
                       if _value(r, "echo_jobs_per_s") is not None])
        lines += [
            "A bare trio server answering every line with `+OK` (bench/echo_server.py), driven by the "
            "PUSH workload (b) without pipelining (each connection waits for every reply, as real "
            f"clients do), in the same repetitions: {_cell(push, 0)} lines/s. "
            "Fraction of it reached with real PUSHes, sent the same way:",
            "",
            "| server | fraction of the echo ceiling | target |",
            "|---|---|---|",
        ]
        for server in (OURS, ALWAYS, faktory):
            if server and server in echo:
                target = "≥ 0.6" if server == OURS else ""
                lines.append(f"| {heads.get(server, server)} | {_cell(echo[server], 2)} | {target} |")
    else:
        lines.append("Not measured in this run.")
    lines += ["", "## Sizes", "", "```", *(f"{k} = {v}" for k, v in data["sizes"].items()), "```", ""]
    if data.get("errors"):
        lines += ["## Errors", "", *(f"- {e}" for e in data["errors"]), ""]
    lines += [f"Raw numbers: `{data['json_name']}`. Chart: `{data['png_name']}`"
              + ("" if data.get("chart") else " (not drawn: matplotlib is not installed; `pip install -e '.[bench]'`)")
              + ".", ""]
    return "\n".join(lines)


def _ratio_text(entry: dict[str, Any], digits: int = 2) -> str:
    text = _fmt(entry["value"], digits)
    if len(entry["per_rep"]) > 1:
        text += f" ({min(entry['per_rep']):.{digits}f}–{max(entry['per_rep']):.{digits}f})"
    return text


def _always_table(data: dict[str, Any]) -> list[str]:
    """`fsync always` against everysec under R1, with issue 15's target."""
    ratios = data.get("always_ratio") or {}
    if not ratios:
        return []
    lines = ["", "## fsync always", "",
             "faktory_py with `--fsync always` (every reply waits for an fsync shared by all replies waiting) "
             "/ faktory_py with `--fsync everysec`, R1 jobs/s, medians' ratio (per-repetition range).", "",
             "| workload | always | everysec | always / everysec | target | met |", "|---|---|---|---|---|---|"]
    for entry in ratios.values():
        met = "" if entry["value"] is None else "yes" if entry["value"] >= ALWAYS_TARGET else "no"
        lines.append(f"| {entry['label']} | {_fmt(entry['top'], 0)} | {_fmt(entry['bottom'], 0)} | "
                     f"{_ratio_text(entry)} | ≥ {ALWAYS_TARGET:g} | {met} |")
    return lines


def _io_table(data: dict[str, Any]) -> list[str]:
    """R1 and R4 by the number of connection processes (issue 15's table of how throughput grows
    with them), beside the in-process I/O loop (0)."""
    present = [(name, count) for name, count in IO_PROCESSES.items() if name in data["servers"]]
    if not present:
        return []
    columns = [(OURS, 0), *present]
    lines = ["", "## Connection processes", "",
             "R1 jobs/s and CPU per job by connection processes (0 = the in-process I/O loop): faktory_py "
             "(fsync everysec) with `--io-processes N`; CPU per job is R4's (every process of the server) "
             "per job, in µs. Medians (range); × is jobs/s against 0 processes.", "",
             "| load tool threads | " + " | ".join(f"{n} jobs/s | {n} CPU µs/job" for _, n in columns) + " |",
             "|---|" + "---|---|" * len(columns)]
    for threads in data["sizes"].get("tool_threads", ()):
        workload = tool_workload(threads)
        rates = data["summary"].get(f"{workload}.jobs_per_s", {})
        cpu = data["summary"].get(f"{workload}.cpu_s_per_1000", {})
        base = (rates.get(OURS) or {}).get("median")
        cells = []
        for name, _ in columns:
            rate = (rates.get(name) or {}).get("median")
            text = _cell(rates.get(name), 0)
            if name != OURS and rate and base:
                text += f" {rate / base:.2f}×"
            per_job = cpu.get(name)
            # CPU s per 1,000 jobs is ms per job: × 1,000 for µs
            cells += [text, _fmt(None if not per_job or per_job.get("median") is None
                                 else per_job["median"] * 1000, 0)]
        lines.append(f"| {threads} | " + " | ".join(cells) + " |")
    return lines


def _redis_table(data: dict[str, Any]) -> list[str]:
    """faktory_py on the Redis op log against the embedded journal and against Faktory (which
    also pays a Redis round trip per operation)."""
    redis = data.get("redis") or {}
    embedded, faktory = redis.get("vs_embedded") or {}, redis.get("vs_faktory") or {}
    if not embedded and not faktory:
        return []
    lines = ["", "## The Redis backend", "",
             "faktory_py with `--store redis://…` (a redis-server the harness starts: `appendonly yes`, "
             "`appendfsync everysec`; its CPU counts in R4, as Faktory's Redis does) against the embedded "
             "journal (fsync everysec) and against Faktory. Medians' ratios (per-repetition range); "
             "for jobs/s higher is better, for latency and CPU lower.", "",
             "| workload | unit | Redis op log | / embedded | / Faktory |", "|---|---|---|---|---|"]
    for name in dict.fromkeys([*embedded, *faktory]):
        entry = embedded.get(name) or faktory[name]
        cells = [_ratio_text(e[name]) if name in e else "–" for e in (embedded, faktory)]
        lines.append(f"| {entry['label']} | {entry['unit']} | {_fmt(entry['top'], entry['digits'])} | "
                     + " | ".join(cells) + " |")
    lines += _slow_pushes(data)
    return lines


def _slow_pushes(data: dict[str, Any]) -> list[str]:
    """R3 runs whose producer could not hold the rate (a PUSH round trip longer than the interval)."""
    slow = [f"{server} pushed at {run['push_rate']:,.0f}/s" for server, runs in data["runs"].get("r3_latency", {}).items()
            for run in runs if run.get("push_rate") and run["push_rate"] < 0.95 * run["rate"]]
    if not slow:
        return []
    return ["", f"R3's producer did not hold {data['sizes']['fleet_rate']:g} jobs/s in some runs ("
            + "; ".join(slow) + "): its PUSH round trips outlasted the interval."]


def _timings_table(data: dict[str, Any]) -> list[str]:
    """The command-path timings' cost, when faktory_py ran with and without them."""
    cost = data.get("timings_cost") or {}
    if not cost:
        return []
    lines = ["", "## The cost of command timings", "",
             "faktory_py (everysec, timings on) / faktory_py (timings off: `[faktory_py.metrics] timings = "
             "false`), medians' ratio (per-repetition range); target: within 3% of 1.", "",
             "| workload | on / off |", "|---|---|"]
    for entry in cost.values():
        lines.append(f"| {entry['label']} | {_ratio_text(entry, 3)} |")
    return lines


def _tool_scaling(data: dict[str, Any], servers: list[str], heads: dict[str, str]) -> list[str]:
    """R1's jobs/s at the most threads as a multiple of at the fewest, per server (target:
    faktory_py's does not fall as connections grow)."""
    threads = data["sizes"].get("tool_threads", ())
    if len(threads) < 2:
        return []
    lo, hi = min(threads), max(threads)
    cells = []
    for server in servers:
        rates = [data["summary"].get(f"{tool_workload(t)}.jobs_per_s", {}).get(server, {}).get("median")
                 for t in (lo, hi)]
        if all(rates):
            cells.append(f"{heads.get(server, server)} {rates[1] / rates[0]:.2f}×")
    if not cells:
        return []
    return ["", f"R1 at {hi} threads against {lo} (target for faktory_py: ≥ 1×, no fall as connections grow): "
            + ", ".join(cells) + "."]


# --- chart ------------------------------------------------------------------------------------

def chart(data: dict[str, Any], path: Path) -> bool:
    """Bars of faktory_py's advantage over Faktory per metric (>1: faktory_py better), with
    the per-repetition range and the target; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = []
    for metric in metrics(data):
        ratio = data["ratios"].get(metric.name)
        if not ratio or ratio["value"] is None:
            continue
        flip = metric.better == "lower" and metric.workload != "i_ceiling"

        def adv(x: float) -> float:
            return 1 / x if flip and x else x

        lo, hi = ratio["min"], ratio["max"]
        span = sorted(adv(v) for v in (lo, hi)) if lo and hi else None
        target = None if metric.target is None else adv(metric.target)
        rows.append((metric.label, adv(ratio["value"]), span, target))
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.8))
    ys = list(range(len(rows)))[::-1]
    values = [r[1] for r in rows]
    colors = ["#2e7d32" if r[3] is not None and r[1] >= r[3] else "#c62828" if r[3] is not None else "#607d8b"
              for r in rows]
    ax.barh(ys, [v - 1 for v in values], left=1, color=colors, height=0.6)  # from 1: which side wins
    for y, (_, value, span, target) in zip(ys, rows):
        if span:
            ax.plot(span, [y, y], color="black", linewidth=1)
        if target is not None:
            ax.plot([target, target], [y - 0.4, y + 0.4], color="black", linestyle="--", linewidth=1)
        right = max(value, 1.0, *(span or ()), target or 0)
        ax.text(right * 1.04, y, f"{value:.2f}", va="center", fontsize=8)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([r[0] for r in rows], fontsize=8)
    ax.set_xscale("log")
    lows = [min(r[1], *(r[2] or ())) for r in rows]
    highs = [max(r[1], 1.0, *(r[2] or ()), r[3] or 0) for r in rows]
    ax.set_xlim(min(lows) / 1.3, max(highs) * 1.5)
    ax.set_xlabel("faktory_py advantage over Faktory (×; >1 is better; lower-is-better metrics inverted;\n"
                  "(i) is the fraction of the echo ceiling). Dashed: target. Line: per-repetition range.",
                  fontsize=8)
    m = data["machine"]
    ax.set_title(f"faktory_py vs Faktory {data['faktory_version']} — {data['size']} sizes, {data['reps']} reps, "
                 f"{m['cpus']} CPUs" + (f", other work {m['other_cpu_cores']:.2f} cores" if m.get("other_cpu_cores") is not None
                                  else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


#: how far (either way) faktory_py may measure from itself in a run before the report says so
SELF_NOISE = 0.10


def self_noise_warning(data: dict[str, Any]) -> str | None:
    """A note when the run's own noise is as large as the margins the targets are judged by.
    The timings on/off rows measure faktory_py against itself (the timings cost about 1%,
    core/timings.py), so how far their R1 medians stray from 1 gauges what a run on this
    machine can tell apart, however idle it looked when the run started."""
    ratios = [entry["value"] for key, entry in (data.get("timings_cost") or {}).items()
              if key.startswith("r1_") and key.endswith(".jobs_per_s") and entry.get("value")]
    if not ratios or max(abs(r - 1) for r in ratios) <= SELF_NOISE:
        return None
    spread_text = f"{min(ratios):.2f}–{max(ratios):.2f}"
    return (f"faktory_py measured {spread_text}× itself under R1 in this run (timings on / off, the same "
            f"code but for about 1%), more than ±{SELF_NOISE:.0%}: ratios within that of a target do not "
            "decide whether it is met.")


def busy_warning(machine: dict[str, Any]) -> str | None:
    """A note when other work was running: the numbers are then only indicative."""
    cpus = machine.get("cpus_usable") or 1
    other = machine.get("other_cpu_cores")
    if other is not None and other > 0.1 * cpus:
        return (f"other processes kept {other:.2f} of the {cpus} CPUs busy on average during the run "
                "(CPU time not spent by this run's servers and load generators); treat the numbers "
                "as indicative.")
    load = machine.get("load_average_start", [])
    if load and max(load[:2]) > 0.5 * cpus:
        return (f"the machine was busy with other work before the run started (load average "
                f"{load} on {cpus} CPUs); treat the numbers as indicative.")
    return None
