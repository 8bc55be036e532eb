"""One blocking client connection that can pipeline: write many commands, then read the replies.

The replies are parsed by hiredis (C), so reading a thousand `+OK`s costs the generator far
less than the server spends producing them. Everything here is synchronous: each
connection belongs to one thread of one load-generator process (see `pool`).
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

import hiredis

from ...wire.handshake import hash_password

DEFAULT_PORT = 7419
_RECV = 262144


class ReplyError(Exception):
    """A `-ERR ...` reply."""


class BenchError(Exception):
    """The bench cannot go on (bad URL, refused handshake ...); the message says why."""


@dataclass(frozen=True)
class Target:
    """Where the server is: from a `tcp://[:password@]host[:port]` URL."""

    host: str
    port: int
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> Target:
        if "://" not in url:
            url = "tcp://" + url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "tcp":
            raise BenchError(f"unsupported URL scheme {parts.scheme!r}: use tcp://host:port")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise BenchError(f"invalid port in {url!r}") from None
        password = urllib.parse.unquote(parts.password) if parts.password else None
        return cls(parts.hostname or "localhost", port, password)


class Conn:
    """A connected, identified client. `wid` makes it a worker connection (FETCH, BEAT)."""

    def __init__(self, target: Target, wid: str | None = None, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((target.host, target.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader(replyError=ReplyError)
        self.wid = wid
        try:
            self._handshake(target, wid)
        except BaseException:
            self.sock.close()
            raise

    def _handshake(self, target: Target, wid: str | None) -> None:
        hi = self.reply()
        if not isinstance(hi, bytes) or not hi.startswith(b"HI "):
            raise BenchError(f"unexpected greeting {hi!r}")
        greeting = json.loads(hi[3:])
        hello: dict[str, Any] = {"hostname": socket.gethostname(), "pid": os.getpid(), "v": 2,
                                 "labels": ["bench"]}
        if wid:
            hello["wid"] = wid
        if "s" in greeting:
            if target.password is None:
                raise BenchError("the server wants a password: put it in the URL, tcp://:PASSWORD@host:port")
            hello["pwdhash"] = hash_password(target.password, greeting["s"], greeting.get("i", 1))
        reply = self.command(b"HELLO " + json.dumps(hello, separators=(",", ":")).encode())
        if reply != b"OK":
            raise BenchError(f"HELLO refused: {reply!r}")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> Any:
        """The next reply: bytes, None for a null bulk, or a ReplyError instance (not raised)."""
        reader = self.reader
        item = reader.gets()
        while item is False:
            data = self.sock.recv(_RECV)
            if not data:
                raise ConnectionError("server closed the connection")
            reader.feed(data)
            item = reader.gets()
        return item

    def replies(self, count: int) -> list[Any]:
        """The next `count` replies, read with as few recv calls as the server allows."""
        out: list[Any] = []
        reader, recv = self.reader, self.sock.recv
        while True:
            item = reader.gets()
            while item is not False:
                out.append(item)
                if len(out) == count:
                    return out
                item = reader.gets()
            data = recv(_RECV)
            if not data:
                raise ConnectionError("server closed the connection")
            reader.feed(data)

    def command(self, line: bytes) -> Any:
        self.send(line + b"\r\n")
        reply = self.reply()
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def info(self) -> dict[str, Any]:
        return json.loads(self.command(b"INFO"))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def shutdown(self) -> None:
        """Wake a thread blocked reading this connection (it sees end of stream)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
