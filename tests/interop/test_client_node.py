"""Conformance matrix, Node column: the npm `faktory-worker` client (pinned 4.7.1) against our server.

The scenarios (protocol/clients.md §9) are JavaScript files under tests/interop/clients/node, one per
scenario, written for node's built-in test runner. Each pytest test here starts a fresh server,
runs one file with `node --test` and FAKTORY_URL pointing at it, and passes when node exits 0.

Scenarios the Node client cannot drive, so they have no file here:
  S5 queue control: the client has no QUEUE PAUSE/RESUME/REMOVE/LATENCY;
  S7 batches, S9 tracking/expiry: no BATCH or TRACK in the client.
S11 (INFO with throttles configured, A-T14's Node part) runs against a server whose conf.d holds
helpers.throttles' entries. S13: job dependencies with the client's own push (protocol/spec.md §14).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from helpers.throttles import configure_throttles
from helpers.toolchain import Toolchain

NODE_DIR = Path(__file__).resolve().parent / "clients" / "node"
CLIENT_PACKAGE = "faktory-worker"
CLIENT_VERSION = "4.7.1"
STAMP = NODE_DIR / "node_modules" / ".faktory_py-install-stamp"
INSTALL_TIMEOUT = 300.0
SCENARIO_TIMEOUT = 120.0

#: Scenarios whose server needs a password: their file gets FAKTORY_PASSWORD_URL as well.
NEEDS_PASSWORD_SERVER = {"s0_handshake.test.js"}
PASSWORD = "n0de s3cret/%"  # a space and URL-special characters: the client unescapes the URL

#: Scenario files whose server runs with helpers.throttles' conf.d (a concurrency, a worker and a
#: rate throttle), so their INFO carries faktory.throttles (protocol/spec.md §11.4).
THROTTLED = {"s11_throttled_info.test.js"}

#: Scenarios that fail because of a known gap in the server (strict: fixing it must drop the mark).
XFAIL: dict[str, str] = {}


def _scenario_files() -> list[str]:
    def number(name: str) -> int:
        match = re.match(r"s(\d+)_", name)
        return int(match.group(1)) if match else 1_000
    return sorted((p.name for p in NODE_DIR.glob("s*.test.js")), key=lambda n: (number(n), n))


def _scenario_id(name: str) -> str:
    number, _, rest = name.removesuffix(".test.js").partition("_")
    return f"{number.upper()}-{rest}"  # "S0-handshake"


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NODE_DIR / name).read_bytes())
    return digest.hexdigest()


def _installed_matches_lock(digest: str) -> bool:
    try:
        installed = json.loads((NODE_DIR / "node_modules" / CLIENT_PACKAGE / "package.json").read_text())
        return STAMP.read_text() == digest and installed.get("version") == CLIENT_VERSION
    except (OSError, ValueError):
        return False


def _install() -> Toolchain:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return Toolchain("Node client", problem="`node` and `npm` must be on PATH")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    match = re.match(r"v(\d+)\.(\d+)", version)
    if not match or (int(match.group(1)), int(match.group(2))) < (18, 19):
        return Toolchain("Node client", problem=f"node {version or '?'} is too old: node:test with --test-reporter needs 18.19+")
    digest = _lock_digest()
    with open(NODE_DIR / ".install.lock", "w") as lock:  # one installer at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed_matches_lock(digest):
            try:
                result = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                    capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
            except subprocess.TimeoutExpired:
                return Toolchain("Node client", problem=f"`npm ci` took longer than {INSTALL_TIMEOUT:.0f} s")
            if result.returncode != 0:
                return Toolchain("Node client", problem=f"`npm ci` exited {result.returncode}:\n{result.stdout}{result.stderr}")
            if not (NODE_DIR / "node_modules" / CLIENT_PACKAGE).is_dir():
                return Toolchain("Node client", problem=f"`npm ci` did not install {CLIENT_PACKAGE}")
            STAMP.write_text(digest)
    return Toolchain("Node client", path=node)


@pytest.fixture(scope="session")
def node_env() -> Toolchain:
    """`npm ci` in tests/interop/clients/node, once per session and only when node_modules is stale."""
    return _install()


def _run_node(node: str, scenario: str, env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.Popen(
        [node, "--test", "--test-reporter=spec", scenario], cwd=NODE_DIR, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=SCENARIO_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # node --test runs the file in a child process
        output, _ = proc.communicate()
        pytest.fail(f"node --test {scenario} still running after {SCENARIO_TIMEOUT:.0f} s:\n{output}",
                    pytrace=False)
    return proc.returncode, output


@pytest.mark.parametrize("scenario", [
    pytest.param(name, id=_scenario_id(name),
                 marks=[pytest.mark.xfail(reason=XFAIL[name], strict=True)] if name in XFAIL else [])
    for name in _scenario_files()
])
def test_node_client(scenario: str, node_env: Toolchain, server_factory) -> None:
    node = node_env.require()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKTORY_")}
    server = server_factory(start=False)
    if scenario in THROTTLED:
        configure_throttles(server)
    server.start()
    env.update(NO_COLOR="1", FAKTORY_URL=server.url)
    if scenario in NEEDS_PASSWORD_SERVER:
        protected = server_factory(password=PASSWORD)
        # The client takes the password from the URL and querystring-unescapes it.
        quoted = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in PASSWORD)
        env["FAKTORY_PASSWORD_URL"] = f"tcp://:{quoted}@127.0.0.1:{protected.port}"
    returncode, output = _run_node(node, scenario, env)
    assert returncode == 0, f"node --test {scenario} exited {returncode}:\n{output}"
    counts = dict(re.findall(r"^ℹ (tests|pass|fail) (\d+)$", output, re.MULTILINE))
    assert int(counts.get("tests", 0)) > 0 and counts.get("fail") == "0", f"no passing tests?\n{output}"


def test_every_scenario_file_is_collected() -> None:
    """A scenario file that does not match `sN_*.test.js` would silently never run."""
    stray = sorted(p.name for p in NODE_DIR.glob("*.test.js") if p.name not in _scenario_files())
    assert not stray, f"rename these to sN_<name>.test.js: {stray}"
    assert set(XFAIL) <= set(_scenario_files())
