"""What the run was measured on: CPU, memory, kernel, versions, and how busy the machine was."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any


def _first(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return None


def _version(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None and not os.path.isfile(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else None


def load_average() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def filesystem(path: Path) -> str | None:
    """The mount (device, type) holding `path`: fsync costs depend on it."""
    best = ("", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            if str(path.resolve()).startswith(mount.rstrip("/") + "/") or str(path.resolve()) == mount:
                if len(mount) >= len(best[0]):
                    best = (mount, f"{kind} ({device}) at {mount}")
    except OSError:
        return None
    return best[1] or None


def describe(workdir: Path, faktory_bin: str | None) -> dict[str, Any]:
    def pkg(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    mem_kb = _first("/proc/meminfo", "MemTotal")
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(int(mem_kb.split()[0]) / 1024 / 1024, 1) if mem_kb else None,
        "os": _first("/etc/os-release", "PRETTY_NAME=") or platform.system(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "trio": pkg("trio"),
        "hiredis": pkg("hiredis"),
        "faktory": _version([faktory_bin, "-v"]) if faktory_bin else None,
        "redis": _version(["redis-server", "--version"]),
        "workdir_filesystem": filesystem(workdir),
        "load_average_start": load_average(),
    }


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (not idle or waiting on I/O) since boot."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and every child it has waited for (servers, generators,
    and their own children such as Faktory's Redis)."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def load_cpu() -> int | None:
    """The CPU the pinned rows keep the load generator on: the last this process may use; None
    with fewer than two (nothing would be left to the servers alone)."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1] if len(cpus) > 1 else None


def pinned_to(cpu: int | None) -> Callable[[], None] | None:
    """A `preexec_fn` that keeps a load generator (and the processes it starts, which inherit
    the mask) on `cpu`; None leaves it free on every CPU."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})
