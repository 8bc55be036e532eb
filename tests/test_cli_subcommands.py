"""`faktory-py --help` names the subcommands (check-config's own tests are in
tests/features/test_throttles_config.py), and `faktory-py bench` without hiredis (the
`loadgen` extra, not a runtime dependency) says what to install instead of a traceback.
The server processes the tests start run this checkout's code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import faktory_py
from faktory_py.tools import processes


@pytest.mark.timeout(60)
def test_help_lists_the_subcommands() -> None:
    proc = subprocess.run([sys.executable, "-m", "faktory_py", "--help"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "faktory-py conformance --url" in proc.stdout
    assert "faktory-py bench --url" in proc.stdout
    assert "faktory-py check-config -c DIR" in proc.stdout
    assert "--max-connections" in proc.stdout  # the server's own flags are still there


@pytest.mark.timeout(60)
def test_check_config_has_its_own_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "faktory_py", "check-config", "--help"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: faktory-py check-config")


@pytest.mark.timeout(60)
def test_server_processes_run_this_checkout() -> None:
    """`python -m faktory_py` in FaktoryPy's directory imports the package under test, not an
    installed copy (else every test over a server process would test other code)."""
    code = "import faktory_py; print(faktory_py.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          cwd=processes.FaktoryPy.cwd)
    assert Path(proc.stdout.strip()).resolve() == Path(faktory_py.__file__).resolve(), proc.stderr
