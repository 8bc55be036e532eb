"""faktory_py as a server process on 127.0.0.1 for a test, and the fixtures that make them.

The fixtures are registered in tests/conftest.py. Modules that share one server take them
under the usual names, e.g. `from helpers.servers import module_server as server,
emptied_client as client`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faktory_py.tools import processes
from helpers.rawclient import RawClient


class ServerProcess(processes.FaktoryPy):
    """`python -m faktory_py` in a subprocess, on a free loopback port, with its own dirs
    (faktory_py.processes.FaktoryPy, plus a test client)."""

    def client(self) -> RawClient:
        return RawClient(self.port)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """Make (and afterwards stop) server processes: `server_factory(password=..., args=(...), env={...})`."""
    yield from processes.factory(ServerProcess, tmp_path, "server")


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Like `server_factory`, but the servers live for the whole test module (saves start-ups)."""
    yield from processes.factory(ServerProcess, tmp_path_factory.mktemp("module"), "server")


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


@pytest.fixture(scope="module")
def module_server(module_server_factory) -> ServerProcess:
    """A running server without a password, shared by the whole test module."""
    return module_server_factory()


@pytest.fixture
def emptied_client(client: RawClient) -> RawClient:
    """`client`, on a server first emptied of jobs, counters and known queues."""
    assert client.command("FLUSH") == b"OK"
    assert client.command("QUEUE REMOVE *") == b"OK"
    return client
