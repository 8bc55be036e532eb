"""Replays the language-neutral conformance cases in protocol/cases/*.case.

One pytest test per case file and target. Target `faktory_py`: a fresh server process (the
`server` fixture, or a password-protected one for files that say `REQUIRE password`). The file
format is described in protocol/README.md; this module is its reference interpreter.

Target `faktory-<version>`: the same file against a fresh real Faktory (tests/real_faktory.py;
tests/run.sh builds it and exports ``FAKTORY_BIN``; skipped when it is missing, except under
CI=true). ``FAKTORY_CASES_URL=tcp://host:port`` (and ``FAKTORY_CASES_PASSWORD_URL`` for the
password cases) point that half at an already running server instead. ``*.ours.case`` files
and files that need server options pin down faktory_py's own behaviour and never run against
Faktory. The interpreter also runs from the command line:
``python tests/test_protocol_cases.py tcp://host:port protocol/cases/x.case ...``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from real_faktory import OUR_SERVER_PARAM, REAL_FAKTORY_PARAM, real_faktory_factory  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted((ROOT / "protocol" / "cases").glob("*.case"))
DEFAULT_PASSWORD = "s3cret"
READ_TIMEOUT = 5.0
CLOSE_TIMEOUT = 5.0


class CaseFailure(AssertionError):
    pass


# --- parsing ---------------------------------------------------------------------------


@dataclass
class Step:
    lineno: int
    kind: str
    arg: str


@dataclass
class Case:
    path: Path
    steps: list[Step]
    require_password: bool = False
    server_args: tuple[str, ...] = ()


_STEP = re.compile(r"(C:|C\*|S:|S~|S\$|---|WAIT|SLEEP|ELAPSED|HANDSHAKE|REQUIRE|SERVER)(?: (.*))?$")


def parse_case(path: Path) -> Case:
    case = Case(path, [])
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _STEP.match(line)
        if m is None:
            raise ValueError(f"{path.name}:{lineno}: cannot parse {line!r}")
        kind, arg = m.group(1), m.group(2) or ""
        if kind == "REQUIRE":
            if arg != "password":
                raise ValueError(f"{path.name}:{lineno}: unknown requirement {arg!r}")
            case.require_password = True
        elif kind == "SERVER":
            case.server_args += tuple(arg.split())
        else:
            case.steps.append(Step(lineno, kind, arg))
    return case


_ESCAPE = re.compile(r"\\(r|n|t|\\|x[0-9a-fA-F]{2})")


def unescape(text: str) -> bytes:
    """`\\r`, `\\n`, `\\t`, `\\\\` and `\\xHH` are escapes; any other backslash is literal."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos:m.start()].encode("utf-8")
        e = m.group(1)
        out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}.get(e) or bytes([int(e[1:], 16)])
        pos = m.end()
    out += text[pos:].encode("utf-8")
    return bytes(out)


# --- replies ---------------------------------------------------------------------------


def rfc3339(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def pwdhash(password: str, salt: str, rounds: int) -> str:
    digest = hashlib.sha256((password + salt).encode()).digest()
    for _ in range(max(1, rounds) - 1):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=READ_TIMEOUT)
        self.buf = b""
        self.sent_at = time.monotonic()
        self.replied_at = self.sent_at

    def send(self, data: bytes) -> None:
        self.sent_at = time.monotonic()
        self.sock.sendall(data)

    def _fill(self, what: str) -> None:
        try:
            chunk = self.sock.recv(65536)
        except (TimeoutError, socket.timeout):
            raise CaseFailure(f"timed out after {READ_TIMEOUT}s waiting for {what}; have {self.buf!r}") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise CaseFailure(f"connection closed while waiting for {what}; have {self.buf!r}")
        self.buf += chunk

    def reply(self) -> bytes:
        """One whole RESP reply, raw: a line through its `\\n`, plus a bulk body."""
        while b"\n" not in self.buf:
            self._fill("a reply")
        end = self.buf.index(b"\n") + 1
        line = self.buf[:end]
        if line.startswith(b"$") and not line.startswith(b"$-"):
            if not line.endswith(b"\r\n"):
                raise CaseFailure(f"bulk header not CRLF-terminated: {line!r}")
            length = int(line[1:-2])
            while len(self.buf) < end + length + 2:
                self._fill(f"{length} bulk bytes")
            body_end = end + length + 2
            if self.buf[end + length:body_end] != b"\r\n":
                raise CaseFailure(f"bulk length {length} does not match its body: {self.buf[:body_end + 20]!r}")
            end = body_end
        out, self.buf = self.buf[:end], self.buf[end:]
        self.replied_at = time.monotonic()
        return out

    def wait_closed(self) -> None:
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while True:
            if self.buf:
                raise CaseFailure(f"expected the server to close without a reply, got {self.buf!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CaseFailure(f"server did not close the connection within {CLOSE_TIMEOUT}s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except ConnectionResetError:
                return
            finally:
                self.sock.settimeout(READ_TIMEOUT)
            if not chunk:
                return
            self.buf += chunk

    def close(self) -> None:
        self.sock.close()


# --- JSON subset matching -------------------------------------------------------------

_MISSING = object()


def json_match(expected: Any, actual: Any, path: str = "$") -> None:
    """`expected` ⊆ `actual`: objects by key (recursively), everything else exactly.

    String markers: "<absent>" (key must be missing), "<any>", "<int>", "<number>",
    "<string>", "<re:REGEX>" (a string fully matching REGEX).
    """
    if isinstance(expected, str) and expected.startswith("<") and expected.endswith(">"):
        marker = expected[1:-1]
        if marker == "absent":
            if actual is not _MISSING:
                raise CaseFailure(f"{path}: expected no such key, found {actual!r}")
            return
        if actual is _MISSING:
            raise CaseFailure(f"{path}: missing")
        ok = {
            "any": True,
            "int": type(actual) is int,
            "number": type(actual) in (int, float),
            "string": isinstance(actual, str),
        }.get(marker)
        if ok is None and marker.startswith("re:"):
            ok = isinstance(actual, str) and re.fullmatch(marker[3:], actual) is not None
        if ok is None:
            ok = expected == actual
        if not ok:
            raise CaseFailure(f"{path}: {actual!r} is not {expected}")
        return
    if actual is _MISSING:
        raise CaseFailure(f"{path}: missing (expected {expected!r})")
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            raise CaseFailure(f"{path}: expected an object, got {actual!r}")
        for key, value in expected.items():
            json_match(value, actual.get(key, _MISSING), f"{path}.{key}")
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            raise CaseFailure(f"{path}: expected {expected!r}, got {actual!r}")
        for i, (e, a) in enumerate(zip(expected, actual)):
            json_match(e, a, f"{path}[{i}]")
    else:
        numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (expected, actual))
        if not (numbers or type(expected) is type(actual)) or expected != actual:
            raise CaseFailure(f"{path}: expected {expected!r}, got {actual!r}")


# --- the interpreter -------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{([a-zA-Z0-9_]+)(?::([^}]*))?\}\}")


@dataclass
class Runner:
    host: str
    port: int
    password: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    conns: dict[str, Conn] = field(default_factory=dict)
    current: str = "main"
    hi: dict[str, Any] = field(default_factory=dict)

    def conn(self) -> Conn:
        if self.current not in self.conns:
            self.conns[self.current] = Conn(self.host, self.port)
        return self.conns[self.current]

    def subst(self, text: str, regex: bool = False) -> str:
        def one(m: re.Match[str]) -> str:
            name, arg = m.group(1), m.group(2)
            if name == "time":
                value = rfc3339(time.time() + float(arg or 0))
            elif name in ("pwdhash", "pwdhash1", "pwdhash_upper"):
                if not self.hi.get("s") or self.password is None:
                    raise CaseFailure("{{%s}} needs a greeting with a salt and a password" % name)
                rounds = 1 if name == "pwdhash1" else int(self.hi["i"])
                value = pwdhash(self.password if arg is None else arg, self.hi["s"], rounds)
                if name == "pwdhash_upper":
                    value = value.upper()
            else:
                value = self.values.setdefault(name, secrets.token_hex(12))
            return re.escape(value) if regex else value
        return _PLACEHOLDER.sub(one, text)

    def read(self) -> bytes:
        data = self.conn().reply()
        if data.startswith(b"+HI "):
            self.hi = json.loads(data[4:].rstrip(b"\r\n"))
        return data

    def run(self, case: Case) -> None:
        try:
            for step in case.steps:
                try:
                    self.step(step)
                except CaseFailure as exc:
                    raise CaseFailure(f"{case.path.name}:{step.lineno}: {step.kind} {step.arg}\n  {exc}") from None
        finally:
            for c in self.conns.values():
                c.close()

    def step(self, step: Step) -> None:
        kind, arg = step.kind, step.arg
        if kind == "C:":
            self.conn().send(unescape(self.subst(arg)))
        elif kind == "C*":
            count, _, chunk = arg.partition(" ")
            self.conn().send(unescape(self.subst(chunk)) * int(count))
        elif kind == "S:":
            expected = unescape(self.subst(arg))
            got = self.read()
            if got != expected:
                raise CaseFailure(f"expected {expected!r}\n  got      {got!r}")
        elif kind == "S~":
            pattern = self.subst(arg, regex=True)
            got = self.read()
            if re.fullmatch(pattern.encode(), got, re.DOTALL) is None:
                raise CaseFailure(f"reply {got!r} does not match /{pattern}/")
        elif kind == "S$":
            mode, _, text = arg.partition(" ")
            if mode not in ("json", "json-subset"):
                raise CaseFailure(f"unknown S$ mode {mode!r}")
            try:
                expected = json.loads(self.subst(text))
            except ValueError as exc:
                raise CaseFailure(f"bad JSON in the case file: {exc}") from None
            got = self.read()
            if not got.startswith(b"$") or got.startswith(b"$-"):
                raise CaseFailure(f"expected a bulk JSON reply, got {got!r}")
            actual = json.loads(got[got.index(b"\n") + 1:-2])
            if mode == "json":
                if actual != expected:
                    raise CaseFailure(f"expected {expected!r}\n  got      {actual!r}")
            else:
                json_match(expected, actual)
        elif kind == "---":
            words = arg.split()
            if words == ["new", "connection"]:
                if self.current in self.conns:
                    self.conns.pop(self.current).close()
            elif len(words) == 2 and words[0] == "connection":
                self.current = words[1]
            elif len(words) == 2 and words[0] == "close":
                self.conns.pop(words[1]).close()
            else:
                raise CaseFailure(f"unknown connection directive {arg!r}")
        elif kind == "WAIT":
            if arg != "closed":
                raise CaseFailure(f"unknown WAIT {arg!r}")
            self.conn().wait_closed()
        elif kind == "SLEEP":
            time.sleep(float(arg))
        elif kind == "ELAPSED":
            low, high = (float(x) for x in arg.split())
            c = self.conn()
            took = c.replied_at - c.sent_at
            if not low <= took <= high:
                raise CaseFailure(f"the last reply took {took:.3f}s, expected {low}..{high}s")
        elif kind == "HANDSHAKE":
            hello = json.loads(self.subst(arg)) if arg else {"v": 2}
            got = self.read()
            if not got.startswith(b"+HI "):
                raise CaseFailure(f"expected a +HI greeting, got {got!r}")
            if self.hi.get("s"):
                if self.password is None:
                    raise CaseFailure("server wants a password and the runner has none")
                rounds = int(self.hi.get("i", 1)) if hello.get("v", 0) >= 2 else 1
                hello["pwdhash"] = pwdhash(self.password, self.hi["s"], rounds)
            self.conn().send(b"HELLO " + json.dumps(hello, separators=(",", ":")).encode() + b"\r\n")
            got = self.read()
            if got != b"+OK\r\n":
                raise CaseFailure(f"HELLO refused: {got!r}")
        else:  # pragma: no cover - parse_case only lets known kinds through
            raise CaseFailure(f"unknown step {kind}")


def _address(url: str) -> tuple[str, int, str | None]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 7419, parsed.password


# --- pytest ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
@pytest.mark.parametrize("target", [OUR_SERVER_PARAM, REAL_FAKTORY_PARAM])
def test_protocol_case(target: str, path: Path, request: pytest.FixtureRequest) -> None:
    """Replay one case file against faktory_py, or against the real Faktory."""
    case = parse_case(path)
    password = DEFAULT_PASSWORD if case.require_password else None
    if target == REAL_FAKTORY_PARAM:
        if path.name.endswith(".ours.case") or case.server_args:
            pytest.skip("pins faktory_py's own behaviour")
        external = os.environ.get("FAKTORY_CASES_PASSWORD_URL" if case.require_password else "FAKTORY_CASES_URL")
        if external:
            host, port, password = _address(external)
            Runner(host, port, password).run(case)
            return
        srv = request.getfixturevalue("real_faktory_factory")(password=password)
    elif case.require_password or case.server_args:
        srv = request.getfixturevalue("server_factory")(password=password, args=case.server_args)
    else:
        srv = request.getfixturevalue("server")
    Runner("127.0.0.1", srv.port, srv.password).run(case)


def test_case_files_exist() -> None:
    names = {p.name.split(".")[0] for p in CASES}
    for area in ("handshake", "push", "fetch-ack", "fail-retry", "mutate", "queue", "beat", "info", "errors"):
        assert area in names, area


def test_json_match_markers() -> None:
    json_match({"a": "<absent>", "b": "<int>", "c": {"d": "<re:x+>"}, "e": [1, "<any>"]},
               {"b": 3, "c": {"d": "xxx", "z": 0}, "e": [1.0, None]})
    for expected, actual in (({"a": "<absent>"}, {"a": 1}), ({"b": "<int>"}, {"b": 1.5}),
                             ({"l": [1]}, {"l": [1, 2]}), ({"s": "1"}, {"s": 1}), ({"t": True}, {"t": 1})):
        with pytest.raises(CaseFailure):
            json_match(expected, actual)


def test_unescape() -> None:
    assert unescape(r'PUSH {"a":"\"x\""}\r\n') == b'PUSH {"a":"\\"x\\""}\r\n'
    assert unescape(r"a\\r\x41\xff\n") == b"a\\rA\xff\n"


if __name__ == "__main__":
    url, *files = sys.argv[1:]
    host, port, password = _address(url)
    for name in files:
        Runner(host, port, password).run(parse_case(Path(name)))
        print("ok", name)
