"""The one blocking Faktory client every tool and test talks to a server with.

Three parts, so each user takes only what it needs:

* `parse_url` / `Address`: where the server is, from the `tcp://[:password@]host[:port]` or
  `tcp+tls://…` URL every Faktory client takes.
* `ReplyReader`: a sans-io RESP reply parser with hiredis's shape (`feed(bytes)`, `gets()` ->
  a reply or False). It checks every bulk's framing (the body ends in `\\r\\n` exactly at the
  announced length), which hiredis does not, so tests that read JSON out of replies also check
  the length the server sent. `raw=True` gives each reply's exact bytes instead (the protocol
  cases compare bytes). The load generator swaps in hiredis's C reader behind the same shape.
* `Client`: a blocking socket (plain or TLS) that sends bytes, reads replies through the
  reader, does the HELLO handshake (`wire.handshake.hash_password`), and can wait for the
  server to close. Pipelining works: `send` many commands, then `replies(n)`.

Standard library only (no trio): the conformance checker must run from anywhere.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from ..util.ports import DEFAULT_PORT
from ..wire.handshake import hash_password

TIMEOUT = 10.0
_RECV = 262144
#: what a peer's close looks like on a plain or a TLS socket
_CLOSED = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ssl.SSLEOFError,
           ssl.SSLZeroReturnError)


# --- where the server is -----------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    host: str
    port: int = DEFAULT_PORT
    password: str | None = None
    tls: bool = False
    cafile: str | None = None
    insecure: bool = False

    def connect(self, timeout: float = TIMEOUT) -> socket.socket:
        """A connected socket (TLS-wrapped for `tcp+tls://`), with Nagle off: clients that
        write a command in pieces mean each piece to go out."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self.tls:
                return sock
            context = ssl.create_default_context(cafile=self.cafile)
            if self.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def parse_url(url: str) -> Address:
    """`tcp://[:password@]host[:port]` or `tcp+tls://…`; the scheme may be left out.

    Raises ValueError for another scheme or a bad port.
    """
    parsed = urlparse(url if "://" in url else "tcp://" + url)
    if parsed.scheme not in ("tcp", "tcp+tls"):
        raise ValueError(f"unsupported URL scheme {parsed.scheme!r}: use tcp:// or tcp+tls://")
    try:
        port = parsed.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"invalid port in {url!r}") from None
    password = unquote(parsed.password) if parsed.password else None
    return Address(parsed.hostname or "127.0.0.1", port, password, parsed.scheme == "tcp+tls")


# --- replies -----------------------------------------------------------------------------


class ReplyError(Exception):
    """A `-CODE message` reply; `str(e)` is the line without the leading `-`."""


class ProtocolError(Exception):
    """The server sent something that is not a well-framed reply (or not the greeting)."""


class Reader(Protocol):
    """hiredis.Reader's shape, which `ReplyReader` has too."""

    def feed(self, data: bytes) -> None: ...

    def gets(self) -> Any: ...


_BULK_LENGTH = re.compile(rb"-1|0|[1-9][0-9]*")


class ReplyReader:
    """Splits a byte stream into RESP replies (protocol/spec.md §1): `+line`, `-line`, `$n`.

    `gets()` returns the next whole reply, or False until enough bytes are fed. Parsed
    (default): `+X` -> b"X", `-X` -> a `ReplyError("X")` instance (returned, as hiredis does,
    so pipelined replies after it are not lost), `$-1` -> None, a bulk -> its body; a line
    must end in `\\r\\n`. Raw: the reply's bytes exactly as sent, a line through its `\\n`
    (whatever precedes it), a bulk with its body. Both raise ProtocolError for a bulk whose
    header or body does not match its length.
    """

    def __init__(self, raw: bool = False) -> None:
        self.raw = raw
        self._buf = b""
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buf = self._buf[self._pos:] + data
        self._pos = 0

    def unread(self) -> bytes:
        """The bytes fed but not returned yet."""
        return self._buf[self._pos:]

    def gets(self) -> Any:
        buf, start = self._buf, self._pos
        newline = buf.find(b"\n", start)
        if newline < 0:
            return False
        end = newline + 1
        crlf = buf[newline - 1:newline] == b"\r" and newline > start
        kind = buf[start:start + 1]
        if kind == b"$":
            header = buf[start + 1:newline - 1]
            if not crlf or _BULK_LENGTH.fullmatch(header) is None:
                raise ProtocolError(f"bad bulk header {buf[start:end]!r}")
            length = int(header)
            if length >= 0:
                body_end = end + length + 2
                if len(buf) < body_end:
                    return False
                if buf[body_end - 2:body_end] != b"\r\n":
                    raise ProtocolError(f"bulk length {length} does not match its body: {buf[start:body_end + 20]!r}")
                self._pos = body_end
                return buf[start:body_end] if self.raw else buf[end:body_end - 2]
            self._pos = end
            return buf[start:end] if self.raw else None
        self._pos = end
        if self.raw:
            return buf[start:end]
        if not crlf:
            raise ProtocolError(f"reply line does not end in \\r\\n: {buf[start:end]!r}")
        if kind == b"+":
            return buf[start + 1:newline - 1]
        if kind == b"-":
            return ReplyError(buf[start + 1:newline - 1].decode("utf-8", errors="replace"))
        raise ProtocolError(f"unknown reply type {buf[start:end]!r}")


# --- the client ----------------------------------------------------------------------------


class Client:
    """One connection. `raw=True` reads replies as exact bytes (see `ReplyReader`); `reader`
    replaces the reader (the load generator passes hiredis's).

    `sent_at` / `replied_at` (monotonic) are when the last `send` began and the last reply
    was complete; `reads` is how many socket reads that reply needed (0 if it was already
    buffered), so a caller can check a reply arrived in one piece.
    """

    def __init__(self, address: Address, *, timeout: float = TIMEOUT, raw: bool = False,
                 reader: Reader | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.sock = address.connect(timeout)
        self.reader: Reader = ReplyReader(raw) if reader is None else reader
        self.raw = raw
        self.greeting: dict[str, Any] = {}
        self.sent_at = self.replied_at = time.monotonic()
        self.reads = 0

    # --- bytes -----------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sent_at = time.monotonic()
        self.sock.sendall(data)

    def recv_raw(self, expected: int | None = None) -> bytes:
        """Bytes straight from the socket, past the reader: whatever arrives, or exactly
        `expected` bytes (fewer if the server closes)."""
        if expected is None:
            return self.sock.recv(_RECV)
        buf = b""
        while len(buf) < expected:
            chunk = self.sock.recv(expected - len(buf))
            if not chunk:
                break
            buf += chunk
        return buf

    def wait_closed(self, within: float | None = None) -> bytes:
        """Wait until the server closes the connection (EOF or a reset); return what arrived
        that no reply was read for (b"" for a silent close). TimeoutError if it stays open
        `within` seconds (default: the client's timeout)."""
        # hiredis does not hand back what it was fed: only our reader can say what is unread
        unread = self.reader.unread() if isinstance(self.reader, ReplyReader) else b""
        within = self.timeout if within is None else within
        deadline = time.monotonic() + within
        data = b""
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(_RECV)
                except _CLOSED:
                    return unread + data
                except TimeoutError:
                    break
                if not chunk:
                    return unread + data
                data += chunk
        finally:
            self.sock.settimeout(self.timeout)
        raise TimeoutError(f"the server did not close the connection within {within}s; "
                           f"it sent {unread + data!r}")

    def closed_by_peer(self, within: float = 5.0) -> bool:
        """True if the server closes the connection within `within` seconds (what it sends
        first is dropped)."""
        try:
            self.wait_closed(within)
        except TimeoutError:
            return False
        return True

    # --- replies ---------------------------------------------------------------------

    def item(self) -> Any:
        """The next reply as the reader gives it (a ReplyError instance, not raised)."""
        reader, reads = self.reader, 0
        item = reader.gets()
        while item is False:
            data = self.sock.recv(_RECV)
            if not data:
                raise ConnectionError("server closed the connection")
            reader.feed(data)
            reads += 1
            item = reader.gets()
        self.reads = reads
        self.replied_at = time.monotonic()
        return item

    def reply(self) -> Any:
        """The next reply: bytes, None for `$-1`; a `-` reply is raised as ReplyError."""
        item = self.item()
        if isinstance(item, ReplyError):
            raise item
        return item

    def replies(self, count: int) -> list[Any]:
        """The next `count` replies (errors as instances), with as few reads as the server
        allows: the load generator's pipelined batches."""
        out: list[Any] = []
        reader, recv = self.reader, self.sock.recv
        while True:
            item = reader.gets()
            while item is not False:
                out.append(item)
                if len(out) == count:
                    self.replied_at = time.monotonic()
                    return out
                item = reader.gets()
            data = recv(_RECV)
            if not data:
                raise ConnectionError("server closed the connection")
            reader.feed(data)

    def command(self, line: str | bytes) -> Any:
        """Send one command line (CRLF added) and return its reply (see `reply`)."""
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def json_command(self, verb: str, payload: Any) -> Any:
        return self.command(f"{verb} {json.dumps(payload, separators=(',', ':'))}")

    # --- the handshake -------------------------------------------------------------------

    def greet(self) -> dict[str, Any]:
        """Read the `+HI` greeting; its JSON is returned and kept in `greeting`."""
        hi = self.reply()
        prefix = b"+HI " if self.raw else b"HI "
        if not isinstance(hi, bytes) or not hi.startswith(prefix):
            raise ProtocolError(f"expected a +HI greeting, got {hi!r}")
        try:
            self.greeting = json.loads(hi[len(prefix):])
        except ValueError:
            raise ProtocolError(f"expected a +HI greeting, got {hi!r}") from None
        return self.greeting

    def hello(self, fields: dict[str, Any], password: str | None = None) -> Any:
        """`greet`, then send `HELLO fields` and return its reply.

        When the greeting has a salt and a password is known (`password`, else the address's),
        `pwdhash` is added: `i` rounds for `"v"` >= 2, one round before (as Faktory checks).
        """
        self.greet()
        password = self.address.password if password is None else password
        if self.greeting.get("s") and password is not None:
            rounds = int(self.greeting.get("i", 1)) if fields.get("v", 0) >= 2 else 1
            fields = {**fields, "pwdhash": hash_password(password, self.greeting["s"], rounds)}
        self.send(b"HELLO " + json.dumps(fields, separators=(",", ":")).encode() + b"\r\n")
        return self.reply()

    def handshake(self, password: str | None = None, **fields: Any) -> Any:
        """`hello` with `"v": 2` unless given."""
        fields.setdefault("v", 2)
        return self.hello(fields, password)

    # --- conveniences (parsed replies) ---------------------------------------------------

    def push(self, job: dict[str, Any]) -> Any:
        return self.json_command("PUSH", job)

    def fetch(self, *queues: str) -> dict[str, Any] | None:
        body = self.command("FETCH " + " ".join(queues))
        return None if body is None else json.loads(body)

    def info(self) -> dict[str, Any]:
        return json.loads(self.command("INFO"))

    def shutdown(self) -> None:
        """Wake a thread blocked reading this connection (it sees end of stream)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
