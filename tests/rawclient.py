"""A deliberately small blocking Faktory client for black-box tests.

It speaks raw bytes (so tests can send malformed lines and check exact reply bytes) and
parses replies with hiredis, the RESP parser we use everywhere outside the server.
Real client libraries are tested separately: this is for the protocol core only.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from typing import Any

import hiredis

from faktory_py.wire.handshake import hash_password

TIMEOUT = 10.0


class ReplyError(Exception):
    """A `-CODE message` reply; `str(e)` is the line without the leading `-`."""


class RawClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = hiredis.Reader(replyError=ReplyError)
        self.greeting: dict[str, Any] | None = None

    # --- raw bytes --------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_raw(self, expected: int | None = None) -> bytes:
        """Read whatever arrives (or exactly `expected` bytes)."""
        if expected is None:
            return self.sock.recv(65536)
        buf = b""
        while len(buf) < expected:
            chunk = self.sock.recv(expected - len(buf))
            if not chunk:
                break
            buf += chunk
        return buf

    def recv_until_closed(self) -> bytes:
        """Everything that arrives until the server closes the connection (EOF or a reset)."""
        data = b""
        try:
            while chunk := self.recv_raw():
                data += chunk
        except ConnectionResetError:
            pass
        return data

    def closed_by_peer(self, within: float = 5.0) -> bool:
        """True if the server closes the connection (EOF) within `within` seconds."""
        self.sock.settimeout(within)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (TimeoutError, socket.timeout):
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(TIMEOUT)

    # --- RESP -------------------------------------------------------------------

    def reply(self) -> Any:
        """Next reply: bytes (simple or bulk: tests that care read raw bytes), None for $-1.

        Raises ReplyError for `-` replies.
        """
        while True:
            item = self.reader.gets()
            if item is not False:
                break
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.reader.feed(data)
        if isinstance(item, ReplyError):
            raise item
        return item

    def command(self, line: str) -> Any:
        self.send_raw(line.encode() + b"\r\n")
        return self.reply()

    def json_command(self, verb: str, payload: Any) -> Any:
        return self.command(f"{verb} {json.dumps(payload, separators=(',', ':'))}")

    # --- conveniences -----------------------------------------------------------

    def handshake(self, password: str | None = None, **hello: Any) -> Any:
        hi = self.reply()
        assert isinstance(hi, bytes) and hi.startswith(b"HI "), hi
        self.greeting = json.loads(hi[3:])
        hello.setdefault("v", 2)
        if password is not None and "s" in self.greeting:
            rounds = self.greeting["i"] if hello.get("v", 0) >= 2 else 1
            hello["pwdhash"] = hash_password(password, self.greeting["s"], rounds)
        return self.json_command("HELLO", hello)

    def push(self, job: dict[str, Any]) -> Any:
        return self.json_command("PUSH", job)

    def fetch(self, *queues: str) -> dict[str, Any] | None:
        body = self.command("FETCH " + " ".join(queues))
        return None if body is None else json.loads(body)

    def info(self) -> dict[str, Any]:
        return json.loads(self.command("INFO"))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_jid() -> str:
    return hashlib.sha1(str(time.perf_counter_ns()).encode()).hexdigest()[:24]
