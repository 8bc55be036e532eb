"""Sending the statsd lines (features/statsd.py words them): UDP, never in a command's way.

Why our own sender and not a statsd library: the sending is one `send` of a few lines on a
UDP socket; the Python clients either block (a DNS lookup per packet, a thread and a queue)
or lack DogStatsD tags, and none is trio-aware. What it must guarantee, it does in a few lines:

- A line is appended to a buffer of at most `bufferSize` lines; a full buffer is sent at
  once, in one packet, else within 100 ms (`run_statsd`), as Faktory Enterprise's client does.
- The socket is non-blocking and connected (so the kernel reports an unreachable statsd,
  ICMP "port unreachable", as an error of a later send): a send that fails loses its packet
  and is counted (INFO `faktory.statsd.errors`, `/metrics` `faktory_statsd_errors_total`),
  never raised. A command never waits for statsd and never fails because of it.
- The location is resolved when the server starts, without blocking it, and again every
  30 s while it cannot be (lines meanwhile are counted as lost).
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable

import trio

from ..config import StatsdConfig, split_binding

log = logging.getLogger("faktory_py.statsd")

#: the longest a line waits in the buffer
FLUSH_AFTER = 0.1
#: how often the global gauges are sent (Faktory Enterprise's period)
REPORT_EVERY = 30.0
#: at most one warning per this many seconds about failed sends
WARN_EVERY = 60.0


class UdpSender:
    """The buffer and the socket (see module doc); `LineSink` of features/statsd.py."""

    def __init__(self, buffer_size: int) -> None:
        self.buffer_size = buffer_size
        self._lines: list[str] = []
        self._socket: socket.socket | None = None
        #: set when the buffer gets its first line: the flusher's cue
        self.pending = trio.Event()
        self.packets = 0
        self.errors = 0
        self.lost_lines = 0
        self._warned_at = -math.inf

    def connect(self, family: int, address: tuple[str, int]) -> None:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(address)  # UDP: no packet is sent, the kernel only notes the peer
        self._socket = sock

    def close(self) -> None:
        """Send what is buffered (a stopping server's last lines), then close the socket."""
        self.flush()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def add(self, line: str) -> None:
        lines = self._lines
        if not lines:
            self.pending.set()
        lines.append(line)
        if len(lines) >= self.buffer_size:
            self.flush()

    def flush(self) -> None:
        """Send the buffered lines as one packet; a failure is counted, never raised."""
        lines = self._lines
        if not lines:
            return
        self._lines = []
        try:
            if self._socket is None:
                raise OSError("the statsd location is not resolved yet")
            self._socket.send("\n".join(lines).encode())
        except OSError as exc:
            self.errors += 1
            self.lost_lines += len(lines)
            now = time.monotonic()
            if now >= self._warned_at + WARN_EVERY:
                self._warned_at = now
                log.warning("statsd: cannot send metrics (%s); %d failed sends so far (INFO faktory.statsd)",
                            exc, self.errors)
            return
        self.packets += 1

    def statistics(self) -> dict[str, int]:
        return {"packets": self.packets, "errors": self.errors, "lost_lines": self.lost_lines}


async def _resolve(location: str) -> tuple[int, tuple[str, int]]:
    """(family, address) of `host:port`, IPv4 first (a statsd on `localhost` most often
    listens on 127.0.0.1 only); OSError when it cannot be resolved."""
    host, port = split_binding(location, 8125)
    found = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    found.sort(key=lambda entry: entry[0] != socket.AF_INET)
    family, _type, _proto, _name, address = found[0]
    return family, address[:2]


async def run_statsd(config: StatsdConfig, sender: UdpSender, report: Callable[[], None]) -> None:
    """Background task: resolve the location, then flush the buffer within `FLUSH_AFTER`
    of its first line and call `report` (the global gauges) every `REPORT_EVERY`."""
    assert config.location is not None
    while True:
        try:
            family, address = await _resolve(config.location)
            break
        except OSError as exc:
            log.warning("statsd: cannot resolve %s (%s); trying again in %g s", config.location, exc, REPORT_EVERY)
            await trio.sleep(REPORT_EVERY)
    sender.connect(family, address)
    log.info("statsd: sending metrics to %s", config.location)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_flush_soon, sender)
            while True:
                report()
                await trio.sleep(REPORT_EVERY)
    finally:
        sender.close()


async def _flush_soon(sender: UdpSender) -> None:
    while True:
        await sender.pending.wait()
        sender.pending = trio.Event()
        await trio.sleep(FLUSH_AFTER)
        sender.flush()
