"""Logging what the server refuses a client, with the client's address, without flooding.

Why: an operator chasing a misbehaving client (a wrong password, a bad payload, a client over
the connection limit) needs its address in the log; a client that sends the same bad command
a thousand times a second must not write a thousand lines. So each refusal is logged once:
the first from a host in a minute at INFO, the rest of that minute at DEBUG, and the next INFO
line from that host says how many it stood for (protocol/spec.md §8, "Refusals").

Hosts, not host:port: a client that reconnects gets a new port. (Behind a NAT or on loopback
every client shares one host, and so one INFO line a minute.)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import trio

log = logging.getLogger("faktory_py.refusals")

#: a host's refusals are logged at INFO at most once per this many seconds
WINDOW = 60.0
#: hosts remembered at once; past it the table starts over (a flood from many hosts then
#: logs at most this many INFO lines per window)
MAX_HOSTS = 10_000


def peer_host(stream: trio.abc.Stream) -> str:
    """The client's IP address, or "unknown" (an in-memory stream, a socket already gone).
    A connection process's client (server/connprocs.py) carries the address it was told."""
    told = getattr(stream, "peer_host", None)
    if told is not None:
        return str(told)
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    sock = getattr(inner, "socket", None)
    try:
        return str(sock.getpeername()[0]) if sock is not None else "unknown"
    except OSError:
        return "unknown"


class RefusalLog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: host → (when its last INFO line was logged, refusals since then)
        self._hosts: dict[str, tuple[float, int]] = {}

    def refused(self, host: str, what: str) -> None:
        """The server refused `host` something; `what` is the reply or the reason."""
        now = self._clock()
        logged_at, since = self._hosts.get(host, (-math.inf, 0))
        if now < logged_at + WINDOW:
            self._hosts[host] = (logged_at, since + 1)
            log.debug("refused %s: %s", host, what)
            return
        if len(self._hosts) >= MAX_HOSTS and host not in self._hosts:
            self._hosts.clear()
        self._hosts[host] = (now, 0)
        more = f" (and {since} more from it since its last such line, logged at debug level)" if since else ""
        log.info("refused %s: %s%s", host, what, more)
