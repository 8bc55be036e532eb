"""One journal write for the replies of every connection that answers in the same turn.

Without it each connection writes the journal before its own send (store/oplog.py:
`write_through`), so under many clients that each wait for every reply there is one
`write` per reply. Here the first connection with replies to send in a scheduler turn leads
a round: it yields once, so that every other connection that runs in this turn queues its
replies too (and waits for the round), then writes the journal once for all of them and
sends each reply with one non-blocking `send`, in the order they were queued. A
connection's replies are therefore still sent in its own order, and never before the
commits they depend on are in the journal (the same `write_through` check as before, now
once per round).

What the round cannot do is left to the connection, which then sends the rest its own way
(server/tcp.py `_flush`): the part of a reply the kernel did not take at once (a full
socket buffer), and every reply while the journal is degraded or failed (the connection
then waits, or fails, as without rounds). A connection cancelled while it waits for a round
drops out of it: its replies are not sent, as with any send a close cuts short.
"""

from __future__ import annotations

import socket

import trio

from ..store.oplog import OpLog
from .durability import JournalFailed

#: how a round's leader lets the rest of its turn run (and queue replies) before the round:
#: one yield, shielded, so a leader always runs the round it leads
_let_the_turn_run = trio.lowlevel.cancel_shielded_checkpoint


class _Reply:
    __slots__ = ("sock", "rest", "needs", "abandoned")

    def __init__(self, sock: socket.socket, data: bytes, needs: int) -> None:
        self.sock = sock
        self.rest = memoryview(data)  # what is still to send
        self.needs = needs
        self.abandoned = False


class ReplyRounds:
    """Groups the replies of one scheduler turn into one journal write (see module doc)."""

    def __init__(self, durable: OpLog) -> None:
        self._durable = durable
        self._queued: list[_Reply] = []
        self._done = trio.Event()  # set when the round that takes `_queued` has run

    async def send(self, sock: socket.socket, data: bytes, needs: int) -> memoryview:
        """Send `data` on `sock` in this turn's round, once commit `needs` is in the journal;
        returns what is left for the caller to send (empty when the round sent it all)."""
        reply = _Reply(sock, data, needs)
        self._queued.append(reply)
        if len(self._queued) == 1:  # the first this turn: lead the round
            await _let_the_turn_run()
            self._run()
        else:
            done = self._done
            try:
                await done.wait()
            except BaseException:
                reply.abandoned = True  # cancelled before the round ran: it must not send for us
                raise
        return reply.rest

    def _run(self) -> None:
        queued, self._queued = self._queued, []
        done, self._done = self._done, trio.Event()
        write_through = self._durable.write_through
        try:
            for reply in queued:
                if reply.abandoned or not write_through(reply.needs):
                    continue
                try:
                    reply.rest = reply.rest[reply.sock.send(reply.rest):]
                except OSError:
                    pass  # would block, or a peer that is gone: the caller's own send finds out
        except JournalFailed:
            pass  # every caller's own write_through raises it again
        finally:
            done.set()
