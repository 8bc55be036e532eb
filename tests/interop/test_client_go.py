"""Conformance matrix, Go column: `github.com/contribsys/faktory/client` (v1.9.4) and
`faktory_worker_go` (v1.7.0) against our server.

The scenarios (protocol/clients.md §9) are Go tests in tests/interop/clients/go, one Test function per
scenario. The session fixture compiles them once with `go test -c` into a cache directory
outside the repo (faktory_py.tools.gobuild, which bench's worker fleet shares) (one binary per digest of the Go sources, go.mod/go.sum and the Go version);
each pytest test here starts a fresh server and runs that binary with
`-test.run '^TestSx...$'` and FAKTORY_URL pointing at it, and passes when it exits 0.

S7 (batches) runs three times: TestS7Batches against the default (strict) server, and
TestS7EnterpriseReopen — what the client's own Enterprise test expects: reopening committed
batches from outside — against a server configured `[batches] policy = "permissive"` (it must
all work) and against the strict default (it must be refused with the clear error); the
binary learns which from FAKTORY_BATCH_POLICY.

S11 (INFO with throttles configured, A-T14's Go part) runs against a server whose conf.d holds
helpers.throttles' entries. TestS12ThrottledWorkers and TestS12ThrottledManager (A-T15, the Go
client and faktory_worker_go) have a pytest test of their own: after each, the server's journal
must show that no more than 3 of its 200 jobs were ever reserved at once. So has
TestS14CronManager (B-T11: faktory_worker_go runs cron's jobs), against a server with a
`[[cron]]` entry.

S13 (job dependencies, protocol/spec.md §14) is the reference's C-T1 with the client's normal
Push and job.Custom, and C-T9's result sent through `Generic`.

Scenarios with no Go test yet: S8 unique jobs, S9 tracking/expiry.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from faktory_py.store.journal import Journal
from faktory_py.tools import gobuild
from helpers.servers import ServerProcess
from helpers.throttles import configure_throttles, hold_a_job, peak_reserved
from helpers.toolchain import Toolchain

GO_DIR = Path(__file__).resolve().parent / "clients" / "go"
SCENARIO_TIMEOUT = 120.0  # S6 alone needs ~32 s: FWG beats every 15 s, quiet and terminate take one beat each

#: scenario id → Go test function (each one runs alone against a fresh server).
SCENARIOS = {
    "S0-handshake": "TestS0Handshake",
    "S1-push_fetch_ack": "TestS1PushFetchAck",
    "S2-fail_retry": "TestS2FailRetry",
    "S3-scheduled": "TestS3Scheduled",
    "S4-push_bulk": "TestS4PushBulk",
    "S5-queue_control": "TestS5QueueControl",
    "S6-quiet_terminate": "TestS6QuietTerminate",
    "S7-batches": "TestS7Batches",
    "S7-enterprise_reopen-strict": "TestS7EnterpriseReopen",
    "S7-enterprise_reopen-permissive": "TestS7EnterpriseReopen",
    "S10-connections": "TestS10Connections",
    "S11-throttled_info": "TestS11ThrottledInfo",
    "S13-workflows": "TestS13Workflows",
}
#: Test functions that are not scenarios: the worker process S6 starts as a child.
HELPERS = {"TestS6WorkerProcess"}
#: Throttled workers (A-T15), the Go client's goroutines and a faktory_worker_go Manager: a pytest
#: test of their own below, which reads the server's journal afterwards.
THROTTLED_WORKERS = ("TestS12ThrottledWorkers", "TestS12ThrottledManager")
#: A faktory_worker_go Manager running cron's jobs (B-T11): a pytest test of its own below, which
#: configures the entry and reads the fires' outcomes from the journal afterwards.
CRON_WORKERS = ("TestS14CronManager",)
#: A producer and a Manager under kill -9 of an HA cluster's primary (issue 16): run by
#: tests/interop/test_takeover_load_go.py, which starts the cluster.
TAKEOVER_LOAD = "TestS15TakeoverLoad"

#: Scenarios whose binary gets FAKTORY_PASSWORD_URL, the URL of a second, password-protected server.
NEEDS_PASSWORD_SERVER = {"TestS0Handshake"}
PASSWORD = "g0 s3cret/%:@"  # URL-special characters: the client percent-decodes the userinfo

#: Scenarios that need a `[batches] policy` (written to the server's conf.d; exported as
#: FAKTORY_BATCH_POLICY); the others run against the default, strict.
BATCH_POLICY = {"S7-enterprise_reopen-strict": "strict", "S7-enterprise_reopen-permissive": "permissive"}

#: Scenarios whose server runs with helpers.throttles' conf.d (a concurrency, a worker and a rate
#: throttle), so their INFO carries faktory.throttles (protocol/spec.md §11.4).
THROTTLED = {"S11-throttled_info"}

#: Scenarios that fail because of a known gap in the server (strict: fixing it must drop the mark).
XFAIL: dict[str, str] = {}


def _build() -> Toolchain:
    binary, problem = gobuild.build(GO_DIR, "go-conformance", test=True)
    return Toolchain("Go client", path=str(binary or ""), problem=problem)


@pytest.fixture(scope="session")
def go_env() -> Toolchain:
    """The compiled scenario binary, built once per session and only when stale."""
    return _build()


def _run(binary: str, test_name: str, env: dict[str, str]) -> tuple[int, str]:
    cmd = [binary, f"-test.run=^{test_name}$", "-test.v",
           f"-test.timeout={SCENARIO_TIMEOUT - 10:.0f}s"]
    # A session of its own: S6 starts a child worker process that must die with it.
    proc = subprocess.Popen(cmd, cwd=GO_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=SCENARIO_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{test_name} still running after {SCENARIO_TIMEOUT:.0f} s:\n{output}", pytrace=False)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind
        except ProcessLookupError:
            pass
    # The client logs a deprecation line for every Info() call: noise in a failure report.
    output = "\n".join(line for line in output.splitlines() if "client.Info() is deprecated" not in line)
    return proc.returncode, output


def _passes(binary: str, test_name: str, server: ServerProcess, **env: str) -> None:
    """Run `test_name` against `server` (FAKTORY_URL, and `env`; no FAKTORY_ variable of the
    caller's environment) and check that it ran, and passed."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FAKTORY_")}, "FAKTORY_URL": server.url, **env}
    returncode, output = _run(binary, test_name, env)
    assert returncode == 0, f"{test_name} exited {returncode}:\n{output}"
    assert re.search(rf"^--- PASS: {test_name} ", output, re.MULTILINE), f"{test_name} did not run?\n{output}"
    assert "--- FAIL" not in output and "--- SKIP" not in output, output


@pytest.mark.parametrize("scenario, test_name", [
    pytest.param(scenario, name, id=scenario,
                 marks=[pytest.mark.xfail(reason=XFAIL[name], strict=True)] if name in XFAIL else [])
    for scenario, name in SCENARIOS.items()
])
def test_go_client(scenario: str, test_name: str, go_env: Toolchain, server_factory) -> None:
    binary = go_env.require()
    env: dict[str, str] = {}
    server = server_factory(start=False)
    policy = BATCH_POLICY.get(scenario)
    if policy is not None:
        env["FAKTORY_BATCH_POLICY"] = policy
        (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
        (server.conf_dir / "conf.d" / "batches.toml").write_text(f'[batches]\npolicy = "{policy}"\n')
    if scenario in THROTTLED:
        configure_throttles(server)
    server.start()
    if scenario in THROTTLED:
        hold_a_job(server)
    if test_name in NEEDS_PASSWORD_SERVER:
        protected = server_factory(password=PASSWORD)
        env["FAKTORY_PASSWORD_URL"] = f"tcp://:{quote(PASSWORD, safe='')}@127.0.0.1:{protected.port}"
    _passes(binary, test_name, server, **env)


@pytest.mark.parametrize("test_name", THROTTLED_WORKERS)
def test_go_workers_through_a_throttle(test_name: str, go_env: Toolchain, server_factory) -> None:
    """A-T15: 10 goroutines of one worker process work 200 jobs through `gated`, `concurrency =
    3`. The server's journal, replayed after a clean stop, shows every job reserved once and
    never more than 3 reserved at once — and 3 reached, so the throttle was what held them."""
    binary = go_env.require()
    server = server_factory(start=False)
    configure_throttles(server)
    server.start()
    _passes(binary, test_name, server)
    assert server.stop() == 0
    assert peak_reserved(server.data_dir, "gated") == (3, 200)


CRON = """
[[cron]]
  schedule = "* * * * * *"
  name = "s14"
  [cron.job]
    type = "S14Cron"
    queue = "cron"
    args = ["cron", 14]
"""


@pytest.mark.parametrize("test_name", CRON_WORKERS)
def test_go_workers_run_cron_jobs(test_name: str, go_env: Toolchain, server_factory) -> None:
    """B-T11, its Go part: a faktory_worker_go Manager receives the jobs of an every-second
    `[[cron]]` entry with their `custom._cron` mark and ACKs them; the journal, read after a
    clean stop, records each worked fire as `success`."""
    binary = go_env.require()
    server = server_factory(start=False)
    (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (server.conf_dir / "conf.d" / "cron.toml").write_text(CRON)
    server.start()
    _passes(binary, test_name, server)
    assert server.stop() == 0
    with Journal.open(server.data_dir) as journal:
        outcomes = [op["outcome"] for record in journal.replay() for op in record if op["op"] == "cron_outcome"]
    assert outcomes.count("success") >= 3 and set(outcomes) == {"success"}


def test_every_go_scenario_is_collected() -> None:
    """A Go Test function missing from SCENARIOS would silently never run."""
    found = set()
    for path in GO_DIR.glob("*_test.go"):
        found.update(re.findall(r"^func (Test\w+)\(t \*testing\.T\)", path.read_text(), re.MULTILINE))
    assert found - HELPERS - set(THROTTLED_WORKERS) - set(CRON_WORKERS) - {TAKEOVER_LOAD} == set(SCENARIOS.values())
    assert set(XFAIL) <= set(SCENARIOS.values())
