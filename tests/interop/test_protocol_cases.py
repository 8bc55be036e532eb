"""Replays the language-neutral conformance cases in protocol/cases/*.case.

One pytest test per case file and target (the `any_server_factory` fixture): `faktory_py`, a
fresh server process per file (password-protected for `REQUIRE password`, started with the
file's `SERVER` arguments), and `faktory-<version>`, a fresh real Faktory per file
(tests/helpers/real_faktory.py; skipped when the binary is missing, except under CI=true);
`test_protocol_case_on_redis` replays the same files against faktory_py with `--store redis://…`,
and `test_protocol_case_through_a_standby` through a hot standby of such a server: the client
talks to the standby, which forwards its connection to the primary it follows (protocol/spec.md §7.1).
`*.ours.case` files and files with `SERVER` lines never run against Faktory; `*.ent.case`
files need Faktory Enterprise: they run against faktory_py (which has the Enterprise
features built in) and are skipped against the open-source Faktory.

The interpreter is faktory_py/tools/conformance/runner.py (also `faktory-py conformance --url ...`, which
replays the same files against any running server); this module only parametrizes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from faktory_py.tools.client import Address
from faktory_py.tools.conformance import clients
from faktory_py.tools.conformance.runner import CaseFailure, json_match, parse_case, run_case, skip_reason, unescape
from helpers import ROOT
from helpers.rawclient import RawClient
from helpers.real_faktory import REAL_FAKTORY_PARAM
from helpers.redis import advertise, redis_conf

CASES = sorted((ROOT / "protocol" / "cases").glob("*.case"))
DEFAULT_PASSWORD = "s3cret"


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_protocol_case(any_server_factory, path: Path, request: pytest.FixtureRequest) -> None:
    """Replay one case file against faktory_py, or against the real Faktory."""
    case = parse_case(path)
    real = request.node.callspec.params["any_server_factory"] == REAL_FAKTORY_PARAM
    reason = skip_reason(case, ours=not real, ent=not real, starts_servers=not real)  # faktory_py is Enterprise
    if reason is None and real and case.server_args:
        reason = "SERVER arguments are faktory_py's"
    if reason:
        pytest.skip(reason)
    srv = any_server_factory(password=DEFAULT_PASSWORD if case.require_password else None,
                             args=case.server_args)
    replay(case, srv.port, srv.password, ours=not real)


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_protocol_case_on_redis(server_factory, redis_store: str, path: Path) -> None:
    """Replay one case file against faktory_py with its op log in Redis (`--store redis://…`,
    a namespace of its own per case): the backend changes nothing a client can see."""
    case = parse_case(path)
    reason = skip_reason(case, ours=True, ent=True, starts_servers=True)
    if reason:
        pytest.skip(reason)
    srv = server_factory(password=DEFAULT_PASSWORD if case.require_password else None,
                         args=(*case.server_args, "--store", redis_store), start=False)
    redis_conf(srv.conf_dir)
    srv.start()
    replay(case, srv.port, srv.password, ours=True)


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_protocol_case_through_a_standby(server_factory, redis_store: str, path: Path) -> None:
    """Replay one case file through a standby (both nodes `advertise` their command port, the
    standby started second): every byte goes through the standby's forwarding to the primary,
    and the answers are those the primary gives directly."""
    case = parse_case(path)
    reason = skip_reason(case, ours=True, ent=True, starts_servers=True)
    if reason:
        pytest.skip(reason)
    password = DEFAULT_PASSWORD if case.require_password else None
    nodes = [server_factory(password=password, args=(*case.server_args, "--store", redis_store), start=False)
             for _ in range(2)]
    for node in nodes:
        advertise(node.conf_dir, node.port)
    primary, standby = nodes
    primary.start()
    standby.start()  # greets once it forwards: a standby that has no primary to forward to parks
    with RawClient(standby.port) as c:
        assert c.handshake(password=password) == b"OK"
        assert c.info()["faktory"]["ha"]["node_id"].endswith(f":{primary.port}")
    replay(case, standby.port, password, ours=True)
    primary.shutdown(10)
    assert "Traceback" not in standby.log_text()


def replay(case, port: int, password: str | None, *, ours: bool) -> None:  # type: ignore[no-untyped-def]
    try:
        run_case(case, Address("127.0.0.1", port, password), ent=ours, ours=ours)
    except CaseFailure as exc:
        pytest.fail(str(exc), pytrace=False)


def test_case_files_exist() -> None:
    names = {p.name.split(".")[0] for p in CASES}
    for area in ("handshake", "push", "fetch-ack", "fail-retry", "mutate", "queue", "beat", "info", "errors"):
        assert area in names, area


def test_every_case_file_parses() -> None:
    for path in CASES:
        assert parse_case(path).steps, path.name


def test_json_match_markers() -> None:
    json_match({"a": "<absent>", "b": "<int>", "c": {"d": "<re:x+>"}, "e": [1.5, "<any>"],
                "f": "<ints>", "g": "<rfc3339>", "h": "<hms-utc>", "i": "<semver>", "j": "<object>"},
               {"b": 3, "c": {"d": "xxx", "z": 0}, "e": [1.5, None], "f": {"q": 0}, "g": "2026-01-02T03:04:05.6+00:00",
                "h": "03:04:05 UTC", "i": "1.9.4", "j": {}})
    json_match({"a": {"b": "<int>"}}, {"a": {"b": 1}}, exact_keys=True)
    for expected, actual in (({"a": "<absent>"}, {"a": 1}), ({"b": "<int>"}, {"b": 1.5}), ({"b": "<int>"}, {"b": -1}),
                             ({"l": [1]}, {"l": [1, 2]}), ({"s": "1"}, {"s": 1}), ({"t": True}, {"t": 1}),
                             ({"n": 1}, {"n": 1.0}), ({"f": "<ints>"}, {"f": {"q": "0"}})):
        with pytest.raises(CaseFailure):
            json_match(expected, actual)
    with pytest.raises(CaseFailure):
        json_match({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}, exact_keys=True)


def test_client_acceptance() -> None:
    """`ACCEPTS <client>`: every client needs clean framing; Elixir takes only known prefixes."""
    for reply in (b"+OK\r\n", b"$-1\r\n", b'$2\r\n{}\r\n', b"-NOTUNIQUE Job not unique\r\n"):
        assert clients.problem(reply, ("ruby", "elixir")) is None, reply
    for reply in (b":1\r\n", b"+OK\n", b"$0\r\n\r\n", b"-MISCONF disk\r\n"):
        assert clients.problem(reply, ("ruby",)), reply
    assert clients.problem(b"+QUEUED\r\n", ("elixir",)) and not clients.problem(b"+QUEUED\r\n", ("php",))
    assert clients.problem(b'+HI {"v":2}\r\n', ("elixir",)) is None  # the greeting: framing only


def test_unescape() -> None:
    assert unescape(r'PUSH {"a":"\"x\""}\r\n') == b'PUSH {"a":"\\"x\\""}\r\n'
    assert unescape(r"a\\r\x41\xff\n") == b"a\\rA\xff\n"
