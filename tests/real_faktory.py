"""The real Faktory server as a test fixture, so protocol cases can be checked against it too.

`RealFaktory` mirrors conftest.ServerProcess (same attributes and methods), so a test written
against one works against the other. The binary comes from `FAKTORY_BIN`, which tests/run.sh
exports after building it (default: ~/.cache/faktory_py/bin/faktory-<version>). Faktory needs
`redis-server` on PATH: it starts its own Redis on a unix socket in its storage directory.

Fixtures (registered in conftest.py):
* `real_faktory_factory(password=None, args=(), start=True, env=None)` -> RealFaktory
* `any_server_factory` / `any_server`: parametrized over ["faktory_py", "faktory-<version>"],
  giving our server (conftest.ServerProcess) or the real one. `getattr(server,
  "is_real_faktory", False)` tells them apart.

Without a binary (or redis-server) the real-Faktory tests skip, except under CI=true, where
they fail: CI must really run them.

Known hazards of Faktory 1.9.4 (see protocol/real-faktory-notes.md): a command that panics
(`ACK`, `PUSH`, `QUEUE PAUSE` ... without arguments) kills the whole server, and a PUSH with
an explicit "retry" changes the default retry of every later PUSH on that server process.
Function-scoped fixtures (a fresh server per test) keep that from leaking between tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rawclient import RawClient

REAL_FAKTORY_VERSION = os.environ.get("FAKTORY_VERSION") or "1.9.4"
REAL_FAKTORY_PARAM = f"faktory-{REAL_FAKTORY_VERSION}"
OUR_SERVER_PARAM = "faktory_py"

# Faktory puts Redis's unix socket at <storage dir>/redis.sock; sun_path holds 107 bytes.
_MAX_SOCKET_PATH = 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_faktory_bin() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("FAKTORY_PY_CACHE") or cache / "faktory_py") / "bin" / f"faktory-{REAL_FAKTORY_VERSION}"


def find_faktory_bin() -> tuple[str | None, str]:
    """(path, "") if the real Faktory can run here, else (None, why not)."""
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


def require_faktory_bin() -> str:
    """The binary, or skip the test (pytest.fail under CI=true, where it must be there)."""
    path, why = find_faktory_bin()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {why}", pytrace=False)
        pytest.skip(why)
    return path


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
    """True once `pid` has exited (a zombie nobody reaps counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


class RealFaktory:
    """The real `faktory` binary on a free loopback port, with its own storage and config dirs."""

    is_real_faktory = True
    version = REAL_FAKTORY_VERSION

    def __init__(self, base: Path, binary: str, password: str | None = None, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.base = base
        self.binary = binary
        base.mkdir(parents=True, exist_ok=True)
        self.data_dir = base / "data"
        self._short_dir: Path | None = None
        if len(str(self.data_dir / "redis.sock")) > _MAX_SOCKET_PATH:
            self._short_dir = Path(tempfile.mkdtemp(prefix="fk-", dir="/tmp"))
            self.data_dir = self._short_dir / "data"
        self.conf_dir = base / "conf"
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.args = args
        self.env = dict(env or {})  # extra environment variables, applied last
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.redis_pid: int | None = None
        self.log = base / "server.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"tcp://{auth}127.0.0.1:{self.port}"

    @property
    def tls(self) -> bool:
        return (self.conf_dir / "public.cert.pem").exists() and (self.conf_dir / "private.key.pem").exists()

    def start(self, timeout: float = 15.0) -> None:
        env = dict(os.environ)
        for key in ("FAKTORY_PASSWORD", "FAKTORY_ENV", "FAKTORY_SKIP_PASSWORD"):
            env.pop(key, None)
        if self.password:
            env["FAKTORY_PASSWORD"] = self.password
        env.update(self.env)
        # -w 127.0.0.1:0: the Web UI must bind somewhere; port 0 never collides.
        cmd = [self.binary, "-b", f"127.0.0.1:{self.port}", "-w", "127.0.0.1:0", "-e", "development",
               "-d", str(self.data_dir), "-c", str(self.conf_dir), "-l", "info", *self.args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"faktory exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if self.tls or s.recv(3) == b"+HI":
                        kids = _children(self.proc.pid)
                        self.redis_pid = kids[0] if kids else None
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"faktory did not start:\n{self.log.read_text()}")

    def client(self) -> RawClient:
        return RawClient(self.port)

    def _wait_redis(self, timeout: float = 10.0) -> None:
        """Faktory's Redis outlives it briefly; a restart on the same dir must not find it."""
        if self.redis_pid is None:
            return
        deadline = time.monotonic() + timeout
        while not _gone(self.redis_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.redis_pid = None

    def kill(self) -> None:
        """SIGKILL Faktory and its Redis: a crash of the whole server (Redis loses unsaved writes)."""
        assert self.proc is not None
        if self.redis_pid is not None and not _gone(self.redis_pid):
            try:
                os.kill(self.redis_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait(10)
        self._wait_redis()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self._wait_redis(timeout)
        return rc

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        elif self.redis_pid is not None and not _gone(self.redis_pid):
            try:  # Faktory died (e.g. a panic) and left its Redis behind
                os.kill(self.redis_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._wait_redis()
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)


def _real_factory(base: Path, binary: str) -> Iterator:
    started: list[RealFaktory] = []

    def make(password: str | None = None, args: tuple[str, ...] = (), start: bool = True,
             env: dict[str, str] | None = None) -> RealFaktory:
        server = RealFaktory(base / f"faktory{len(started)}", binary, password, args, env)
        started.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture
def real_faktory_factory(tmp_path: Path) -> Iterator:
    """Make (and afterwards stop) real Faktory servers: `real_faktory_factory(password=...)`."""
    yield from _real_factory(tmp_path, require_faktory_bin())


@pytest.fixture(params=[OUR_SERVER_PARAM, REAL_FAKTORY_PARAM])
def any_server_factory(request: pytest.FixtureRequest):
    """`server_factory` or `real_faktory_factory`: call it with `password=...` (and `start=`)."""
    if request.param == OUR_SERVER_PARAM:
        return request.getfixturevalue("server_factory")
    return request.getfixturevalue("real_faktory_factory")


@pytest.fixture
def any_server(any_server_factory):
    """A running server without a password: ours, then the real Faktory (test ids
    `[faktory_py]` and `[faktory-1.9.4]`)."""
    return any_server_factory()
