"""Faktory's own load test (github.com/contribsys/faktory/test/load) as an independent check.

`go run github.com/contribsys/faktory/test/load@v1.9.4 JOBS THREADS` is the usual way, but it
asks the module proxy for the module's version list, which some proxies refuse (403). So,
like tests/run.sh does for the server: download the module at that version and build
./test/load inside it from its own go.mod/go.sum, once; the binary is cached next to the
Faktory binary (~/.cache/faktory_py/bin/faktory-load-VERSION).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from faktory_py.tools import gobuild
from faktory_py.tools.loadgen.pool import cpu_seconds

from .machine import pinned_to
from .servers import FAKTORY_VERSION, cache_dir

MODULE = "github.com/contribsys/faktory"
_DONE = re.compile(r"Processed (\d+) pushes and (\d+) pops in ([\d.]+) seconds, rate: ([\d.]+) jobs/s")


def cached_binary() -> Path:
    return cache_dir() / "bin" / f"faktory-load-{FAKTORY_VERSION}"


def build(log=print) -> Path | None:  # type: ignore[no-untyped-def]
    """The cached load-test binary, building it first if needed; None if it cannot be built."""
    binary = cached_binary()
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = gobuild.find_go()
    if go is None:
        log("Faktory's load tool: Go is not installed; skipped")
        return None
    log(f"building Faktory's load tool {FAKTORY_VERSION} (once; cached at {binary})")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = subprocess.run([go, "mod", "download", "-json", f"{MODULE}@v{FAKTORY_VERSION}"], cwd=tmp,
                                 capture_output=True, text=True, timeout=600, check=True)
            source = json.loads(out.stdout)["Dir"]
            binary.parent.mkdir(parents=True, exist_ok=True)
            partial = binary.with_name(binary.name + f".tmp{os.getpid()}")
            subprocess.run([go, "build", "-trimpath", "-o", str(partial), "./test/load"], cwd=source,
                           env={**os.environ, "GOFLAGS": "-mod=readonly"}, capture_output=True, text=True,
                           timeout=900, check=True)
            partial.replace(binary)
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            log(f"Faktory's load tool: build failed ({exc}) {detail.strip()[-500:]}; skipped")
            return None
    return binary


def run(binary: Path, url: str, jobs: int, threads: int, timeout: float, pids: list[int] | None = None,
        cpu: int | None = None) -> dict[str, Any]:
    """Run `load JOBS THREADS` against `url` (on CPU `cpu` only, if given); its own rate (jobs/s)
    and anything else it printed.

    Given the server's `pids` (Faktory: with its Redis), also the CPU seconds they used while
    the tool ran, and per 1,000 jobs (R4): each job is one PUSH, one FETCH and one ACK, by
    clients that wait for every reply, so this is what a server costs per job in real use
    whatever the machine's speed.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("FAKTORY_PROVIDER", "FAKTORY_PASSWORD")}
    env["FAKTORY_URL"] = url
    cpu_before = cpu_seconds(pids) if pids else None
    try:
        out = subprocess.run([str(binary), str(jobs), str(threads)], env=env, capture_output=True, text=True,
                             timeout=timeout, preexec_fn=pinned_to(cpu))
    except subprocess.TimeoutExpired:
        return {"jobs": jobs, "threads": threads, "failure": f"timed out after {timeout}s"}
    cpu_after = cpu_seconds(pids) if pids else None
    text = out.stdout + out.stderr
    match = _DONE.search(text)
    result: dict[str, Any] = {"jobs": jobs, "threads": threads}
    if match is None or out.returncode:
        result["failure"] = f"exit {out.returncode}: {text.strip()[-500:]}"
        return result
    noise = [line for line in text.splitlines() if line.strip() and not line.startswith(("Running loadtest", "Processed"))]
    result.update(pushes=int(match[1]), pops=int(match[2]), seconds=float(match[3]), jobs_per_s=float(match[4]),
                  errors=len(noise), error_sample=noise[:3])
    if cpu_before is not None and cpu_after is not None and result["pushes"]:
        result.update(server_cpu_s=cpu_after - cpu_before,
                      server_cores=(cpu_after - cpu_before) / result["seconds"] if result["seconds"] else None,
                      cpu_s_per_1000=1000 * (cpu_after - cpu_before) / result["pushes"])
    return result
