"""Conformance matrix, Rust column: the crates.io `faktory` crate (pinned 0.13.1) against our server.

The scenarios (protocol/clients.md §9) live in one Rust binary, tests/interop/clients/rust (Cargo.toml
and Cargo.lock are committed): `conformance <scenario>` runs one scenario against FAKTORY_URL
and exits 0 when it passes. A session fixture builds it once (`cargo build --locked`, debug
profile) into a target directory outside the repo; each pytest test then starts a fresh server
and runs one scenario.

Under CI=true a missing toolchain or a failed build fails the tests; elsewhere they skip.

S7 (batches, src/batches.rs), S8 (unique jobs) and S9 (tracking, expiring jobs, src/ent_jobs.rs)
use the crate's `ent` feature. S7-REOPEN is the crate's own "reopen a committed batch from
outside" Enterprise test: it runs against a server configured `[batches] policy = "permissive"`
(it must pass) and against the strict default (the reopening must be refused with the clear
error); the binary learns which from FAKTORY_BATCH_POLICY. S11 (src/throttles.rs, A-T14's Rust part)
decodes INFO strictly with throttles configured (helpers.throttles' conf.d). S13 (src/workflows.rs)
is a 1 → 100 → 1 fan-out / fan-in with `custom.after` (C-T2), and S13-DESC a dependent reading its
upstream's progress desc as the result, on a server with `[faktory_py.results] from_track_desc`
(C-T10).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from faktory_py.tools import processes
from helpers.throttles import configure_throttles, hold_a_job
from helpers.toolchain import Toolchain

RUST_DIR = Path(__file__).resolve().parent / "clients" / "rust"
BUILD_TIMEOUT = 900.0  # a cold build (download + compile of ~130 crates) takes about a minute here
SCENARIO_TIMEOUT = 150.0  # the binary gives up by itself after 100 s

#: scenario argument -> test id suffix
SCENARIOS = {
    "s0": "handshake",
    "s1": "push_fetch_ack_info",
    "s2": "fail_retry_mutate",
    "s3": "scheduled",
    "s4": "push_bulk",
    "s5": "queue_control",
    "s6": "worker_quiet_terminate",
    "s7": "batches",
    "s7-reopen": "enterprise_reopen",
    "s8": "unique_jobs",
    "s9": "tracking_expiry",
    "s10": "connections",
    "s11": "throttled_info",
    "s13": "workflows_fan_in",
    "s13-desc": "result_from_track_desc",
}

#: Scenarios run once per `[batches] policy` (written to the server's conf.d, and exported as
#: FAKTORY_BATCH_POLICY); the others run once, against the default (strict).
BATCH_POLICIES = {"s7-reopen": ("strict", "permissive")}

#: Scenarios whose server runs with helpers.throttles' conf.d (a concurrency, a worker and a rate
#: throttle), so their INFO carries faktory.throttles (protocol/spec.md §11.4).
THROTTLED = {"s11"}

#: Scenarios whose server has `[faktory_py.results] from_track_desc = true` (protocol/spec.md §14.6).
RESULTS_FROM_DESC = {"s13-desc"}

#: Scenarios whose binary also gets FAKTORY_PASSWORD_URL, a second server with a password.
NEEDS_PASSWORD_SERVER = {"s0"}
#: The crate hashes the URL's password without percent-decoding it (url::Url::password()), so a
#: password that the URL would have to escape could never match: use unreserved characters only.
PASSWORD = "rust_s3cret.~-"

#: Scenarios that fail because of a known gap in the server (strict: fixing it must drop the mark).
XFAIL: dict[str, str] = {}


def _target_dir() -> Path:
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"])
    return processes.cache_dir() / "rust-target"


def _build() -> Toolchain:
    cargo = shutil.which("cargo")
    if not cargo:
        return Toolchain("Rust client", problem="`cargo` is not on PATH")
    target = _target_dir()
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    # `--locked`: build exactly what Cargo.lock says (faktory 0.13.1 and its dependencies).
    # Cargo locks the target directory itself, so concurrent sessions just wait for each other.
    try:
        result = subprocess.run(
            [cargo, "build", "--locked", "--bin", "conformance"], cwd=RUST_DIR, env=env,
            capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return Toolchain("Rust client", problem=f"`cargo build` took longer than {BUILD_TIMEOUT:.0f} s")
    if result.returncode != 0:
        return Toolchain("Rust client", problem=f"`cargo build` exited {result.returncode}:\n{result.stdout}{result.stderr}")
    binary = target / "debug" / "conformance"
    if not binary.is_file():
        return Toolchain("Rust client", problem=f"`cargo build` succeeded but {binary} is missing")
    return Toolchain("Rust client", path=str(binary))


@pytest.fixture(scope="session")
def rust_env() -> Toolchain:
    """`cargo build` of tests/interop/clients/rust, once per session (a no-op when up to date)."""
    return _build()


def _run(binary: str, scenario: str, env: dict[str, str]) -> tuple[int, str]:
    try:
        result = subprocess.run([binary, scenario], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=SCENARIO_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else (exc.output or "")
        pytest.fail(f"conformance {scenario} still running after {SCENARIO_TIMEOUT:.0f} s:\n{output}",
                    pytrace=False)
    return result.returncode, result.stdout


@pytest.mark.parametrize("scenario, policy", [
    pytest.param(name, policy, id=f"{name.upper()}-{label}" + (f"-{policy}" if policy else ""),
                 marks=[pytest.mark.xfail(reason=XFAIL[name], strict=True)] if name in XFAIL else [])
    for name, label in SCENARIOS.items()
    for policy in BATCH_POLICIES.get(name, (None,))
])
def test_rust_client(scenario: str, policy: str | None, rust_env: Toolchain, server_factory) -> None:
    binary = rust_env.require()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKTORY_")}
    server = server_factory(start=False)
    if policy is not None:
        env["FAKTORY_BATCH_POLICY"] = policy
        (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
        (server.conf_dir / "conf.d" / "batches.toml").write_text(f'[batches]\npolicy = "{policy}"\n')
    if scenario in THROTTLED:
        configure_throttles(server)
    if scenario in RESULTS_FROM_DESC:
        (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
        (server.conf_dir / "conf.d" / "results.toml").write_text("[faktory_py.results]\nfrom_track_desc = true\n")
    server.start()
    if scenario in THROTTLED:
        hold_a_job(server)
    env.update(RUST_BACKTRACE="1", FAKTORY_URL=server.url)
    if scenario in NEEDS_PASSWORD_SERVER:
        env["FAKTORY_PASSWORD_URL"] = server_factory(password=PASSWORD).url
    returncode, output = _run(binary, scenario, env)
    assert returncode == 0, f"conformance {scenario} exited {returncode}:\n{output}"
    assert f"PASS {scenario}" in output, f"no PASS line from conformance {scenario}:\n{output}"


def test_every_scenario_is_collected(rust_env: Toolchain) -> None:
    """The binary's scenario list and SCENARIOS above must agree, or one would silently never run."""
    binary = rust_env.require()
    listed = subprocess.run([binary, "--list"], capture_output=True, text=True, timeout=30).stdout.split()
    assert listed == list(SCENARIOS)
    assert set(XFAIL) <= set(SCENARIOS)
