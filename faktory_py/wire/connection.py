"""One client connection's life without I/O (protocol/spec.md §1-§2), h11-style.

The adapter (server/tcp.py) feeds it the bytes it reads (`receive_data`), asks it what
happened (`next_event`: a `HelloReceived`, a `Command`, `ConnectionClosed`, or `NEED_DATA`)
and writes what it hands out (`greeting`, `accept`, `data_to_send`). What may happen in
which state is one table, `TRANSITIONS`:

    GREETING ──greeting()──▶ AWAITING_HELLO ──HELLO line──▶ VERIFYING ──authenticate()──▶
    ACCEPTING ──accept() (+OK)──▶ IDENTIFIED ──commands, replies──▶ … ──close()──▶ CLOSED

Any state may close: the peer left (EOF), a line was too long, the HELLO was refused or
came too late (the adapter owns the clock and calls `close()` at the deadline), END, a
server that stops. Faktory answers nothing to a broken handshake except a wrong password
(wire/handshake.py); a too-long command line gets `-ERR line too long …` before the close.

Replies are batched: `reply()` queues one, `data_to_send()` takes everything queued as one
write. The adapter flushes when no further command is buffered (`NEED_DATA`), when the
batch is `full`, before it waits for anything (a FETCH's `Block`), and at the close — so
the replies to pipelined commands go out in one send. Each reply carries a journal
position (opaque here) and a batch the largest of them: what the adapter must have
durable before it sends.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from . import replies
from .framing import Command, LineReader, ProtocolError
from .handshake import Handshake, HandshakeFailed, Hello, PasswordHash


class State(enum.Enum):
    GREETING = "greeting"
    AWAITING_HELLO = "awaiting HELLO"
    VERIFYING = "verifying HELLO"
    ACCEPTING = "accepting"
    IDENTIFIED = "identified"
    CLOSED = "closed"


_IDENTIFIED, _AWAITING_HELLO, _CLOSED = State.IDENTIFIED, State.AWAITING_HELLO, State.CLOSED

#: state → action → next state; an action not listed for a state is a ConnectionStateError
TRANSITIONS: dict[State, dict[str, State]] = {
    State.GREETING: {"greeting": State.AWAITING_HELLO, "close": State.CLOSED},
    State.AWAITING_HELLO: {"hello": State.VERIFYING, "close": State.CLOSED},
    State.VERIFYING: {"authenticate": State.ACCEPTING, "close": State.CLOSED},
    State.ACCEPTING: {"accept": State.IDENTIFIED, "close": State.CLOSED},
    State.IDENTIFIED: {"command": State.IDENTIFIED, "reply": State.IDENTIFIED, "close": State.CLOSED},
    State.CLOSED: {"close": State.CLOSED},
}


class ConnectionStateError(Exception):
    """The adapter asked for something the connection's state does not allow (our bug)."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: `next_event`'s answer when no complete line is buffered: receive more, then ask again
NEED_DATA = _NeedData()


@dataclass(frozen=True)
class HelloReceived:
    """A HELLO that decoded. With a password, `password` is the hash its `pwdhash` must
    equal, still to be run (in steps, by the adapter) before `Connection.authenticate`."""

    hello: Hello
    password: PasswordHash | None


@dataclass(frozen=True)
class ConnectionClosed:
    """The connection is over: send what `data_to_send` still holds, then close."""


#: a batch this large is written without waiting for the peer's next read
REPLY_BATCH_LIMIT = 64 * 1024


class Connection:
    """The state of one client connection (see module doc)."""

    __slots__ = ("state", "_handshake", "_reader", "_parts", "_size", "_position")

    def __init__(self, password: str | None, max_line: int,
                 rng: random.Random | None = None) -> None:
        self.state = State.GREETING
        self._handshake = Handshake(password, rng)
        self._reader = LineReader(max_line)
        self._parts: list[bytes] = []
        self._size = 0
        self._position = 0

    def _move(self, action: str) -> None:
        following = TRANSITIONS[self.state].get(action)
        if following is None:
            raise ConnectionStateError(f"cannot {action} while {self.state.value}")
        self.state = following

    # --- bytes in ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the peer; `b""` when it closed its side."""
        self._reader.receive_data(data)

    @property
    def backlogged(self) -> bool:
        """Stop reading from the peer until the command that waits is answered (framing's
        `LineReader.backlogged`)."""
        return self._reader.backlogged

    @property
    def at_eof(self) -> bool:
        """The peer closed its side and no complete line is left to answer."""
        return self._reader.at_eof

    def next_event(self) -> Command | HelloReceived | ConnectionClosed | _NeedData:
        """What the peer's bytes amount to in this state (see module doc)."""
        state = self.state
        if state is _IDENTIFIED:
            try:
                command = self._reader.next_command()
            except ProtocolError as exc:
                return self._closed(replies.error(str(exc)))
            if command is not None:
                return command
            return self._closed() if self._reader.at_eof else NEED_DATA
        if state is _AWAITING_HELLO:
            try:
                line = self._reader.next_line()
            except ProtocolError:  # an endless first line: nothing to answer
                return self._closed()
            if line is None:
                return self._closed() if self._reader.at_eof else NEED_DATA
            try:
                hello = self._handshake.parse_hello(line)
            except HandshakeFailed as failed:
                return self._closed(failed.reply)
            self._move("hello")
            return HelloReceived(hello, self._handshake.password_hash(hello))
        if state is _CLOSED:
            return ConnectionClosed()
        raise ConnectionStateError(f"no event to read while {state.value}")

    def _closed(self, reply: bytes | None = None) -> ConnectionClosed:
        if reply is not None:
            self._queue(reply, 0)
        self._move("close")
        return ConnectionClosed()

    # --- bytes out --------------------------------------------------------------------

    def greeting(self) -> bytes:
        """The `+HI {...}` line to send first."""
        self._move("greeting")
        return self._handshake.greeting

    def authenticate(self, event: HelloReceived) -> bool:
        """Check the HELLO's password (its hash already run); False closes the connection,
        with `-ERR Invalid password` in `data_to_send`."""
        if event.password is not None:
            try:
                self._handshake.authenticate(event.hello, event.password)
            except HandshakeFailed as failed:
                self._closed(failed.reply)
                return False
        self._move("authenticate")
        return True

    def accept(self) -> bytes:
        """The `+OK` that makes the connection identified (its worker is registered)."""
        self._move("accept")
        return replies.OK

    def reply(self, data: bytes, position: int = 0) -> None:
        """Queue one command's reply, which must wait for journal `position`."""
        if self.state is not _IDENTIFIED:
            raise ConnectionStateError(f"cannot reply while {self.state.value}")
        self._parts.append(data)  # `_queue`, inlined: this runs once per command
        self._size += len(data)
        if position > self._position:
            self._position = position

    def _queue(self, data: bytes, position: int) -> None:
        self._parts.append(data)
        self._size += len(data)
        if position > self._position:
            self._position = position

    @property
    def full(self) -> bool:
        """Enough replies are queued to write them now."""
        return self._size >= REPLY_BATCH_LIMIT

    def data_to_send(self) -> tuple[bytes, int]:
        """Everything queued, as one write, and the journal position it waits for
        (`b""` when nothing is queued)."""
        if not self._parts:
            return b"", 0
        data = b"".join(self._parts)
        position, self._position = self._position, 0
        self._parts.clear()
        self._size = 0
        return data, position

    def close(self, error: str | None = None) -> None:
        """End the connection (END, the HELLO deadline, a refusal, a stop); `error` is a
        last `-ERR` line to send first."""
        self._closed(None if error is None else replies.error(error))
