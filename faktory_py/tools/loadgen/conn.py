"""The load generator's connection: the one client (`tools.client`) with hiredis as its reader.

Replies are parsed by hiredis (C) behind the client's reader shape, so reading a thousand
`+OK`s costs the generator far less than the server spends producing them. Everything here
is synchronous: each connection belongs to one thread of one load-generator process (see
`pool`), which pipelines with `send` and `replies`.
"""

from __future__ import annotations

import os
import socket

import hiredis

from ..client import Address, Client, ProtocolError, ReplyError

__all__ = ["BenchError", "Conn", "ReplyError"]


class BenchError(Exception):
    """The bench cannot go on (bad URL, refused handshake ...); the message says why."""


class Conn(Client):
    """A connected, identified client. `wid` makes it a worker connection (FETCH, BEAT)."""

    def __init__(self, target: Address, wid: str | None = None, timeout: float = 30.0) -> None:
        super().__init__(target, timeout=timeout, reader=hiredis.Reader(replyError=ReplyError))
        self.wid = wid
        hello = {"hostname": socket.gethostname(), "pid": os.getpid(), "v": 2, "labels": ["bench"]}
        if wid:
            hello["wid"] = wid
        try:
            reply = self.hello(hello)
        except ProtocolError as exc:
            self.close()
            raise BenchError(str(exc)) from None
        except ReplyError as exc:
            self.close()
            if self.greeting.get("s") and target.password is None:
                raise BenchError("the server wants a password: put it in the URL, "
                                 "tcp://:PASSWORD@host:port") from None
            raise BenchError(f"HELLO refused: {exc}") from None
        except BaseException:
            self.close()
            raise
        if reply != b"OK":
            self.close()
            raise BenchError(f"HELLO refused: {reply!r}")
