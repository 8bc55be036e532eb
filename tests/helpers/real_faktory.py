"""The real Faktory server as a test fixture, so protocol cases can be checked against it too.

`RealFaktory` (faktory_py.processes.RealFaktory, plus a test client) mirrors helpers.servers.ServerProcess
(same attributes and methods), so a test written against one works against the other. The binary comes from `FAKTORY_BIN`, which tests/run.sh
exports after building it (default: ~/.cache/faktory_py/bin/faktory-<version>). Faktory needs
`redis-server` on PATH: it starts its own Redis on a unix socket in its storage directory.

Fixtures (registered in conftest.py):
* `real_faktory_factory(password=None, args=(), start=True, env=None)` -> RealFaktory
* `any_server_factory` / `any_server`: parametrized over ["faktory_py", "faktory-<version>"],
  giving our server (helpers.servers.ServerProcess) or the real one. `getattr(server,
  "is_real_faktory", False)` tells them apart.

Without a binary (or redis-server) the real-Faktory tests skip, except under CI=true, where
they fail: CI must really run them.

Known hazards of Faktory 1.9.4 (see protocol/real-faktory-notes.md): a command that panics
(`ACK`, `PUSH`, `QUEUE PAUSE` ... without arguments) kills the whole server, and a PUSH with
an explicit "retry" changes the default retry of every later PUSH on that server process.
Function-scoped fixtures (a fresh server per test) keep that from leaking between tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faktory_py.tools import processes
from faktory_py.tools.processes import find_faktory_bin
from helpers.rawclient import RawClient
from helpers.toolchain import Toolchain

REAL_FAKTORY_VERSION = processes.FAKTORY_VERSION
REAL_FAKTORY_PARAM = f"faktory-{REAL_FAKTORY_VERSION}"
OUR_SERVER_PARAM = "faktory_py"


def require_faktory_bin() -> str:
    """The binary, or skip the test (pytest.fail under CI=true, where it must be there)."""
    path, why = find_faktory_bin()
    return Toolchain("real Faktory", path=path or "", problem="" if path else why).require()


class RealFaktory(processes.RealFaktory):
    """The real `faktory` binary on a free loopback port, with its own storage and config dirs."""

    def client(self) -> RawClient:
        return RawClient(self.port)


@pytest.fixture
def real_faktory_factory(tmp_path: Path) -> Iterator:
    """Make (and afterwards stop) real Faktory servers: `real_faktory_factory(password=...)`."""
    yield from processes.factory(RealFaktory, tmp_path, "faktory", binary=require_faktory_bin())


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
