"""The connection handshake: our ``+HI`` greeting and the client's ``HELLO`` (spec §2).

Faktory decodes HELLO into a Go struct, so type mismatches that Python's json would let
through (``"pid":"12"``, ``"v":300``) fail there and the connection closes without a reply.
We reproduce that strictness, while tolerating every shape real clients send: absent fields,
``null``, ``""`` and JSON with spaces (protocol/clients.md §2).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import secrets
from dataclasses import dataclass
from typing import Any, NoReturn

from ..errors import FaktoryPyError
from ..util.jsoncodec import compact_json
from . import replies

PROTOCOL_VERSION = 2
INVALID_PASSWORD = replies.error("Invalid password")

_HELLO_PREFIX = b"HELLO {"
_INT64 = range(-(2**63), 2**63)
_UINT8 = range(256)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class PasswordHash:
    """SHA-256 applied ``iterations`` times to ``password + salt`` (at least once), in steps.

    Every round after the first hashes the raw 32-byte digest, not its hex text. 8,000
    rounds cost a few milliseconds of CPU that no thread can take off the event loop (the
    GIL is held for such short inputs), so the server runs them `ROUNDS_PER_STEP` at a
    time and lets other connections run in between (server/tcp.py `Connections._verify`).
    """

    ROUNDS_PER_STEP = 256

    def __init__(self, password: str, salt: str, iterations: int) -> None:
        self._digest = hashlib.sha256((password + salt).encode("utf-8")).digest()
        self._left = max(iterations, 1) - 1

    @property
    def done(self) -> bool:
        return self._left == 0

    def step(self, rounds: int = ROUNDS_PER_STEP) -> None:
        """Run up to `rounds` more rounds."""
        count = min(rounds, self._left)
        digest, sha256 = self._digest, hashlib.sha256
        for _ in range(count):
            digest = sha256(digest).digest()
        self._digest, self._left = digest, self._left - count

    def hexdigest(self) -> str:
        """The result; runs whatever rounds are left first."""
        self.step(self._left)
        return self._digest.hex()


def hash_password(password: str, salt: str, iterations: int) -> str:
    """Hex of `PasswordHash`, all rounds at once."""
    return PasswordHash(password, salt, iterations).hexdigest()


@dataclass(frozen=True)
class Hello:
    """What a client said about itself. A non-empty ``wid`` makes it a worker process;
    producers send none (or ``""``, or ``null``)."""

    wid: str = ""
    hostname: str = ""
    pid: int = 0
    labels: tuple[str, ...] = ()
    v: int = 0
    pwdhash: str = ""
    username: str = ""
    rss_kb: int = 0

    @property
    def is_worker(self) -> bool:
        return bool(self.wid)


class HandshakeFailed(FaktoryPyError):
    """The handshake cannot continue. Send ``reply`` if it is not None, then close.

    Faktory answers only a wrong password; a bad preamble or undecodable HELLO (often a
    TLS/plain-text mismatch) is closed silently, so ``reply`` is None for those.
    """

    def __init__(self, reason: str, reply: bytes | None = None) -> None:
        super().__init__(reason)
        self.reply = reply


class Handshake:
    """One connection's handshake: send :attr:`greeting`, then pass the first line to
    :meth:`receive_hello`.

    With a password, every connection gets a fresh iteration count and salt so a captured
    HELLO cannot be replayed on another connection. An empty password means none, as in
    Faktory.
    """

    def __init__(self, password: str | None, rng: random.Random | None = None) -> None:
        rng = rng if rng is not None else secrets.SystemRandom()
        self._password = password or None
        hi: dict[str, Any] = {"v": PROTOCOL_VERSION}
        if self._password is not None:
            self._iterations = rng.randint(4000, 8095)
            self._salt = format(rng.getrandbits(63), "x")
            hi["i"] = self._iterations
            hi["s"] = self._salt
        # Compact: the Node client splits the greeting on spaces.
        self.greeting = replies.simple("HI " + compact_json(hi))

    def receive_hello(self, line: bytes) -> Hello:
        """Parse and authenticate the HELLO line (terminator already stripped), all at once."""
        hello = self.parse_hello(line)
        hashed = self.password_hash(hello)
        if hashed is not None:
            self.authenticate(hello, hashed)
        return hello

    def parse_hello(self, line: bytes) -> Hello:
        """Decode the HELLO line; `authenticate` must follow when `password_hash` is not None."""
        if not line.startswith(_HELLO_PREFIX):
            raise HandshakeFailed("expected HELLO")
        try:
            return _decode_hello(line[len(_HELLO_PREFIX) - 1 :])
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            raise HandshakeFailed(f"invalid HELLO: {exc}") from None

    def password_hash(self, hello: Hello) -> PasswordHash | None:
        """The hash this HELLO's `pwdhash` must equal, still to be run; None without a password."""
        if self._password is None:
            return None
        # Protocol 1 clients (and cdrx, which sends no "v") hash exactly once.
        return PasswordHash(self._password, self._salt, self._iterations if hello.v >= 2 else 1)

    def authenticate(self, hello: Hello, hashed: PasswordHash) -> None:
        """Raise unless `pwdhash` matches `hashed` (exact, constant-time)."""
        given = hello.pwdhash.encode("utf-8", errors="replace")
        if not hmac.compare_digest(hashed.hexdigest().encode("ascii"), given):
            raise HandshakeFailed("invalid password", INVALID_PASSWORD)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"invalid JSON value {name}")


def _decode_hello(data: bytes) -> Hello:
    """Decode the HELLO object with Go's ``encoding/json`` rules for its struct fields."""
    # Go replaces invalid UTF-8 rather than failing, and has no NaN or Infinity.
    obj = json.loads(data.decode("utf-8", errors="replace"), parse_constant=_reject_constant)
    if not isinstance(obj, dict):
        raise ValueError("HELLO is not a JSON object")
    labels = obj.get("labels")
    if labels is None:
        labels = []
    elif not isinstance(labels, list):
        raise ValueError("labels must be an array of strings")
    return Hello(
        wid=_string(obj, "wid"),
        hostname=_string(obj, "hostname"),
        pid=_integer(obj, "pid", _INT64),
        labels=tuple(_go_string("labels", label) for label in labels),
        v=_integer(obj, "v", _UINT8),
        pwdhash=_string(obj, "pwdhash"),
        username=_string(obj, "username"),
        rss_kb=_integer(obj, "rss_kb", _INT64),
    )


def _string(obj: dict[str, Any], key: str) -> str:
    return _go_string(key, obj.get(key))


def _go_string(key: str, value: Any) -> str:
    """A Go string field: null leaves it empty; lone surrogates become U+FFFD as in Go."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return _LONE_SURROGATE.sub("\ufffd", value)


def _integer(obj: dict[str, Any], key: str, valid: range) -> int:
    """A Go integer field: a JSON number without fraction or exponent, within its type."""
    value = obj.get(key)
    if value is None:
        return 0
    # bool is an int subclass in Python but never a number in JSON.
    if type(value) is not int or value not in valid:
        raise ValueError(f"{key} must be an integer in [{valid.start}, {valid.stop - 1}]")
    return value
