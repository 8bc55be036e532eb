r"""Golden transcripts for clients we cannot install here: raw-socket replays of their requests.

Ruby `faktory_worker_ruby` 2.2.0, Elixir `faktory_worker`, Haskell `faktory`, .NET
`FaktoryWorker` and PHP `shalvah/faktory-php` cannot run on the project's machines, so each
one gets a transcript under tests/golden/<client>.txt: the request lines that client sends
and the exact reply bytes (or reply type and the fields it reads) it needs back.

* Ruby's request lines are the real bytes captured from the gem
  (the project's capture of faktory_worker_ruby 2.2.0, its `C:` lines, copied verbatim).
  The capture's `S:` lines came from a stand-in server and are not used: the replies here
  are what Faktory answers.
* The other four are written from the client survey (protocol/clients.md §1–§5), not from client code; where the survey gives no detail (a job's key order, a label's
  version) the line is a plausible instance of the documented shape.
* Lines the client would not send (setup that makes replies deterministic, checks of the
  stored result) are marked `harness` in the files and run on separate connections.

One pytest test per client and target: `[faktory_py-<client>]` against our server,
`[faktory-1.9.4-<client>]` against the real Faktory (tests/real_faktory.py; skipped
without FAKTORY_BIN, except under CI=true). A passing real-Faktory run is what makes the
expected replies "golden".

File format (one step per line; blank lines and `#` comments ignored):

| Step | Meaning |
|---|---|
| `SERVER password <pw>` | (anywhere) also start a server with this password, for `--- open <name> password` |
| `ACCEPTS <client>` | (anywhere) every reply must also be one this client can parse (see `ACCEPTORS`) |
| `VECTOR <pw> <salt> <i> <hex>` | `wire.handshake.hash_password` must give `<hex>` (the survey's test vectors) |
| `--- open <name> [password]` | open connection `<name>` (closing an old one of that name) to the plain or the password server, and make it current |
| `--- use <name>` | make the open connection `<name>` current |
| `HI` | read the greeting: exactly `+HI {"v":2}\r\n`, or on the password server the compact `+HI {"v":2,"i":<n>,"s":"<hex>"}\r\n` (remembered for `{{pwdhash}}`) |
| `C: <bytes>` | send exactly these bytes; write the terminator (`\n` or `\r\n`) out |
| `S: <bytes>` | the next reply must be exactly these bytes |
| `S~ <regex>` | the next reply (raw bytes, CRLF included) must match the regular expression (for values the server makes up, such as a batch id) |
| `S$ <json>` | the next reply must be a bulk string (length checked) holding a JSON object that matches `<json>` (see below); extra keys allowed |
| `S$= <json>` | the same, but objects must have exactly the template's keys, at every level |
| `S$ info [<json>]` | `S$` with the INFO template (`INFO_UNION`: every field some client reads, typed) deep-merged with `<json>` |
| `CLOSED` | the server closes the connection within 5 s and sends nothing more |
| `ELAPSED <min> <max>` | seconds from the last `C:` to the end of the last reply on this connection |

`[faktory_py] ` or `[faktory-1.9.4] ` before a step restricts it to that target (only for
differences DEVIATIONS.md lists as deliberate).

Escapes in `C:` and `S:`: `\r`, `\n`, `\t`, `\\` (one backslash), `\xHH`; any other backslash
is literal, so JSON's `\"` is written as is and a JSON `\n` escape as `\\n`. Placeholders in
`C:` lines: `{{pwdhash}}` (the server's password, hashed with the greeting's salt and `i`
rounds), `{{pwdhash:<pw>}}` (the same for another password), `{{at+<seconds>}}` (now plus
that many seconds, written as Ruby writes `at`: nine fractional digits and `+00:00`).

In JSON templates a string value `"<...>"` is a type: `<int>` (a JSON integer >= 0, not a
float, not a bool), `<number>` (integer or float >= 0), `<str>`, `<rfc3339>`, `<hms-utc>`
(`HH:MM:SS UTC`), `<semver>` (`x.y.z`), `<object>`, `<ints>` (an object whose values are all
`<int>`), `<any>`. Every other value must be equal, type included (`1` is not `1.0`).

Every reply, whatever the step, must be one RESP item the clients can all frame: it starts
with `+`, `-` or `$`, every line ends in `\r\n`, a bulk's length is its byte count and never
0 (`$-1` means nothing), and an error's code is `ERR` or `NOTUNIQUE`. For .NET every reply
must also arrive in a single read (faktory_py only; see `ONE_CHUNK`).

Enterprise features (batches, unique jobs, tracking) are built into faktory_py: their lines
carry `[faktory_py]` / `[faktory-1.9.4]` for what each server answers (DEVIATIONS.md §3, §4).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from faktory_py.tools.client import Address, Client, ProtocolError
from faktory_py.tools.conformance.runner import step_lines, unescape
from faktory_py.wire.handshake import hash_password
from real_faktory import OUR_SERVER_PARAM, REAL_FAKTORY_PARAM

GOLDEN = Path(__file__).resolve().parent / "golden"
CLIENTS = ["ruby-2.2.0", "elixir", "haskell", "dotnet", "php"]
READ_TIMEOUT = 5.0
CLOSE_TIMEOUT = 5.0

#: INFO, per protocol/clients.md §6: the union of what the clients read, with the types they need.
INFO_UNION: dict[str, Any] = {
    "now": "<rfc3339>",
    "server_utc_time": "<hms-utc>",
    "faktory": {
        "total_failures": "<int>", "total_processed": "<int>", "total_enqueued": "<int>",
        "total_queues": "<int>",
        "queues": "<ints>",
        "sets": {"scheduled": "<int>", "retries": "<int>", "dead": "<int>", "working": "<int>"},
        "tasks": {
            "Busy": {"size": "<int>", "reaped": "<int>"},
            "Workers": {"size": "<int>", "reaped": "<int>"},
            "Scheduled": {"size": "<int>"},
            "Retries": {"size": "<int>"},
            "Dead": {"size": "<int>"},
        },
    },
    "server": {
        "description": "<str>", "faktory_version": "<semver>", "uptime": "<int>",
        "connections": "<int>", "command_count": "<int>", "used_memory_mb": "<int>",
    },
}


class GoldenFailure(AssertionError):
    pass


# --- reply acceptors: what each client can parse (protocol/clients.md §1, §3) -----------


def _bulk_body(reply: bytes) -> bytes | None:
    """The payload of a bulk reply (None for `$-1` or a non-bulk)."""
    if not reply.startswith(b"$"):
        return None
    head, _, rest = reply.partition(b"\r\n")
    return None if int(head[1:]) < 0 else rest[:-2]


def accepts_elixir(reply: bytes) -> str | None:
    """Elixir decodes replies by exact prefixes; anything else is a FunctionClauseError."""
    if reply in (b"+OK\r\n", b"$-1\r\n") or reply.startswith((b"-ERR ", b"-SHUTDOWN ", b"-NOTUNIQUE ", b"+{")):
        return None
    body = _bulk_body(reply)
    if body is not None and body.startswith((b"{", b"b-")):
        return None
    return "Elixir only takes +OK\\r\\n, -ERR /-SHUTDOWN /-NOTUNIQUE , $-1, or a bulk body starting { or b-"


def accepts_ruby(reply: bytes) -> str | None:
    """Ruby: `+`, `$` and `-` only (anything else is a ParseError); it waits for \\r\\n."""
    return None if reply[:1] in (b"+", b"-", b"$") else "Ruby raises ParseError on this type byte"


def accepts_dotnet(reply: bytes) -> str | None:
    """.NET looks for "+OK" / "+HI" in raw chunks; errors and bulks are read whole (see ONE_CHUNK)."""
    return None if reply[:1] in (b"+", b"-", b"$") else ".NET cannot read this reply"


def accepts_php(reply: bytes) -> str | None:
    """PHP reads lines with fgets: a simple/error line, or a bulk header line then the body."""
    return None if reply[:1] in (b"+", b"-", b"$") else "PHP cannot read this reply"


def accepts_haskell(reply: bytes) -> str | None:
    return None if reply[:1] in (b"+", b"-", b"$") else "Haskell cannot read this reply"


ACCEPTORS: dict[str, Callable[[bytes], str | None]] = {
    "ruby": accepts_ruby, "elixir": accepts_elixir, "dotnet": accepts_dotnet,
    "php": accepts_php, "haskell": accepts_haskell,
}

#: Clients that need every reply to arrive in one read (the .NET client reads 8 KB chunks and
#: re-reads from scratch on a partial job; protocol/clients.md §1). Checked against
#: faktory_py only, which writes every reply with one send: Faktory 1.9.4 writes a reply in
#: pieces (`+` / `HI {...}` / `\r\n`, or `$n\r\n` / body / `\r\n`), so whether they reach the
#: client in one read there is a matter of timing.
ONE_CHUNK = {"dotnet"}


# --- the transcript format ---------------------------------------------------------------------


@dataclass
class Step:
    lineno: int
    kind: str
    arg: str
    target: str | None = None  # only on this target, if set


@dataclass
class Transcript:
    path: Path
    steps: list[Step] = field(default_factory=list)
    password: str | None = None
    acceptors: list[str] = field(default_factory=list)
    vectors: list[tuple[str, str, int, str]] = field(default_factory=list)


_STEP = re.compile(r"(?:\[([\w.-]+)\] )?(---|HI|C:|S:|S~|S\$=|S\$|CLOSED|ELAPSED)(?: (.*))?$")


def parse(path: Path) -> Transcript:
    t = Transcript(path)
    for lineno, line in step_lines(path):
        word, _, rest = line.partition(" ")
        if word == "SERVER":
            kind, _, pw = rest.partition(" ")
            if kind != "password" or not pw:
                raise ValueError(f"{path.name}:{lineno}: SERVER password <pw>")
            t.password = pw
            continue
        if word == "ACCEPTS":
            if rest not in ACCEPTORS:
                raise ValueError(f"{path.name}:{lineno}: unknown client {rest!r}")
            t.acceptors.append(rest)
            continue
        if word == "VECTOR":
            pw, salt, rounds, hexdigest = rest.split()
            t.vectors.append((pw, salt, int(rounds), hexdigest))
            continue
        m = _STEP.match(line)
        if m is None:
            raise ValueError(f"{path.name}:{lineno}: cannot parse {line!r}")
        target, kind, arg = m.group(1), m.group(2), m.group(3) or ""
        if target not in (None, OUR_SERVER_PARAM, REAL_FAKTORY_PARAM):
            raise ValueError(f"{path.name}:{lineno}: unknown target {target!r}")
        t.steps.append(Step(lineno, kind, arg, target))
    return t


def ruby_time(at: float) -> str:
    """A time as Ruby's client writes `at`: `2026-11-26T10:00:00.123456789+00:00`."""
    stamp = dt.datetime.fromtimestamp(int(at), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{int((at % 1) * 1e9):09d}+00:00"


# --- JSON templates -----------------------------------------------------------------------------

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_TYPES: dict[str, Callable[[Any], bool]] = {
    "<int>": _is_int,
    "<number>": lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0),
    "<str>": lambda v: isinstance(v, str),
    "<rfc3339>": lambda v: isinstance(v, str) and _RFC3339.fullmatch(v) is not None,
    "<hms-utc>": lambda v: isinstance(v, str) and re.fullmatch(r"\d\d:\d\d:\d\d UTC", v) is not None,
    "<semver>": lambda v: isinstance(v, str) and re.fullmatch(r"\d+\.\d+\.\d+", v) is not None,
    "<object>": lambda v: isinstance(v, dict),
    "<ints>": lambda v: isinstance(v, dict) and all(_is_int(x) for x in v.values()),
    "<any>": lambda v: True,
}


def match(template: Any, value: Any, exact_keys: bool, path: str = "$") -> list[str]:
    """Differences between a reply's JSON and a template (empty when it matches)."""
    if isinstance(template, str) and template in _TYPES:
        return [] if _TYPES[template](value) else [f"{path}: {value!r} is not {template}"]
    if isinstance(template, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        problems = []
        for key, sub in template.items():
            if key not in value:
                problems.append(f"{path}: missing key {key!r}")
            else:
                problems += match(sub, value[key], exact_keys, f"{path}.{key}")
        if exact_keys and set(value) != set(template):
            problems.append(f"{path}: unexpected keys {sorted(set(value) - set(template))}")
        return problems
    if isinstance(template, list):
        if not isinstance(value, list) or len(value) != len(template):
            return [f"{path}: expected {template!r}, got {value!r}"]
        return [p for i, (t, v) in enumerate(zip(template, value)) for p in match(t, v, exact_keys, f"{path}[{i}]")]
    if type(template) is not type(value) or template != value:
        return [f"{path}: expected {template!r}, got {value!r}"]
    return []


def deep_merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for key, value in extra.items():
            out[key] = deep_merge(base[key], value) if key in base else value
        return out
    return extra


# --- running a transcript ---------------------------------------------------------------------


def check_framing(reply: bytes) -> str | None:
    """What every client needs (§3.1, §3.8): a known type byte, CRLF lines, ERR/NOTUNIQUE codes."""
    if reply[:1] not in (b"+", b"-", b"$"):
        return "reply type byte is not +, - or $"
    head, sep, rest = reply.partition(b"\r\n")
    if not sep or b"\n" in head or b"\r" in head:
        return "reply line does not end in \\r\\n (or has a bare CR/LF inside)"
    if reply.startswith(b"$"):
        n = int(head[1:])
        if n == 0:
            return "$0 (clients need $-1 for nothing)"
        if n > 0 and (len(rest) != n + 2 or not rest.endswith(b"\r\n")):
            return f"bulk length {n} does not match the payload"
    if reply.startswith(b"-"):
        code = head[1:].split(b" ", 1)[0]
        if code not in (b"ERR", b"NOTUNIQUE"):
            return f"error code {code!r}: clients only know ERR and NOTUNIQUE"
    return None


class Runner:
    def __init__(self, transcript: Transcript, target: str, factory: Callable[..., Any]) -> None:
        self.t = transcript
        self.target = target
        self.factory = factory
        self.servers: dict[str | None, Any] = {}
        self.conns: dict[str, Client] = {}
        self.current: Client | None = None
        self.one_chunk: list[Client] = []  # connections whose every reply must come in one read
        self.replies = 0

    def server(self, password: str | None) -> Any:
        if password not in self.servers:
            self.servers[password] = self.factory(password=password)
        return self.servers[password]

    def fail(self, step: Step, message: str) -> None:
        raise GoldenFailure(f"{self.t.path.name}:{step.lineno}: {step.kind} {step.arg}\n  {message}")

    def conn(self, step: Step) -> Client:
        if self.current is None:
            self.fail(step, "no open connection (use `--- open <name>`)")
        return self.current

    def expand(self, text: str, conn: Client) -> str:
        def sub(m: re.Match[str]) -> str:
            name, _, arg = m.group(1).partition(":")
            if name == "pwdhash":
                if "s" not in conn.greeting:
                    raise GoldenFailure("{{pwdhash}} on a connection whose greeting has no salt")
                password = arg or conn.address.password or ""
                return hash_password(password, conn.greeting["s"], conn.greeting["i"])
            if name.startswith("at+"):
                return ruby_time(time.time() + float(name[3:]))
            raise GoldenFailure(f"unknown placeholder {m.group(0)}")
        return re.sub(r"\{\{([^}]+)\}\}", sub, text)

    def read(self, step: Step, greeting: bool = False) -> bytes:
        conn = self.conn(step)
        try:
            reply = conn.reply()
        except TimeoutError:
            self.fail(step, f"no (complete) reply within {READ_TIMEOUT} s; buffered {conn.reader.unread()!r}")
        except (ProtocolError, ConnectionError) as e:
            self.fail(step, f"{e}; buffered {conn.reader.unread()!r}")
        if conn in self.one_chunk and conn.reads > 1:
            self.fail(step, f"reply arrived in {conn.reads} reads, not one: {reply!r}")
        problem = check_framing(reply)
        for client in () if greeting else self.t.acceptors:
            problem = problem or ACCEPTORS[client](reply)
        if problem:
            self.fail(step, f"{problem}: {reply!r}")
        self.replies += 1
        return reply

    def bulk_json(self, step: Step, template: Any, exact: bool) -> None:
        reply = self.read(step)
        body = _bulk_body(reply)
        if body is None:
            self.fail(step, f"expected a bulk string, got {reply!r}")
        try:
            value = json.loads(body)
        except ValueError as e:
            self.fail(step, f"bulk body is not JSON ({e}): {body!r}")
        problems = match(template, value, exact)
        if problems:
            self.fail(step, "; ".join(problems) + f"\n  reply: {reply!r}")

    def run(self) -> None:
        for pw, salt, rounds, hexdigest in self.t.vectors:
            assert hash_password(pw, salt, rounds) == hexdigest, f"test vector {pw}/{salt}/{rounds}"
        try:
            for step in self.t.steps:
                if step.target is None or step.target == self.target:
                    self.step(step)
        finally:
            for conn in self.conns.values():
                conn.close()

    def step(self, step: Step) -> None:
        kind, arg = step.kind, step.arg
        if kind == "---":
            verb, _, rest = arg.partition(" ")
            name, _, opt = rest.partition(" ")
            if verb == "open":
                if opt not in ("", "password") or (opt and self.t.password is None):
                    self.fail(step, "`--- open <name> [password]` (password needs SERVER password)")
                if name in self.conns:
                    self.conns.pop(name).close()
                password = self.t.password if opt else None
                server = self.server(password)
                self.conns[name] = Client(Address("127.0.0.1", server.port, password), timeout=READ_TIMEOUT, raw=True)
                self.current = self.conns[name]
                if ONE_CHUNK & set(self.t.acceptors) and self.target == OUR_SERVER_PARAM:
                    self.one_chunk.append(self.current)
            elif verb == "use" and name in self.conns and not opt:
                self.current = self.conns[name]
            else:
                self.fail(step, "expected `--- open <name> [password]` or `--- use <open name>`")
        elif kind == "HI":
            conn = self.conn(step)
            reply = self.read(step, greeting=True)
            if conn.address.password is None:
                if reply != b'+HI {"v":2}\r\n':
                    self.fail(step, f"expected +HI {{\"v\":2}}\\r\\n, got {reply!r}")
                conn.greeting = {"v": 2}
            else:
                m = re.fullmatch(rb'\+HI \{"v":2,"i":(\d+),"s":"([0-9a-f]+)"\}\r\n', reply)
                if m is None:
                    self.fail(step, f"expected a compact +HI with v, i, s (in that order), got {reply!r}")
                conn.greeting = {"v": 2, "i": int(m.group(1)), "s": m.group(2).decode()}
        elif kind == "C:":
            conn = self.conn(step)
            try:
                conn.send(unescape(self.expand(arg, conn)))
            except OSError as e:
                self.fail(step, f"send failed: {e!r}")
        elif kind == "S:":
            expected = unescape(arg)
            reply = self.read(step)
            if reply != expected:
                self.fail(step, f"expected {expected!r}\n  got      {reply!r}")
        elif kind == "S~":
            reply = self.read(step)
            if re.fullmatch(arg.encode(), reply, re.DOTALL) is None:
                self.fail(step, f"expected a reply matching /{arg}/\n  got      {reply!r}")
        elif kind in ("S$", "S$="):
            if arg == "info" or arg.startswith("info "):
                extra = json.loads(arg[5:]) if arg.startswith("info ") else {}
                self.bulk_json(step, deep_merge(INFO_UNION, extra), kind == "S$=")
            else:
                self.bulk_json(step, json.loads(arg), kind == "S$=")
        elif kind == "CLOSED":
            conn = self.conn(step)
            try:
                extra = conn.wait_closed(CLOSE_TIMEOUT)
            except TimeoutError:
                self.fail(step, f"server did not close within {CLOSE_TIMEOUT} s")
            if extra:
                self.fail(step, f"server sent more before closing: {extra!r}")
        elif kind == "ELAPSED":
            conn = self.conn(step)
            low, high = (float(x) for x in arg.split())
            took = conn.replied_at - conn.sent_at
            if not low <= took <= high:
                self.fail(step, f"took {took:.3f} s")
        else:  # pragma: no cover - the regex admits nothing else
            self.fail(step, "unknown step")


@pytest.mark.parametrize("client", CLIENTS)
def test_golden_transcript(client: str, any_server_factory, request: pytest.FixtureRequest) -> None:
    """Replay tests/golden/<client>.txt against a fresh server (ours, then the real Faktory)."""
    target = request.node.callspec.params["any_server_factory"]
    transcript = parse(GOLDEN / f"{client}.txt")
    runner = Runner(transcript, target, any_server_factory)
    runner.run()
    assert runner.replies > 0
