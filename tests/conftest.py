"""Shared fixtures: a real server process on 127.0.0.1, and an in-process one for MockClock tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rawclient import RawClient
from real_faktory import any_server, any_server_factory, real_faktory_factory  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m faktory_py` in a subprocess, on a free loopback port, with its own dirs."""

    def __init__(self, base: Path, password: str | None = None, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.conf_dir = base / "conf"
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.args = args
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
        return (self.conf_dir / "public.cert.pem").exists()

    def start(self, timeout: float = 15.0) -> None:
        env = dict(os.environ)
        env.pop("FAKTORY_PASSWORD", None)
        if self.password:
            env["FAKTORY_PASSWORD"] = self.password
        env.update(self.env)
        cmd = [sys.executable, "-m", "faktory_py", "-b", f"127.0.0.1:{self.port}", "-w", "127.0.0.1:0",
               "-d", str(self.data_dir), "-c", str(self.conf_dir), "-l", "info", *self.args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    # A TLS port says nothing until the client's TLS hello: accepting is enough.
                    if self.tls or s.recv(3) == b"+HI":
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def client(self) -> RawClient:
        return RawClient(self.port)

    def kill(self) -> None:
        """SIGKILL: nothing gets flushed or closed cleanly."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def _factory(base: Path) -> Iterator:
    started: list[ServerProcess] = []

    def make(password: str | None = None, args: tuple[str, ...] = (), start: bool = True,
             env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(base / f"server{len(started)}", password, args, env)
        started.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in started:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """Make (and afterwards stop) server processes: `server_factory(password=..., args=(...), env={...})`."""
    yield from _factory(tmp_path)


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Like `server_factory`, but the servers live for the whole test module (saves start-ups)."""
    yield from _factory(tmp_path_factory.mktemp("module"))


@pytest.fixture
def server(server_factory) -> ServerProcess:
    """A running server without a password."""
    return server_factory()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[RawClient]:
    """An identified producer connection to `server`."""
    with server.client() as c:
        assert c.handshake() == b"OK"
        yield c
