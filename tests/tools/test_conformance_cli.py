"""`faktory-py conformance`: the protocol cases as a command users run against any server.

Runs `python -m faktory_py conformance --url ...` as a subprocess against our server, a
password-protected one, the real Faktory, and directories of made-up cases; checks the table,
the summary line and the exit status. Also checks that the wheel would carry the cases
(pyproject.toml's package list).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import trustme

from faktory_py.tools.conformance import runner as conformance
from helpers import ROOT


def case_files() -> list[Path]:
    return sorted((ROOT / "protocol" / "cases").glob("*.case"))

ROW = re.compile(r"^(\S+\.case)\s+(PASS|FAIL|SKIP)\s+(\d+\.\d\ds|-)(?:\s+(.*))?$")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")


def run_cli(*args: str, timeout: float = 300) -> tuple[int, dict[str, tuple[str, str]], str, str]:
    """(exit status, {case: (status, detail)}, summary line, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "faktory_py", "conformance", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.splitlines()
    rows = {}
    for line in lines[1:-1]:
        m = ROW.match(line)
        assert m, f"not a table row: {line!r}\n{proc.stdout}"
        rows[m.group(1)] = (m.group(2), m.group(4) or "")
    summary = lines[-1] if lines else ""
    if rows:
        assert lines[0].split() == ["case", "result", "time", "detail"], proc.stdout
        m = SUMMARY.match(summary)
        assert m, proc.stdout
        counts = [sum(s == want for s, _ in rows.values()) for want in ("PASS", "FAIL", "SKIP")]
        assert [int(g) for g in m.groups()] == counts, proc.stdout
    return proc.returncode, rows, summary, proc.stderr


def _by_status(rows: dict[str, tuple[str, str]], status: str) -> set[str]:
    return {name for name, (s, _) in rows.items() if s == status}


def test_all_pass_against_faktory_py(server_factory) -> None:
    server = server_factory()
    rc, rows, summary, err = run_cli("--url", server.url)
    assert rc == 0, (summary, rows, err)
    cases = case_files()
    assert set(rows) == {p.name for p in cases}
    assert not _by_status(rows, "FAIL")
    plain = {p.name for p in cases if len(p.name.split(".")) == 2 and not conformance.parse_case(p).require_password}
    assert plain and plain <= _by_status(rows, "PASS")
    for name, (status, detail) in rows.items():
        if status == "SKIP":
            assert detail.startswith("needs "), (name, detail)
    assert rows["handshake-password.case"] == ("SKIP", "needs a password-protected server (tcp://:PASSWORD@host:port)")
    assert rows["limits.ours.case"][0] == "SKIP" and "--ours" in rows["limits.ours.case"][1]


def test_ours_cases_opt_in(server_factory) -> None:
    server = server_factory()
    rc, rows, summary, err = run_cli("--url", server.url, "--ours", "-k", ".ours.")
    assert rc == 0, (summary, rows, err)
    assert set(rows) == {p.name for p in case_files() if ".ours." in p.name}
    # Needs its own server with --max-connections 2: never run against a URL.
    assert rows["connections.ours.case"] == ("SKIP", "needs its own faktory_py started with --max-connections 2")
    assert _by_status(rows, "PASS") == set(rows) - {"connections.ours.case"}


def test_password_server(server_factory) -> None:
    server = server_factory(password="hunter 2")
    rc, rows, summary, err = run_cli("--url", server.url.replace("hunter 2", "hunter%202"), "-k", "handshake")
    assert rc == 0, (summary, rows, err)
    assert rows == {"handshake-password.case": ("PASS", ""),
                    "handshake.case": ("SKIP", "needs a server without a password")}
    # Without the password in the URL nothing can run: a usage error, not a table.
    rc, rows, summary, err = run_cli("--url", f"tcp://127.0.0.1:{server.port}")
    assert rc == 2 and not rows
    assert "asks for a password" in err


def test_real_faktory(real_faktory_factory) -> None:
    server = real_faktory_factory()
    rc, rows, summary, err = run_cli("--url", server.url)
    assert rc == 0, (summary, rows, err)
    assert not _by_status(rows, "FAIL")
    cases = case_files()
    assert {p.name for p in cases if ".ours." in p.name} <= _by_status(rows, "SKIP")
    assert {p.name for p in cases if ".ent." in p.name} <= _by_status(rows, "SKIP")
    assert _by_status(rows, "PASS") >= {"push.case", "fetch-ack.case", "mutate.case", "info.case"}


def test_failing_case_exits_1(server_factory, tmp_path: Path) -> None:
    server = server_factory()
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "good.case").write_text("HANDSHAKE\nC: INFO\\r\\n\nS$ json-subset {\"server\":{}}\n")
    (cases / "bad.case").write_text("# the reply to FLUSH is +OK, not +NOPE\nHANDSHAKE\nC: FLUSH\\r\\n\nS: +NOPE\\r\\n\n")
    (cases / "x.ent.case").write_text("HANDSHAKE\n")
    (cases / "y.ours.case").write_text("HANDSHAKE\n")
    (cases / "z.oss.case").write_text("HANDSHAKE\n")
    rc, rows, summary, err = run_cli("--url", server.url, "--cases", str(cases), "--no-ent")
    assert rc == 1, (summary, rows, err)
    assert summary == "2 passed, 1 failed, 2 skipped"
    assert rows["bad.case"] == ("FAIL", r"line 4 (S: +NOPE\r\n): expected b'+NOPE\r\n', got b'+OK\r\n'")
    assert rows["good.case"] == ("PASS", "")
    assert rows["x.ent.case"] == ("SKIP", "needs Faktory Enterprise (--ent)")
    assert rows["z.oss.case"][0] == "PASS"
    # --ent runs the Enterprise cases and skips the OSS-only ones; -k picks files by name.
    rc, rows, summary, err = run_cli("--url", server.url, "--cases", str(cases), "--ent", "-k", ".")
    assert rc == 1 and rows["x.ent.case"] == ("PASS", "")
    assert rows["z.oss.case"] == ("SKIP", "needs Faktory without Enterprise (.oss case; --no-ent)")
    # Neither flag: Enterprise if INFO's server.description says so.
    enterprise = "Enterprise" in conformance.server_description(conformance.parse_url(server.url))
    rc, rows, summary, err = run_cli("--url", server.url, "--cases", str(cases))
    assert rc == 1 and rows["x.ent.case"][0] == ("PASS" if enterprise else "SKIP")
    assert rows["z.oss.case"][0] == ("SKIP" if enterprise else "PASS")
    assert ("--no-ent overrides" in err) == enterprise
    rc, rows, summary, err = run_cli("--url", server.url, "--cases", str(cases), "-k", "good")
    assert (rc, list(rows), summary) == (0, ["good.case"], "1 passed, 0 failed, 0 skipped")


def test_usage_errors(tmp_path: Path) -> None:
    rc, rows, _, err = run_cli("--url", "tcp://127.0.0.1:1")
    assert rc == 2 and not rows and "cannot talk to 127.0.0.1:1" in err
    rc, rows, _, err = run_cli("--url", "http://127.0.0.1:7419")
    assert rc == 2 and "unsupported URL scheme" in err
    rc, rows, _, err = run_cli("--url", "tcp://127.0.0.1:1", "--cases", str(tmp_path))
    assert rc == 2 and "no case files" in err
    rc, rows, _, err = run_cli("--url", "tcp://127.0.0.1:1", "--cases", str(tmp_path / "nope"))
    assert rc == 2 and "not a directory" in err
    rc, _, _, err = run_cli()
    assert rc == 2 and "--url" in err


def test_tls(server_factory, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = server_factory(start=False)
    cert.private_key_pem.write_to_path(str(server.conf_dir / "private.key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(server.conf_dir / "public.cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server.start()
    url = f"tcp+tls://127.0.0.1:{server.port}"
    rc, rows, summary, err = run_cli("--url", url, "--cafile", str(tmp_path / "ca.pem"), "-k", "push.case")
    assert (rc, rows) == (0, {"push.case": ("PASS", "")}), (summary, err)
    rc, rows, summary, err = run_cli("--url", url, "--insecure", "-k", "push.case")
    assert (rc, rows) == (0, {"push.case": ("PASS", "")}), (summary, err)
    rc, rows, summary, err = run_cli("--url", url, "-k", "push.case")
    assert rc == 2 and "CERTIFICATE_VERIFY_FAILED" in err


def test_parse_url() -> None:
    assert conformance.parse_url("tcp://localhost:7419") == conformance.Address("localhost", 7419)
    assert conformance.parse_url("tcp://:p%40ss@10.0.0.1") == conformance.Address("10.0.0.1", 7419, "p@ss")
    assert conformance.parse_url("tcp+tls://h:1").tls
    assert conformance.parse_url("127.0.0.1:9") == conformance.Address("127.0.0.1", 9)


def test_case_tags() -> None:
    case = conformance.Case(Path("unique.ours.ent.case"), [])
    assert (case.ours, case.enterprise, case.oss_only) == (True, True, False)
    assert conformance.skip_reason(case, ours=True, ent=True) is None
    assert conformance.skip_reason(case, ours=True, ent=False) == "needs Faktory Enterprise (--ent)"
    password = conformance.Case(Path("p.case"), [], require_password=True)
    assert conformance.skip_reason(password, ours=False, ent=False, starts_servers=True) is None
    assert conformance.skip_reason(password, ours=False, ent=False, server_has_password=True) is None


def test_cases_found_when_installed() -> None:
    """The default search finds the checkout's files, and pyproject.toml ships them in the wheel."""
    assert conformance.find_cases() == case_files()
    assert conformance.case_dirs()[0] == ROOT / "protocol" / "cases"
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"]["faktory_py.tools.conformance.cases"] == "protocol/cases"
    assert tool["package-data"]["faktory_py.tools.conformance.cases"] == ["*.case"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "faktory_py").rglob("__init__.py")}
    assert on_disk | {"faktory_py.tools.conformance.cases"} == set(tool["packages"]), (
        "pyproject.toml lists packages explicitly (for the cases mapping): add new subpackages there")
