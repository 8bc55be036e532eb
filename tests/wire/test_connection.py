"""The sans-io connection without a socket: its states, the greeting, HELLO (split over
reads, refused, too late), END, pipelined replies in one send, and lines too long
(protocol/spec.md §1-§2)."""

from __future__ import annotations

import json
import re

import pytest

from faktory_py import wire
from faktory_py.config import Config
from faktory_py.wire.connection import (
    NEED_DATA, REPLY_BATCH_LIMIT, TRANSITIONS, Connection, ConnectionClosed, ConnectionStateError, HelloReceived,
    State,
)
from faktory_py.wire.handshake import hash_password

HELLO = b'HELLO {"hostname":"h","wid":"w-1","pid":1,"labels":[],"v":2}\r\n'


def identified(max_line: int = 1024) -> Connection:
    connection = Connection(None, max_line)
    connection.greeting()
    connection.receive_data(HELLO)
    event = connection.next_event()
    assert isinstance(event, HelloReceived) and connection.authenticate(event)
    assert connection.accept() == wire.OK
    return connection


def test_every_state_may_close() -> None:
    assert all(TRANSITIONS[state]["close"] is State.CLOSED for state in State)


def test_greeting_without_password() -> None:
    connection = Connection(None, Config.max_line)
    assert connection.state is State.GREETING
    assert connection.greeting() == b'+HI {"v":2}\r\n'
    assert connection.state is State.AWAITING_HELLO


def test_nothing_is_read_before_the_greeting_and_nothing_answered_before_identified() -> None:
    connection = Connection(None, Config.max_line)
    with pytest.raises(ConnectionStateError):
        connection.next_event()
    with pytest.raises(ConnectionStateError):
        connection.accept()
    connection.greeting()
    with pytest.raises(ConnectionStateError):
        connection.greeting()
    with pytest.raises(ConnectionStateError):
        connection.reply(wire.OK)
    with pytest.raises(ConnectionStateError):
        connection.accept()  # not before the HELLO was read and authenticated


def test_hello_split_over_reads() -> None:
    connection = Connection(None, Config.max_line)
    connection.greeting()
    for part in (HELLO[:3], HELLO[3:20], HELLO[20:-1]):
        connection.receive_data(part)
        assert connection.next_event() is NEED_DATA
    connection.receive_data(HELLO[-1:] + b"INFO\r\n")  # a command pipelined behind it waits
    event = connection.next_event()
    assert isinstance(event, HelloReceived) and event.password is None
    assert (event.hello.wid, event.hello.hostname, event.hello.is_worker) == ("w-1", "h", True)
    assert connection.state is State.VERIFYING
    assert connection.authenticate(event) and connection.state is State.ACCEPTING
    assert connection.accept() == wire.OK and connection.state is State.IDENTIFIED
    assert connection.next_event() == wire.Command("INFO", "")


def test_password_checked_against_the_greetings_salt() -> None:
    connection = Connection("secret", Config.max_line)
    hi = json.loads(re.fullmatch(rb"\+HI (\{.*\})\r\n", connection.greeting())[1])
    good = hash_password("secret", hi["s"], hi["i"])
    connection.receive_data(b'HELLO {"v":2,"pwdhash":"%s"}\r\n' % good.encode())
    event = connection.next_event()
    assert isinstance(event, HelloReceived) and event.password is not None
    while not event.password.done:  # the adapter runs the rounds in steps
        event.password.step()
    assert connection.authenticate(event)


def test_a_wrong_password_is_answered_then_closed() -> None:
    connection = Connection("secret", Config.max_line)
    connection.greeting()
    connection.receive_data(b'HELLO {"v":2,"pwdhash":"nope"}\r\n')
    event = connection.next_event()
    assert isinstance(event, HelloReceived)
    assert not connection.authenticate(event)
    assert connection.state is State.CLOSED
    assert connection.data_to_send() == (b"-ERR Invalid password\r\n", 0)


@pytest.mark.parametrize("first", [b"PUSH {}\r\n", b"HELLO [1]\r\n", b'HELLO {"pid":"12"}\r\n', b"x" * 2000, b""])
def test_a_broken_handshake_closes_without_a_word(first: bytes) -> None:
    """Not HELLO, an undecodable HELLO, an endless first line, or EOF (Faktory says nothing)."""
    connection = Connection(None, max_line=1024)
    connection.greeting()
    connection.receive_data(first)
    if connection.next_event() is NEED_DATA:  # a line without its end, then EOF
        connection.receive_data(b"")
    assert isinstance(connection.next_event(), ConnectionClosed)
    assert connection.state is State.CLOSED and connection.data_to_send() == (b"", 0)


def test_hello_deadline_closes() -> None:
    """The adapter owns the clock: at the deadline it closes, and nothing is sent."""
    connection = Connection(None, Config.max_line)
    connection.greeting()
    connection.receive_data(b"HELLO {")
    assert connection.next_event() is NEED_DATA
    connection.close()
    assert connection.state is State.CLOSED and connection.data_to_send() == (b"", 0)
    assert isinstance(connection.next_event(), ConnectionClosed)


def test_pipelined_commands_replies_in_one_send() -> None:
    connection = identified()
    connection.receive_data(b"PUSH {}\r\nINFO\r\nACK {}\r")
    assert connection.next_event() == wire.Command("PUSH", "{}")
    connection.reply(wire.OK, 7)
    assert connection.next_event() == wire.Command("INFO", "")
    connection.reply(b"$2\r\n{}\r\n")
    assert connection.next_event() is NEED_DATA  # the third line is not complete: send now
    assert connection.data_to_send() == (b"+OK\r\n$2\r\n{}\r\n", 7)
    assert connection.data_to_send() == (b"", 0)
    connection.receive_data(b"\n")
    assert connection.next_event() == wire.Command("ACK", "{}")


def test_a_full_batch_is_sent_before_more_commands_run() -> None:
    connection = identified()
    big = wire.bulk(b"x" * (REPLY_BATCH_LIMIT // 2))
    connection.reply(big)
    assert not connection.full
    connection.reply(big)
    assert connection.full
    assert connection.data_to_send()[0] == big + big and not connection.full


def test_end_closes_after_the_replies_before_it() -> None:
    connection = identified()
    connection.receive_data(b"INFO\r\nEND\r\nINFO\r\n")
    assert connection.next_event() == wire.Command("INFO", "")
    connection.reply(b"$2\r\n{}\r\n")
    assert connection.next_event() == wire.Command("END", "")
    connection.close()
    assert connection.state is State.CLOSED
    assert isinstance(connection.next_event(), ConnectionClosed)  # the INFO after END is never run
    with pytest.raises(ConnectionStateError):
        connection.reply(wire.OK)
    assert connection.data_to_send() == (b"$2\r\n{}\r\n", 0)


def test_eof_closes_once_the_buffered_commands_are_read() -> None:
    connection = identified()
    connection.receive_data(b"INFO\r\n")
    connection.receive_data(b"")
    assert not connection.at_eof
    assert connection.next_event() == wire.Command("INFO", "")
    assert connection.at_eof
    assert isinstance(connection.next_event(), ConnectionClosed)


def test_a_command_line_too_long_is_answered_then_closed() -> None:
    connection = identified(max_line=64)
    connection.receive_data(b"INFO\r\n" + b"P" * 100)
    assert connection.next_event() == wire.Command("INFO", "")
    connection.reply(b"$2\r\n{}\r\n")
    assert isinstance(connection.next_event(), ConnectionClosed)
    assert connection.data_to_send() == (b"$2\r\n{}\r\n-ERR line too long (max 64 bytes)\r\n", 0)


def test_a_refusal_is_the_last_reply() -> None:
    """A server that stops (or has too many connections) closes with an error line."""
    connection = identified()
    connection.reply(wire.OK, 3)
    connection.close("shutdown in progress")
    assert connection.data_to_send() == (b"+OK\r\n-ERR shutdown in progress\r\n", 3)
