"""The servers a bench run starts and stops: faktory_py, the real Faktory (with its Redis), echo.

Launching, waiting and stopping are faktory_py.processes' (shared with the tests); this adds
what only the bench needs: `target` to connect to, and `restart()`, which stops the server
gracefully and times a fresh start on the same data until a FETCH returns a job. `pids()`
lists the processes whose memory counts (Faktory: itself and the Redis it starts).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from faktory_py.tools import processes
from faktory_py.tools.client import Address, parse_url
from faktory_py.tools.loadgen.conn import BenchError, Conn
from faktory_py.tools.processes import FAKTORY_VERSION, cache_dir, find_faktory_bin as find_faktory

__all__ = ["FAKTORY_VERSION", "Echo", "FaktoryPy", "FaktoryPyRedis", "RealFaktory", "Server", "cache_dir", "find_faktory"]

ROOT = Path(__file__).resolve().parent.parent


class Server(processes.ServerProcess):
    """A server a bench run uses once, in a directory of its own (removed by `cleanup()`)."""

    start_timeout = 60.0

    @property
    def target(self) -> Address:
        return parse_url(self.url)

    def restart(self, queue: str, timeout: float = 600.0) -> float:
        """Graceful stop, then seconds from spawning a fresh process to a FETCH from `queue`
        that returns a job (the server holding whatever it held before)."""
        self.shutdown()
        t0 = time.monotonic()
        self.spawn()
        assert self.proc is not None
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited on restart:\n{self.log_text(3000)}")
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
        super().cleanup()
        shutil.rmtree(self.base, ignore_errors=True)


class FaktoryPy(Server, processes.FaktoryPy):
    """`python -m faktory_py` from this checkout."""

    def __init__(self, base: Path, fsync: str | None = "everysec", throttles: str | None = None,
                 timings: bool = True, io_processes: int = 0) -> None:
        # 4096 connections: (f) holds 2,000 idle workers plus the load's own connections,
        # beyond faktory_py's default limit of 2,000 (Faktory has none). fsync None: the Redis
        # op log, where --fsync does not apply. io_processes: `--io-processes` (issue 15), whose
        # connection processes count in `pids()`.
        super().__init__(base, args=(*(("--fsync", fsync) if fsync else ()), "--max-connections", "4096",
                                     "--io-processes", str(io_processes)))
        self.fsync = fsync
        self.name = "faktory_py" if fsync == "everysec" else f"faktory_py-{fsync}"
        if io_processes:
            self.name += f"-io{io_processes}"
        if throttles is not None:  # a `[throttles]` TOML text, as conf.d/throttles.toml
            self._conf_file("throttles.toml", throttles)
        if not timings:  # what the command path's timings cost: the same server without them
            self.name += "-notimings"
            self._conf_file("metrics.toml", "[faktory_py.metrics]\ntimings = false\n")

    def _conf_file(self, name: str, text: str) -> None:
        (self.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "conf.d" / name).write_text(text)


class FaktoryPyRedis(FaktoryPy):
    """faktory_py with its op log in a Redis of its own (`--store redis://…`, issue 16): the
    harness starts a redis-server on a free port in the server's directory (`appendonly yes`,
    as the README's Redis backend asks; Redis's default `appendfsync everysec`), and both
    processes count in `pids()`, as Faktory's do."""

    def __init__(self, base: Path) -> None:
        super().__init__(base, fsync=None)
        self.name = "faktory_py-redis"
        self.redis = processes.RedisServer(base / "redis")
        self.args = (*self.args, "--store", f"{self.redis.url}?name=bench")

    def spawn(self) -> None:
        if self.redis.proc is None:
            self.redis.start()
        super().spawn()

    def pids(self) -> list[int]:
        assert self.redis.proc is not None
        return [*super().pids(), self.redis.proc.pid]

    def cleanup(self) -> None:
        try:
            self.redis.stop()
        finally:
            super().cleanup()


class RealFaktory(Server, processes.RealFaktory):
    """The real `faktory` binary; it starts its own redis-server on a unix socket in its data dir."""


class Echo(Server):
    """bench/echo_server.py: greets, then +OK to every line."""

    name = "echo"
    cwd = ROOT

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.echo_server", "--port", str(self.port)]
