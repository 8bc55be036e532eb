"""The connection handshake (protocol/spec.md §2) against the real server process."""

from __future__ import annotations

import json
import re

import pytest

from helpers.servers import ServerProcess
from faktory_py.wire.handshake import hash_password
from helpers.polling import eventually
from helpers.rawclient import RawClient

PASSWORD = "foobar"
HI_WITH_PASSWORD = re.compile(rb'\+HI \{"v":2,"i":(\d+),"s":"([0-9a-f]{1,16})"\}\r\n')


@pytest.fixture(scope="module")
def server(module_server_factory) -> ServerProcess:
    """Shared by the module (overrides conftest's per-test server): no test here changes state
    another one reads."""
    return module_server_factory()


@pytest.fixture(scope="module")
def secured(module_server_factory) -> ServerProcess:
    return module_server_factory(password=PASSWORD)


def read_line(client: RawClient) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = client.recv_raw(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def greeting(client: RawClient) -> tuple[int, str]:
    """Read the password greeting and return (iterations, salt)."""
    line = read_line(client)
    match = HI_WITH_PASSWORD.fullmatch(line)
    assert match, line
    return int(match.group(1)), match.group(2).decode()


def hello(client: RawClient, payload: dict, *, raw: str | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(payload, separators=(",", ":"))
    client.send(b"HELLO " + text.encode() + b"\r\n")
    return client.recv_raw()


# --- greeting -----------------------------------------------------------------------

def test_greeting_without_password_is_exact(server) -> None:
    with server.client() as c:
        assert c.recv_raw(len(b'+HI {"v":2}\r\n')) == b'+HI {"v":2}\r\n'


def test_greeting_with_password_has_ranges_and_fresh_salt(secured: ServerProcess) -> None:
    server = secured
    seen = set()
    for _ in range(8):
        with server.client() as c:
            iterations, salt = greeting(c)
            assert 4000 <= iterations <= 8095
            assert int(salt, 16) < 2**63
            assert salt == salt.lower() and (salt == "0" or not salt.startswith("0"))
            seen.add((iterations, salt))
    assert len(seen) == 8  # new per connection


# --- HELLO without password -----------------------------------------------------------

def test_hello_ok(server) -> None:
    with server.client() as c:
        assert c.handshake() == b"OK"
        assert c.info()["server"]["description"] == "Faktory Enterprise"


def test_hello_reply_bytes(server) -> None:
    with server.client() as c:
        read_line(c)
        assert hello(c, {"v": 2}) == b"+OK\r\n"


@pytest.mark.parametrize("payload", [
    "{}",
    '{"v":2}',
    '{"v": 2, "hostname": "box", "wid": null, "pid": 12, "labels": ["a", "b"]}',
    '{"v":2,"wid":"","pwdhash":"","username":""}',
    '{"v":2,"username":null,"labels":null,"unknown":{"x":[1,2]}}',
    '{"v":2,"pwdhash":"ignored-without-password"}',
    '{"hostname":"box","wid":"w-123","pid":99,"labels":["golang"],"v":2,"rss_kb":1234}',
])
def test_hello_shapes_accepted(server, payload: str) -> None:
    with server.client() as c:
        read_line(c)
        assert hello(c, {}, raw=payload) == b"+OK\r\n"
        assert c.command("INFO").startswith(b"{")


# --- password ---------------------------------------------------------------------------

def test_password_correct_hash(secured: ServerProcess) -> None:
    server = secured
    with server.client() as c:
        assert c.handshake(password=PASSWORD) == b"OK"
        assert c.info()["server"]["connections"] >= 1


def test_password_wrong_hash_then_close(secured: ServerProcess) -> None:
    server = secured
    with server.client() as c:
        iterations, salt = greeting(c)
        assert hello(c, {"v": 2, "pwdhash": hash_password("wrong", salt, iterations)}) == b"-ERR Invalid password\r\n"
        assert c.closed_by_peer(within=3)


def test_password_upper_case_hex_is_wrong(secured: ServerProcess) -> None:
    server = secured
    with server.client() as c:
        iterations, salt = greeting(c)
        good = hash_password(PASSWORD, salt, iterations)
        assert hello(c, {"v": 2, "pwdhash": good.upper()}) == b"-ERR Invalid password\r\n"
        assert c.closed_by_peer(within=3)


@pytest.mark.parametrize("payload", ['{"v":2}', '{"v":2,"pwdhash":""}', '{"v":2,"pwdhash":null}'])
def test_password_missing_hash_then_close(secured: ServerProcess, payload: str) -> None:
    server = secured
    with server.client() as c:
        greeting(c)
        assert hello(c, {}, raw=payload) == b"-ERR Invalid password\r\n"
        assert c.closed_by_peer(within=3)


def test_password_hash_with_v2_but_one_round_fails(secured: ServerProcess) -> None:
    server = secured
    with server.client() as c:
        _iterations, salt = greeting(c)
        assert hello(c, {"v": 2, "pwdhash": hash_password(PASSWORD, salt, 1)}) == b"-ERR Invalid password\r\n"


def test_versionless_hello_uses_one_round(secured: ServerProcess) -> None:
    """cdrx sends no "v", default json.dumps (with spaces) and a single SHA-256 round."""
    server = secured
    with server.client() as c:
        _iterations, salt = greeting(c)
        payload = json.dumps({"hostname": "box", "wid": "cdrx-1", "pid": 7, "labels": ["python"],
                              "pwdhash": hash_password(PASSWORD, salt, 1)})
        assert " " in payload
        assert hello(c, {}, raw=payload) == b"+OK\r\n"
        assert c.command('BEAT {"wid": "cdrx-1"}') == b"OK"


def test_v1_hello_uses_one_round(secured: ServerProcess) -> None:
    server = secured
    with server.client() as c:
        iterations, salt = greeting(c)
        assert hello(c, {"v": 1, "pwdhash": hash_password(PASSWORD, salt, iterations)}) == b"-ERR Invalid password\r\n"
    with server.client() as c:
        _iterations, salt = greeting(c)
        assert hello(c, {"v": 1, "pwdhash": hash_password(PASSWORD, salt, 1)}) == b"+OK\r\n"


def test_password_from_file(server_factory, tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("  s3cret-from-file\n")
    server = server_factory(env={"FAKTORY_PASSWORD": str(secret)})
    with server.client() as c:
        assert c.handshake(password="s3cret-from-file") == b"OK"
    with server.client() as c:
        iterations, salt = greeting(c)
        assert hello(c, {"v": 2, "pwdhash": hash_password(str(secret), salt, iterations)}) == b"-ERR Invalid password\r\n"


# --- silent closes --------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    b"HELLO{}",
    b'HELLO{"v":2}',
    b"HELLO  {}",
    b"hello {}",
    b"INFO",
    b'PUSH {"jid":"123456789","jobtype":"x","args":[]}',
    b"GET / HTTP/1.1",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello's first bytes
    b"",
])
def test_bad_preamble_closes_silently(server, line: bytes) -> None:
    with server.client() as c:
        read_line(c)
        c.send(line + b"\r\n")
        assert c.recv_raw() == b""


@pytest.mark.parametrize("payload", [
    b"{", b'{"v":', b"{]", b'{"v":2}}x', b'{"v":300}', b'{"v":-1}', b'{"v":2.5}', b'{"v":"2"}',
    b'{"pid":"12"}', b'{"wid":5}', b'{"labels":"a"}', b'{"labels":[1]}',
])
def test_undecodable_hello_closes_silently(server, payload: bytes) -> None:
    with server.client() as c:
        read_line(c)
        c.send(b"HELLO " + payload + b"\r\n")
        assert c.recv_raw() == b""


# --- after the handshake -----------------------------------------------------------

def test_second_hello_is_unknown_command(client: RawClient) -> None:
    client.send(b'HELLO {"v":2}\r\n')
    assert client.recv_raw() == b"-ERR unknown command HELLO\r\n"
    assert client.command("INFO").startswith(b"{")


def test_bare_lf_lines(server) -> None:
    with server.client() as c:
        read_line(c)
        c.send(b'HELLO {"v":2,"wid":"lf-worker"}\n')
        assert c.recv_raw(5) == b"+OK\r\n"
        c.send(b'PUSH {"jid":"lf-job-0001","jobtype":"x","args":[]}\n')
        assert c.recv_raw(5) == b"+OK\r\n"
        c.send(b"INFO\n")
        assert c.reply().startswith(b"{")
        c.send(b"FETCH default\n")
        assert json.loads(c.reply())["jid"] == "lf-job-0001"
        c.send(b'ACK {"jid":"lf-job-0001"}\n')
        assert c.recv_raw(5) == b"+OK\r\n"
        c.send(b"END\n")
        assert c.recv_raw() == b""


def test_hello_and_command_in_one_packet(server) -> None:
    with server.client() as c:
        read_line(c)
        c.send(b'HELLO {"v":2}\r\nINFO\r\n')
        assert c.reply() == b"OK"
        assert c.reply().startswith(b"{")


def test_worker_hello_registers_a_worker(server_factory) -> None:
    server = server_factory()
    with server.client() as w, server.client() as p:
        assert w.handshake(wid="w-hello", hostname="h", pid=1, labels=["x"]) == b"OK"
        assert p.handshake() == b"OK"
        assert p.info()["faktory"]["tasks"]["Workers"]["size"] == 1
        assert p.command('BEAT {"wid":"w-hello"}') == b"OK"
        w.send(b"END\r\n")
        assert w.recv_raw() == b""
        eventually(lambda: p.info()["faktory"]["tasks"]["Workers"]["size"] == 0, 3,
                   "END to unregister the worker", interval=0.02)
