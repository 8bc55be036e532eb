"""Go programs the tests and the bench run (the Go conformance scenarios, bench's worker fleet),
built once per digest of their sources and cached outside the repository.

`build(source, name, test=...)` returns the binary's path, or None with the reason it cannot be
built (no Go, a failed build). The cache key covers everything the binary depends on: the Go
sources, go.mod/go.sum and the Go version, so worktrees with different sources (the cache is
shared by every checkout on a machine) never run each other's build; a lock file makes
concurrent callers build once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from .processes import cache_dir

BUILD_TIMEOUT = 600.0  # the first build downloads the modules and compiles them


def find_go() -> str | None:
    """`go` on PATH, or the official tarball's /usr/local/go/bin/go."""
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    return str(fallback) if fallback.is_file() and os.access(fallback, os.X_OK) else None


def source_digest(go: str, source: Path) -> str:
    """Everything a binary built from `source` depends on: its Go files, the module pins, the toolchain."""
    digest = hashlib.sha256()
    digest.update(subprocess.run([go, "version"], capture_output=True, text=True, timeout=60).stdout.encode())
    for path in sorted(source.glob("*.go")) + [source / "go.mod", source / "go.sum"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build(source: Path, name: str, test: bool = False, log=print,  # type: ignore[no-untyped-def]
          cached_only: bool = False) -> tuple[Path | None, str]:
    """(binary, "") for the Go package in `source`, built into cache_dir()/`name`/ unless a build
    of the same digest is there; `test=True` compiles its tests (`go test -c`) instead.
    (None, why) when it cannot be built, or with `cached_only` when it is not built yet."""
    go = find_go()
    if go is None:
        return None, "`go` is not on PATH (nor /usr/local/go/bin/go)"
    directory = cache_dir() / name
    directory.mkdir(parents=True, exist_ok=True)
    try:
        digest = source_digest(go, source)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"`go version` failed: {exc}"
    binary = directory / f"{name}-{digest[:16]}{'.test' if test else ''}"
    with open(directory / "build.lock", "w") as lock:  # one builder at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return binary, ""
        if cached_only:
            return None, f"{name} is not built yet"
        command = [go, "test", "-c", "-o", str(binary), "./"] if test else [go, "build", "-o", str(binary), "."]
        started = time.monotonic()
        try:
            result = subprocess.run(command, cwd=source, env=dict(os.environ, GOFLAGS="-mod=readonly"),
                                    capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(command[1:3])}` took longer than {BUILD_TIMEOUT:.0f} s"
        if result.returncode != 0 or not binary.is_file():
            return None, f"`{' '.join(command[1:3])}` exited {result.returncode}:\n{result.stdout}{result.stderr}"
        log(f"built {binary} in {time.monotonic() - started:.1f} s")
    return binary, ""
