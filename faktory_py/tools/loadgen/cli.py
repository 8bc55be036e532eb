"""`faktory-py bench`: drive the benchmark workloads against any running Faktory-compatible server.

    faktory-py bench --url tcp://127.0.0.1:7419 [--size smoke|small|full] [--workloads a,b,...]
                     [--jobs N] [--pid PID ...] [--json FILE]

It pushes and consumes real jobs (in `bench-*` queues it removes afterwards): point it at a
server you can spare. Results go to stdout, one line per workload, and with --json to a file.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

from ... import __version__
from ..client import parse_url
from .conn import BenchError
from .pool import raise_fd_limit
from .workloads import PRESETS, WORKLOADS, Bench, save_json


def _workload_names(text: str) -> list[str]:
    names = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        matches = [w for w in WORKLOADS if w == part or w.split("_", 1)[0] == part]
        if not matches:
            raise argparse.ArgumentTypeError(f"unknown workload {part!r}: choose from {', '.join(WORKLOADS)}")
        names += matches
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faktory-py bench",
        description="Benchmark a running Faktory-compatible server (it pushes and consumes real jobs).")
    p.add_argument("--url", default=os.environ.get("FAKTORY_URL", "tcp://localhost:7419"),
                   help="tcp://[:password@]host:port (default $FAKTORY_URL or tcp://localhost:7419)")
    p.add_argument("--size", choices=sorted(PRESETS), default="full", help="workload sizes (default full)")
    p.add_argument("--smoke", action="store_const", const="smoke", dest="size", help="same as --size smoke")
    p.add_argument("--workloads", type=_workload_names, default=list(WORKLOADS),
                   help="comma-separated, by name or letter: a,b,c,d,e,f,g (default all)")
    p.add_argument("--jobs", type=int, help="jobs per throughput workload (overrides --size)")
    p.add_argument("--idle", type=int, help="idle worker connections for f (default 2000)")
    p.add_argument("--procs", type=int, help="load-generator processes per side (default 2)")
    p.add_argument("--pid", type=int, action="append", default=[],
                   help="a local server process id: enables g_memory and CPU figures "
                        "(repeat for Faktory and its Redis)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    sizes = PRESETS[args.size]
    if args.jobs:
        sizes = sizes.scaled(args.jobs)
    if args.idle is not None:
        sizes = replace(sizes, idle_conns=args.idle)
    if args.procs:
        sizes = replace(sizes, procs=args.procs)
    raise_fd_limit()
    try:
        target = parse_url(args.url)
        bench = Bench(target, sizes, progress=False if args.no_progress else None,
                      log=lambda line: print(line, flush=True), pids=args.pid)
        bench.control().close()  # fail early, with a clear message, if we cannot connect
        print(f"faktory-py bench {__version__} against {target.host}:{target.port} ({args.size} sizes)",
              flush=True)
        started = time.time()
        results = bench.run(args.workloads)
    except (BenchError, OSError, ValueError) as exc:  # ValueError: a bad --url
        print(f"faktory-py bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("faktory-py bench: interrupted", file=sys.stderr)
        return 130
    if args.json:
        save_json(args.json, {"url": f"tcp://{target.host}:{target.port}", "started": started,
                              "python": platform.python_version(), "sizes": sizes, "results": results})
    failed = [name for name, r in results.items() if r.get("failures") or r.get("idle_failures")]
    if failed:
        print(f"faktory-py bench: failures in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
