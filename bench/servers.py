"""The servers a bench run starts and stops: faktory_py, the real Faktory (with its Redis), echo.

Each gets a free loopback port and a fresh directory. `pids()` lists the processes whose
memory counts (Faktory: itself and the Redis it starts); `restart()` stops the server
gracefully and times a fresh start on the same data until a FETCH returns a job.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from faktory_py.bench.conn import BenchError, Conn, Target

ROOT = Path(__file__).resolve().parent.parent
FAKTORY_VERSION = os.environ.get("FAKTORY_VERSION") or "1.9.4"
_MAX_SOCKET_PATH = 100  # Faktory's Redis socket lives in its data dir; sun_path holds 107 bytes


def cache_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("FAKTORY_PY_CACHE") or cache / "faktory_py")


def find_faktory() -> tuple[str | None, str]:
    """(binary, "") when the real Faktory can run here, else (None, why not)."""
    configured = os.environ.get("FAKTORY_BIN")
    path = Path(configured) if configured else cache_dir() / "bin" / f"faktory-{FAKTORY_VERSION}"
    if not (path.is_file() and os.access(path, os.X_OK)):
        return None, f"no Faktory binary at {path} (tests/run.sh builds it, or set FAKTORY_BIN)"
    if shutil.which("redis-server") is None:
        return None, "redis-server is not on PATH"
    return str(path), ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return kids


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


class Server:
    """A server process on 127.0.0.1:`port`; subclasses say how to start it."""

    name = "server"
    greets = True  # waits for "+HI" to call itself started

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.data_dir = base / "data"
        self.conf_dir = base / "conf"
        self.conf_dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = base / "server.log"

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def target(self) -> Target:
        return Target.parse(self.url)

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("FAKTORY_PASSWORD", "FAKTORY_ENV", "FAKTORY_URL"):
            env.pop(key, None)
        return env

    def spawn(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                         stdin=subprocess.DEVNULL, cwd=ROOT)

    def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    if s.recv(3) == b"+HI":
                        self.started()
                        return
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{self.name} did not start in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def started(self) -> None:
        """Hook: the server answers."""

    def pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid]

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self, queue: str, timeout: float = 600.0) -> float:
        """Graceful stop, then seconds from spawning a fresh process to a FETCH from `queue`
        that returns a job (the server holding whatever it held before)."""
        self.stop()
        t0 = time.monotonic()
        self.spawn()
        assert self.proc is not None
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited on restart:\n{self.log.read_text()[-3000:]}")
            try:
                conn = Conn(self.target, wid="bench-restart", timeout=deadline - time.monotonic())
            except (OSError, BenchError):  # not listening yet, or closed during the handshake
                time.sleep(0.005)
                continue
            try:
                job = conn.command(f"FETCH {queue}".encode())
            finally:
                conn.close()
            elapsed = time.monotonic() - t0
            if job is None:
                raise RuntimeError(f"{self.name}: FETCH after restart returned no job")
            self.started()
            return elapsed
        raise RuntimeError(f"{self.name} did not answer FETCH within {timeout}s of a restart")

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)


class FaktoryPy(Server):
    """`python -m faktory_py` from this checkout."""

    def __init__(self, base: Path, fsync: str = "everysec") -> None:
        super().__init__(base)
        self.fsync = fsync
        self.name = "faktory_py" if fsync == "everysec" else f"faktory_py-{fsync}"

    def command(self) -> list[str]:
        # 4096 connections: (f) holds 2,000 idle workers plus the load's own connections,
        # beyond faktory_py's default limit of 2,000 (Faktory has none).
        return [sys.executable, "-m", "faktory_py", "-b", f"127.0.0.1:{self.port}", "-w", "127.0.0.1:0",
                "-e", "development", "-d", str(self.data_dir), "-c", str(self.conf_dir), "-l", "info",
                "--fsync", self.fsync, "--max-connections", "4096"]


class RealFaktory(Server):
    """The real `faktory` binary; it starts its own redis-server on a unix socket in its data dir."""

    def __init__(self, base: Path, binary: str) -> None:
        super().__init__(base)
        self.binary = binary
        self.name = f"faktory-{FAKTORY_VERSION}"
        self._short: Path | None = None
        if len(str(self.data_dir / "redis.sock")) > _MAX_SOCKET_PATH:
            self._short = Path(tempfile.mkdtemp(prefix="fkb-", dir="/tmp"))
            self.data_dir = self._short / "data"
        self.redis_pid: int | None = None

    def command(self) -> list[str]:
        return [self.binary, "-b", f"127.0.0.1:{self.port}", "-w", "127.0.0.1:0", "-e", "development",
                "-d", str(self.data_dir), "-c", str(self.conf_dir), "-l", "info"]

    def started(self) -> None:
        assert self.proc is not None
        kids = _children(self.proc.pid)
        self.redis_pid = kids[0] if kids else None

    def pids(self) -> list[int]:
        if self.redis_pid is None:
            raise RuntimeError("Faktory's Redis process was not found")
        return [*super().pids(), self.redis_pid]

    def _wait_redis(self, timeout: float = 60.0) -> None:
        """Faktory's Redis outlives it briefly (saving its RDB); a restart must not find it."""
        deadline = time.monotonic() + timeout
        while self.redis_pid is not None and not _gone(self.redis_pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.redis_pid = None

    def stop(self, timeout: float = 60.0) -> None:
        super().stop(timeout)
        self._wait_redis(timeout)

    def cleanup(self) -> None:
        super().cleanup()
        if self.redis_pid is not None and not _gone(self.redis_pid):
            try:
                os.kill(self.redis_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_redis(10)
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)


class Echo(Server):
    """bench/echo_server.py: greets, then +OK to every line."""

    name = "echo"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.echo_server", "--port", str(self.port)]
