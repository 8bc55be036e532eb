"""Servers as child processes, for the tests, the benchmarks and conformance runs.

`FaktoryPy` runs `python -m faktory_py` from this package; `RealFaktory` runs the real `faktory`
binary, which starts its own `redis-server` on a unix socket in its data directory. Each gets a
free loopback port, its own data and config dirs under `base`, and a log file (`base/server.log`):

    server = FaktoryPy(base, password="pw", args=("--fsync", "always"))
    server.start()                      # returns once the port greets with "+HI"
    ... server.url, server.port, server.proc ...
    server.stop()                       # SIGTERM; kill() is the crash
    server.cleanup()                    # whatever is still running is killed

The process inherits the environment minus FAKTORY_* settings that would change it (the
password comes from `password=`), plus `env=`, applied last. Used by tests/conftest.py,
tests/helpers/real_faktory.py and bench/servers.py.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

FAKTORY_VERSION = os.environ.get("FAKTORY_VERSION") or "1.9.4"

# Faktory puts Redis's unix socket at <data dir>/redis.sock; sun_path holds 107 bytes.
_MAX_SOCKET_PATH = 100
_SCRUBBED_ENV = ("FAKTORY_PASSWORD", "FAKTORY_ENV", "FAKTORY_SKIP_PASSWORD", "FAKTORY_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cache_dir() -> Path:
    """Where tests/run.sh and the bench keep built tools: $FAKTORY_PY_CACHE or ~/.cache/faktory_py."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("FAKTORY_PY_CACHE") or cache / "faktory_py")


def default_faktory_bin() -> Path:
    return cache_dir() / "bin" / f"faktory-{FAKTORY_VERSION}"


def find_faktory_bin() -> tuple[str | None, str]:
    """(path, "") if the real Faktory can run here ($FAKTORY_BIN or the cached build), else (None, why not)."""
    configured = os.environ.get("FAKTORY_BIN")
    path = Path(configured) if configured else default_faktory_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        if configured:
            return None, f"FAKTORY_BIN={configured} is not an executable file"
        return None, (f"real Faktory not installed: FAKTORY_BIN is not set and {path} does not exist "
                      "(tests/run.sh builds it)")
    if shutil.which("redis-server") is None:
        return None, "redis-server is not on PATH (the real Faktory starts its own Redis)"
    return str(path), ""


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return kids


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie nobody reaps counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


class ServerProcess:
    """A server on 127.0.0.1:`port`, with its own dirs under `base`; subclasses give `command()`."""

    name = "server"
    is_real_faktory = False
    cwd: Path | None = None  # working directory of the process
    start_timeout = 15.0  # seconds `start()` waits for the greeting by default

    def __init__(self, base: Path, password: str | None = None, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.data_dir = base / "data"
        self.conf_dir = base / "conf"
        self.conf_dir.mkdir(exist_ok=True)
        self.password = password
        self.args = args  # extra command-line arguments, after the standard ones
        self.env = dict(env or {})  # extra environment variables, applied last
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = base / "server.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"tcp://{auth}127.0.0.1:{self.port}"

    @property
    def tls(self) -> bool:
        """Both PEM files in the config dir: the command port speaks TLS."""
        return (self.conf_dir / "public.cert.pem").exists() and (self.conf_dir / "private.key.pem").exists()

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        if self.password:
            env["FAKTORY_PASSWORD"] = self.password
        env.update(self.env)
        return env

    def spawn(self) -> None:
        """Start the process without waiting for it."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         env=self.environment(), stdin=subprocess.DEVNULL, cwd=self.cwd)

    def start(self, timeout: float | None = None) -> None:
        """Spawn, then wait until the port greets with "+HI" (a TLS port: accepts)."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    # A TLS port says nothing until the client's TLS hello: accepting is enough.
                    if self.tls or s.recv(3) == b"+HI":
                        self.started()
                        return
            except OSError:
                time.sleep(0.01)
        self.shutdown(10)
        raise RuntimeError(f"{self.name} server did not start:\n{self.log_text()}")

    def started(self) -> None:
        """Hook: the server answers."""

    def log_text(self, limit: int = 20_000) -> str:
        """The end of the server's log, for error messages."""
        return self.log.read_text(errors="replace")[-limit:]

    def pids(self) -> list[int]:
        """The processes that make up the server (for memory measurements)."""
        assert self.proc is not None
        return [self.proc.pid]

    def kill(self) -> None:
        """SIGKILL: nothing gets flushed or closed cleanly."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` (if still running) and return the exit status; TimeoutExpired if it lingers."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def shutdown(self, timeout: float = 60.0) -> None:
        """A graceful stop, or SIGKILL after `timeout`; nothing if never started."""
        if self.proc is None:
            return
        try:
            self.stop(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def cleanup(self) -> None:
        """Kill whatever is still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


class FaktoryPy(ServerProcess):
    """`python -m faktory_py`, this very package; with `web=True` its web UI on `web_url`."""

    name = "faktory_py"
    #: the checkout this module is in (faktory_py/tools/ → its root), so `-m faktory_py`
    #: runs this very code, not whatever faktory_py is installed
    cwd = Path(__file__).resolve().parents[2]

    def __init__(self, base: Path, password: str | None = None, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, web: bool = False) -> None:
        super().__init__(base, password, args, env)
        # Off unless asked for: the web UI adds start-up time most servers here never use.
        self.web_port = free_port() if web else None

    @property
    def web_url(self) -> str:
        assert self.web_port is not None, "started without web=True"
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.web_port}"

    def pids(self) -> list[int]:
        """The server and its connection processes (`--io-processes`), if any."""
        assert self.proc is not None
        return [self.proc.pid, *_children(self.proc.pid)]

    def command(self) -> list[str]:
        web = f"127.0.0.1:{self.web_port}" if self.web_port else "0"
        return [sys.executable, "-m", "faktory_py", "-b", f"127.0.0.1:{self.port}", "-w", web,
                "-e", "development", "-d", str(self.data_dir), "-c", str(self.conf_dir), "-l", "info", *self.args]


class RealFaktory(ServerProcess):
    """The real `faktory` binary (see `find_faktory_bin`), and the Redis it starts."""

    is_real_faktory = True
    version = FAKTORY_VERSION
    name = f"faktory-{FAKTORY_VERSION}"

    def __init__(self, base: Path, binary: str, password: str | None = None, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        super().__init__(base, password, args, env)
        self.binary = binary
        self._short_dir: Path | None = None
        if len(str(self.data_dir / "redis.sock")) > _MAX_SOCKET_PATH:
            self._short_dir = Path(tempfile.mkdtemp(prefix="fk-", dir="/tmp"))
            self.data_dir = self._short_dir / "data"
        self.redis_pid: int | None = None

    def command(self) -> list[str]:
        # -w 127.0.0.1:0: the Web UI must bind somewhere; port 0 never collides.
        return [self.binary, "-b", f"127.0.0.1:{self.port}", "-w", "127.0.0.1:0", "-e", "development",
                "-d", str(self.data_dir), "-c", str(self.conf_dir), "-l", "info", *self.args]

    def started(self) -> None:
        assert self.proc is not None
        kids = _children(self.proc.pid)
        self.redis_pid = kids[0] if kids else None

    def pids(self) -> list[int]:
        if self.redis_pid is None:
            raise RuntimeError("Faktory's Redis process was not found")
        return [*super().pids(), self.redis_pid]

    def _wait_redis(self, timeout: float = 10.0) -> None:
        """Faktory's Redis outlives it briefly (saving its RDB); a restart on the same dir must not find it."""
        deadline = time.monotonic() + timeout
        while self.redis_pid is not None and not gone(self.redis_pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.redis_pid = None

    def _signal_redis(self, sig: int) -> None:
        if self.redis_pid is not None and not gone(self.redis_pid):
            try:
                os.kill(self.redis_pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL Faktory and its Redis: a crash of the whole server (Redis loses unsaved writes)."""
        self._signal_redis(signal.SIGKILL)
        super().kill()
        self._wait_redis()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        rc = super().stop(sig, timeout)
        self._wait_redis(timeout)
        return rc

    def cleanup(self) -> None:
        super().cleanup()
        if self.redis_pid is not None:  # Faktory died (e.g. a panic) and left its Redis behind
            self._signal_redis(signal.SIGTERM)
            self._wait_redis()
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)


class RedisServer:
    """A `redis-server` on a free loopback port with its own directory, as the op log wants it
    (`appendonly yes`, `noeviction`; protocol/spec.md §7.1), stopped by its PID; `extra` are
    more command-line options (e.g. `--replicaof HOST PORT`). Used by tests/helpers/redis.py
    and bench/servers.py (the `faktory_py-redis` server)."""

    def __init__(self, base: Path, *extra: str) -> None:
        self.dir = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Spawn, then wait until it answers PING; RuntimeError when redis-server is missing."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (tests/run.sh installs it)")
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen([binary, *self.arguments()], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()[-2000:]}")
            if self.command("PING") == "PONG":
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING")

    def arguments(self) -> list[str]:
        """redis-server's command line after the binary (a Sentinel's differs)."""
        return ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--appendonly", "yes",
                "--maxmemory-policy", "noeviction", "--save", "", "--unixsocket", "", *self.extra]

    def command(self, *args: str) -> str | None:
        """Send one command; the first line of the reply without its type byte, or None
        when Redis does not answer (yet)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(_resp(args))
                return s.recv(65536).decode(errors="replace").split("\r\n", 1)[0].lstrip("+:$-")
        except OSError:
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _resp(args: tuple[str, ...]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


S = TypeVar("S", bound=ServerProcess)


def factory(make: Callable[..., S], base: Path, prefix: str, **extra: Any) -> Iterator[Callable[..., S]]:
    """A fixture body (`yield from factory(...)`): yields `new(password=None, args=(), start=True,
    env=None)`, which makes (and starts) `make(base / f"{prefix}<n>", ..., **extra)`; afterwards
    cleans up every server it made."""
    made: list[S] = []

    def new(password: str | None = None, args: tuple[str, ...] = (), start: bool = True,
            env: dict[str, str] | None = None) -> S:
        server = make(base / f"{prefix}{len(made)}", password=password, args=args, env=env, **extra)
        made.append(server)
        if start:
            server.start()
        return server

    yield new
    for server in made:
        server.cleanup()
