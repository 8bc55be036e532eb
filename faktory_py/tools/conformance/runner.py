"""The conformance suite: replays the language-neutral protocol cases against any server.

`faktory-py conformance --url tcp://[:password@]host:port` runs every case file against an
already running server (faktory_py, Faktory itself, or any other implementation) and prints
one row per file. The cases FLUSH the server: never point it at data you need. The case format is described in protocol/README.md; this module is its
reference interpreter, also used by tests/interop/test_protocol_cases.py. It needs nothing but the
standard library (the blocking client of `tools.client`), so it can check a server from
anywhere. `clients` holds what the client libraries need from a reply (`ACCEPTS`).

Case files are found in, first match wins:

1. the directory given with `--cases DIR`;
2. `protocol/cases/` of the source tree this module sits in (a checkout or an editable install);
3. `faktory_py/tools/conformance/cases/` inside the installed package: pyproject.toml maps the
   package `faktory_py.tools.conformance.cases` onto `protocol/cases/`, so a wheel carries a copy.

File names carry tags between the area and `.case`: `.ours` marks faktory_py's own behaviour
(skipped against an external server unless `--ours`), `.ent` marks Faktory Enterprise
behaviour (run only against Enterprise), `.oss` marks behaviour of Faktory without Enterprise
(skipped against Enterprise); e.g. `unique.ent.case`, `limits.ours.case`. A server counts as
Enterprise with `--ent`, or, without `--ent`/`--no-ent`, when INFO's server.description says
"Enterprise" (as Faktory Enterprise's and faktory_py's do).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ...wire.handshake import hash_password
from ..client import Address, Client, ProtocolError, ReplyError, parse_url
from . import clients

READ_TIMEOUT = 5.0
CLOSE_TIMEOUT = 5.0


class CaseFailure(AssertionError):
    """A step did not get what the case expects. `lineno`/`step` are set once it is known where."""

    def __init__(self, message: str, lineno: int | None = None, step: str | None = None,
                 case: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno
        self.step = step
        self.case = case

    def __str__(self) -> str:
        if self.lineno is None:
            return self.message
        return f"{self.case}:{self.lineno}: {self.step}\n  {self.message}"


# --- finding and parsing cases -----------------------------------------------------------


def case_dirs() -> list[Path]:
    """Where the case files may be, in the order they are looked for (without `--cases`)."""
    here = Path(__file__).resolve().parent
    return [here.parents[2] / "protocol" / "cases", here / "cases"]


def find_cases(directory: str | Path | None = None) -> list[Path]:
    """The `*.case` files of `directory`, or of the first default place that has any."""
    if directory is not None:
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory} is not a directory")
        return sorted(directory.glob("*.case"))
    for candidate in case_dirs():
        found = sorted(candidate.glob("*.case"))
        if found:
            return found
    raise FileNotFoundError("no case files found in " + " or ".join(map(str, case_dirs())))


@dataclass
class Step:
    lineno: int
    kind: str
    arg: str
    only: str | None = None  # "ent" or "oss": run only against such a server

    def __str__(self) -> str:
        prefix = f"[{self.only}] " if self.only else ""
        return f"{prefix}{self.kind} {self.arg}".rstrip()


@dataclass
class Case:
    path: Path
    steps: list[Step]
    require_password: bool = False
    server_args: tuple[str, ...] = ()
    accepts: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def tags(self) -> set[str]:
        """`limits.ours.case` -> {"ours"}; `batch.ent.case` -> {"ent"}."""
        return set(self.path.name.split(".")[1:-1])

    @property
    def ours(self) -> bool:
        return "ours" in self.tags

    @property
    def enterprise(self) -> bool:
        return "ent" in self.tags

    @property
    def oss_only(self) -> bool:
        return "oss" in self.tags


_STEP = re.compile(r"(?:\[(ent|oss)\] )?"
                   r"(C:|C\*|S:|S~|S\$|---|WAIT|SLEEP|ELAPSED|HANDSHAKE|REQUIRE|SERVER|ACCEPTS)(?: (.*))?$")


def step_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) for each line of `path` that is not blank or a `#` comment."""
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield lineno, line


def parse_case(path: str | Path) -> Case:
    path = Path(path)
    case = Case(path, [])
    for lineno, line in step_lines(path):
        m = _STEP.match(line)
        if m is None:
            raise ValueError(f"{path.name}:{lineno}: cannot parse {line!r}")
        only, kind, arg = m.group(1), m.group(2), m.group(3) or ""
        if only and kind in ("REQUIRE", "SERVER", "ACCEPTS"):
            raise ValueError(f"{path.name}:{lineno}: [{only}] applies to steps only")
        if kind == "REQUIRE":
            if arg != "password":
                raise ValueError(f"{path.name}:{lineno}: unknown requirement {arg!r}")
            case.require_password = True
        elif kind == "SERVER":
            case.server_args += tuple(arg.split())
        elif kind == "ACCEPTS":
            if arg not in clients.ACCEPTORS:
                raise ValueError(f"{path.name}:{lineno}: unknown client {arg!r}")
            case.accepts += (arg,)
        else:
            case.steps.append(Step(lineno, kind, arg, only))
    return case


def skip_reason(case: Case, *, ours: bool, ent: bool, starts_servers: bool = False,
                server_has_password: bool | None = None) -> str | None:
    """Why `case` cannot run against a target, or None if it can.

    `ours`: the target is faktory_py (or the user opted in to `.ours` cases); `ent`: it has
    Faktory Enterprise's features; `starts_servers`: the caller starts a fresh faktory_py per case, with
    the case's `SERVER` arguments and `REQUIRE`d password; `server_has_password`: whether an
    already running target asks for a password (None when `starts_servers`).
    """
    if case.enterprise and not ent:
        return "needs Faktory Enterprise (--ent)"
    if case.oss_only and ent:
        return "needs Faktory without Enterprise (.oss case; --no-ent)"
    if case.ours and not ours:
        return "needs faktory_py (.ours case; --ours runs it)"
    if case.server_args and not starts_servers:
        return f"needs its own faktory_py started with {' '.join(case.server_args)}"
    if not starts_servers and server_has_password is not None:
        if case.require_password and not server_has_password:
            return "needs a password-protected server (tcp://:PASSWORD@host:port)"
        if not case.require_password and server_has_password:
            return "needs a server without a password"
    return None


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


# --- replies -----------------------------------------------------------------------------


def rfc3339(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def ruby_time(unix: float) -> str:
    """A time as Ruby's client writes `at`: `2026-11-26T10:00:00.123456789+00:00`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(unix))) + f".{int((unix % 1) * 1e9):09d}+00:00"


class Conn:
    """One case connection: the one client in raw mode (exact reply bytes), its failures
    turned into CaseFailure."""

    def __init__(self, address: Address) -> None:
        self.client = Client(address, timeout=READ_TIMEOUT, raw=True)

    def send(self, data: bytes) -> None:
        try:
            self.client.send(data)
        except OSError as exc:
            raise CaseFailure(f"connection closed while sending {data[:80]!r}: {exc}") from None

    def reply(self) -> bytes:
        """One whole RESP reply, raw: a line through its `\\n`, plus a bulk body."""
        return self._reading(self.client.reply)

    def hello(self, fields: dict[str, Any]) -> bytes:
        """The greeting, then HELLO `fields` (with `pwdhash` if asked for); HELLO's reply."""
        return self._reading(self.client.hello, fields)

    def _reading(self, read: Callable[..., Any], *args: Any) -> Any:
        try:
            return read(*args)
        except ProtocolError as exc:
            raise CaseFailure(str(exc)) from None
        except TimeoutError:
            raise CaseFailure(f"timed out after {READ_TIMEOUT}s waiting for a reply; "
                              f"have {self.client.reader.unread()!r}") from None
        except OSError:  # a close or a reset
            raise CaseFailure(f"connection closed while waiting for a reply; "
                              f"have {self.client.reader.unread()!r}") from None

    def wait_closed(self) -> None:
        try:
            extra = self.client.wait_closed(CLOSE_TIMEOUT)
        except TimeoutError:
            raise CaseFailure(f"server did not close the connection within {CLOSE_TIMEOUT}s") from None
        if extra:
            raise CaseFailure(f"expected the server to close without a reply, got {extra!r}")

    def close(self) -> None:
        self.client.close()


# --- JSON subset matching ----------------------------------------------------------------

_MISSING = object()
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


#: JSON-template markers: a string "<name>" in a template matches a value of this kind
MARKERS: dict[str, Callable[[Any], bool]] = {
    "any": lambda v: True,
    "int": _count,
    "number": lambda v: type(v) in (int, float) and v >= 0,
    "string": lambda v: isinstance(v, str),
    "object": lambda v: isinstance(v, dict),
    "ints": lambda v: isinstance(v, dict) and all(_count(x) for x in v.values()),
    "rfc3339": lambda v: isinstance(v, str) and _RFC3339.fullmatch(v) is not None,
    "hms-utc": lambda v: isinstance(v, str) and re.fullmatch(r"\d\d:\d\d:\d\d UTC", v) is not None,
    "semver": lambda v: isinstance(v, str) and re.fullmatch(r"\d+\.\d+\.\d+", v) is not None,
}


def json_match(expected: Any, actual: Any, path: str = "$", exact_keys: bool = False) -> None:
    """`expected` ⊆ `actual`: objects by key (recursively; with `exact_keys` no other keys
    either, at every level), arrays element-wise, everything else equal, type included
    (`1` is not `1.0`, `true` is not `1`).

    String markers: "<absent>" (key must be missing), "<re:REGEX>" (a string fully matching
    REGEX), and the kinds in `MARKERS`.
    """
    if isinstance(expected, str) and expected.startswith("<") and expected.endswith(">"):
        marker = expected[1:-1]
        if marker == "absent":
            if actual is not _MISSING:
                raise CaseFailure(f"{path}: expected no such key, found {actual!r}")
            return
        if actual is _MISSING:
            raise CaseFailure(f"{path}: missing")
        if marker in MARKERS:
            ok = MARKERS[marker](actual)
        elif marker.startswith("re:"):
            ok = isinstance(actual, str) and re.fullmatch(marker[3:], actual) is not None
        else:
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
            json_match(value, actual.get(key, _MISSING), f"{path}.{key}", exact_keys)
        extra = sorted(set(actual) - set(expected))
        if exact_keys and extra:
            raise CaseFailure(f"{path}: unexpected keys {extra}")
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            raise CaseFailure(f"{path}: expected {expected!r}, got {actual!r}")
        for i, (e, a) in enumerate(zip(expected, actual)):
            json_match(e, a, f"{path}[{i}]", exact_keys)
    elif type(expected) is not type(actual) or expected != actual:
        raise CaseFailure(f"{path}: expected {expected!r}, got {actual!r}")


def deep_merge(base: Any, extra: Any) -> Any:
    """`base` with `extra`'s values put in, recursively into objects both have."""
    if isinstance(base, dict) and isinstance(extra, dict):
        return {**base, **{k: deep_merge(base[k], v) if k in base else v for k, v in extra.items()}}
    return extra


# --- the interpreter ---------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{([a-zA-Z0-9_]+)(?::([^}]*))?\}\}")


@dataclass
class Runner:
    """Runs one case file's steps against `address` (a fresh Runner per file).

    `ent`: the server has Faktory Enterprise's features (`[ent]` steps run, `[oss]` steps
    do not, and the other way round); `ours`: it is faktory_py (see `clients.ONE_READ`).
    """

    address: Address
    ent: bool = False
    ours: bool = False
    accepts: tuple[str, ...] = ()
    values: dict[str, str] = field(default_factory=dict)
    conns: dict[str, Conn] = field(default_factory=dict)
    current: str = "main"
    hi: dict[str, Any] = field(default_factory=dict)

    @property
    def password(self) -> str | None:
        return self.address.password

    def conn(self) -> Conn:
        if self.current not in self.conns:
            try:
                self.conns[self.current] = Conn(self.address)
            except OSError as exc:
                raise CaseFailure(f"cannot connect to {self.address.host}:{self.address.port}: {exc}") from None
        return self.conns[self.current]

    def subst(self, text: str, regex: bool = False) -> str:
        def one(m: re.Match[str]) -> str:
            name, arg = m.group(1), m.group(2)
            if name == "time":
                value = rfc3339(time.time() + float(arg or 0))
            elif name == "time_ruby":
                value = ruby_time(time.time() + float(arg or 0))
            elif name in ("pwdhash", "pwdhash1", "pwdhash_upper"):
                if not self.hi.get("s") or self.password is None:
                    raise CaseFailure("{{%s}} needs a greeting with a salt and a password" % name)
                rounds = 1 if name == "pwdhash1" else int(self.hi["i"])
                value = hash_password(self.password if arg is None else arg, self.hi["s"], rounds)
                if name == "pwdhash_upper":
                    value = value.upper()
            else:
                value = self.values.setdefault(name, secrets.token_hex(12))
            return re.escape(value) if regex else value
        return _PLACEHOLDER.sub(one, text)

    def read(self) -> bytes:
        conn = self.conn()
        data = conn.reply()
        problem = clients.problem(data, self.accepts) if self.accepts else None
        if problem:
            raise CaseFailure(f"{problem}: {data!r}")
        if self.ours and clients.ONE_READ & set(self.accepts) and conn.client.reads > 1:
            raise CaseFailure(f"reply arrived in {conn.client.reads} reads, not one: {data!r}")
        if data.startswith(b"+HI "):
            try:
                self.hi = json.loads(data[4:].rstrip(b"\r\n"))
            except ValueError:
                self.hi = {}
        return data

    def run(self, case: Case) -> None:
        """Every step in order; the first failing one raises CaseFailure naming its line."""
        self.accepts = case.accepts
        try:
            for step in case.steps:
                if step.only is not None and (step.only == "ent") != self.ent:
                    continue
                try:
                    self.step(step)
                except CaseFailure as exc:
                    raise CaseFailure(exc.message, step.lineno, str(step), case.name) from None
                except OSError as exc:
                    raise CaseFailure(f"{type(exc).__name__}: {exc}", step.lineno, str(step), case.name) from None
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
                raise CaseFailure(f"expected {expected!r}, got {got!r}")
        elif kind == "S~":
            pattern = self.subst(arg, regex=True)
            got = self.read()
            m = re.fullmatch(pattern.encode(), got, re.DOTALL)
            if m is None:
                raise CaseFailure(f"expected /{pattern}/, got {got!r}")
            for name, value in m.groupdict().items():  # (?P<name>...) captures {{name}}
                if value is not None:
                    self.values[name] = value.decode("utf-8", errors="replace")
        elif kind == "S$":
            mode, _, text = arg.partition(" ")
            if mode not in ("json", "json-subset", "info"):
                raise CaseFailure(f"unknown S$ mode {mode!r}")
            try:
                expected = json.loads(self.subst(text)) if text or mode != "info" else {}
            except ValueError as exc:
                raise CaseFailure(f"bad JSON in the case file: {exc}") from None
            if mode == "info":
                expected = deep_merge(clients.INFO, expected)
            got = self.read()
            if not got.startswith(b"$") or got.startswith(b"$-"):
                raise CaseFailure(f"expected a bulk JSON reply, got {got!r}")
            try:
                actual = json.loads(got[got.index(b"\n") + 1:-2])
            except ValueError as exc:
                raise CaseFailure(f"expected JSON, got {got[:200]!r} ({exc})") from None
            json_match(expected, actual, exact_keys=mode == "json")
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
            c = self.conn().client
            took = c.replied_at - c.sent_at
            if not low <= took <= high:
                raise CaseFailure(f"expected the last reply within {low}..{high}s, it took {took:.3f}s")
        elif kind == "HANDSHAKE":
            conn = self.conn()
            got = conn.hello(json.loads(self.subst(arg)) if arg else {"v": 2})
            self.hi = conn.client.greeting
            if got != b"+OK\r\n":
                if self.hi.get("s") and self.password is None:
                    raise CaseFailure("server wants a password and the runner has none")
                raise CaseFailure(f"expected b'+OK\\r\\n' for HELLO, got {got!r}")
        else:  # pragma: no cover - parse_case only lets known kinds through
            raise CaseFailure(f"unknown step {kind}")


def run_case(case: Case, address: Address, *, ent: bool, ours: bool) -> None:
    """Run one case file against `address` (see `Runner` for `ent` and `ours`); raises
    CaseFailure at the first failing step."""
    Runner(address, ent, ours).run(case)


# --- the command line --------------------------------------------------------------------


@dataclass
class Result:
    name: str
    status: str  # PASS, FAIL or SKIP
    seconds: float | None = None
    detail: str = ""


def probe(address: Address) -> dict[str, Any]:
    """The server's `+HI` greeting (tells whether it wants a password)."""
    with Client(address, timeout=READ_TIMEOUT) as client:
        try:
            return client.greet()
        except (ProtocolError, ReplyError) as exc:
            raise ValueError(f"not a Faktory server: {exc}") from None


def server_description(address: Address) -> str | None:
    """INFO's server.description ("Faktory" or "Faktory Enterprise"), or None if unavailable."""
    runner = Runner(address)
    try:
        runner.step(Step(0, "HANDSHAKE", ""))
        runner.step(Step(0, "C:", "INFO\\r\\n"))
        reply = runner.read()
        return json.loads(reply[reply.index(b"\n") + 1:-2])["server"]["description"]
    except (CaseFailure, OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        for conn in runner.conns.values():
            conn.close()


def run_all(address: Address, paths: list[Path], *, ours: bool, ent: bool,
            server_has_password: bool) -> list[Result]:
    results = []
    for path in paths:
        try:
            case = parse_case(path)
        except (OSError, ValueError) as exc:
            results.append(Result(path.name, "FAIL", None, f"cannot read the case: {exc}"))
            continue
        reason = skip_reason(case, ours=ours, ent=ent, server_has_password=server_has_password)
        if reason:
            results.append(Result(case.name, "SKIP", None, reason))
            continue
        started = time.monotonic()
        try:
            run_case(case, address, ent=ent, ours=ours)
        except CaseFailure as exc:
            detail = f"line {exc.lineno} ({_shorten(exc.step or '', 60)}): {exc.message}" if exc.lineno else exc.message
            results.append(Result(case.name, "FAIL", time.monotonic() - started, detail))
        else:
            results.append(Result(case.name, "PASS", time.monotonic() - started))
    return results


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def print_table(results: list[Result], out: TextIO) -> None:
    width = max([len("case")] + [len(r.name) for r in results])
    print(f"{'case':<{width}}  result   time  detail", file=out)
    for r in results:
        took = f"{r.seconds:5.2f}s" if r.seconds is not None else "     -"
        detail = _shorten(r.detail.replace("\n", " "), 600)
        print(f"{r.name:<{width}}  {r.status:<6} {took}  {detail}".rstrip(), file=out)
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped", file=out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faktory-py conformance",
        description="Run the Faktory protocol conformance cases against a running server. "
                    "WARNING: the cases FLUSH the server, deleting all its jobs: point this at a "
                    "test server only.",
        epilog="Exit status: 0 if no case failed, 1 if one did, 2 on usage or connection errors. "
               "Most cases need a server without a password; those with `REQUIRE password` need "
               "one with a password (given in the URL). Run twice to cover both.")
    p.add_argument("--url", required=True,
                   help="tcp://[:password@]host:port or tcp+tls://... (the password is used for HELLO)")
    ent = p.add_mutually_exclusive_group()
    ent.add_argument("--ent", action="store_true", default=None,
                     help="the server has Faktory Enterprise's features: run *.ent.case, skip *.oss.case "
                          "(default: when INFO's server.description mentions Enterprise)")
    ent.add_argument("--no-ent", dest="ent", action="store_false",
                     help="the server is open-source Faktory: skip *.ent.case, run *.oss.case")
    p.add_argument("--ours", action="store_true",
                   help="also run the *.ours.case files that need no server options: they pin faktory_py's "
                        "own behaviour, so other servers fail them (Faktory 1.9.4 even crashes on some); "
                        "and require faktory_py's whole replies in one read where a file ACCEPTS dotnet")
    p.add_argument("--cases", metavar="DIR", default=None, help="directory of *.case files "
                   "(default: protocol/cases of the source tree, or the copy installed with the package)")
    p.add_argument("-k", dest="substring", default=None, help="only case files whose name contains SUBSTRING")
    p.add_argument("--cafile", default=None, help="CA certificates to verify a tcp+tls:// server with")
    p.add_argument("--insecure", action="store_true", help="do not verify a tcp+tls:// server's certificate")
    return p


def main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        address = parse_url(args.url)
    except ValueError as exc:
        print(f"faktory-py conformance: {exc}", file=err)
        return 2
    address = Address(address.host, address.port, address.password, address.tls, args.cafile, args.insecure)
    try:
        paths = find_cases(args.cases)
    except FileNotFoundError as exc:
        print(f"faktory-py conformance: {exc}", file=err)
        return 2
    if args.substring:
        paths = [p for p in paths if args.substring in p.name]
    if not paths:
        print("faktory-py conformance: no case files to run", file=err)
        return 2
    try:
        hi = probe(address)
    except (OSError, ValueError) as exc:
        print(f"faktory-py conformance: cannot talk to {address.host}:{address.port}: {exc}", file=err)
        return 2
    server_has_password = bool(hi.get("s"))
    if server_has_password and address.password is None:
        print("faktory-py conformance: the server asks for a password; put it in the URL "
              "(tcp://:PASSWORD@host:port)", file=err)
        return 2
    ent = args.ent
    if ent is None:
        description = server_description(address)
        ent = bool(description and "Enterprise" in description)
        if ent:
            print(f"faktory-py conformance: the server calls itself {description!r}: running the "
                  "Enterprise cases (*.ent.case) and skipping *.oss.case; --no-ent overrides", file=err)
    results = run_all(address, paths, ours=args.ours, ent=ent, server_has_password=server_has_password)
    print_table(results, out)
    return 1 if any(r.status == "FAIL" for r in results) else 0
