"""The command port of a node that may not serve yet: a standby on the op log in Redis
(protocol/spec.md §7.1). A client that connects to it is forwarded, byte for byte, to the
primary's advertised address; while no primary advertises one, the connection is parked
(accepted, not greeted) until one does or this node takes over and serves it itself.

Forwarding is a plain TCP splice: the client's handshake (HI, HELLO, the password hash
over the primary's salt) is the primary's, so nothing here parses Faktory. A forwarded
connection lives as long as both ends do; when the primary dies, it closes, and the
client reconnects — to this node, which by then may serve. With TLS on the command port
connections are only parked: the splice would need to speak TLS to the primary.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger("faktory_py.server")

#: how often a parked connection looks for an advertised primary again, and how long one
#: lookup answers for every connection (seconds): Redis sees a few lookups a second however
#: many clients wait
PARK_POLL = 0.25
#: bytes moved per receive while forwarding
CHUNK = 65536

Handler = Callable[[trio.abc.Stream], Awaitable[None]]
Lookup = Callable[[], Awaitable[tuple[str, int] | None]]


class Gate:
    """`handle` for the command port's listeners, started before this node serves."""

    def __init__(self, serve: Handler, primary: Lookup | None) -> None:
        #: the real handler (server/tcp.py's), once `serving` is set
        self.serve = serve
        #: the advertised address of the current primary; None: park, never forward
        self.primary = primary
        self.serving = trio.Event()
        self._looked_up: tuple[float, tuple[str, int] | None] = (float("-inf"), None)

    async def handle(self, stream: trio.abc.Stream) -> None:
        while not self.serving.is_set():
            address = await self._lookup()
            if address is not None:
                await splice(stream, address)
                return
            with trio.move_on_after(PARK_POLL):
                await self.serving.wait()
        await self.serve(stream)

    async def _lookup(self) -> tuple[str, int] | None:
        if self.primary is None:
            return None
        at, address = self._looked_up
        if trio.current_time() - at < PARK_POLL:
            return address
        try:
            address = await self.primary()
        except Exception:  # Redis unreachable a moment: keep the client parked, look again
            log.warning("could not look up the primary's address; the connection waits", exc_info=True)
            address = None
        self._looked_up = (trio.current_time(), address)
        return address


async def splice(stream: trio.abc.Stream, address: tuple[str, int]) -> None:
    """Move bytes both ways between `stream` and `address` until either end closes."""
    try:
        upstream = await trio.open_tcp_stream(*address)
    except OSError as exc:
        log.warning("forwarding a client to the primary at %s:%d failed (%s); closing it", *address, exc)
        await stream.aclose()
        return
    async with stream, upstream, trio.open_nursery() as nursery:
        nursery.start_soon(_pump, stream, upstream, nursery.cancel_scope)
        nursery.start_soon(_pump, upstream, stream, nursery.cancel_scope)


async def _pump(source: trio.abc.Stream, sink: trio.abc.Stream, done: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(CHUNK):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    done.cancel()
