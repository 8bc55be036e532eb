"""The I/O loop's spin (server/ioloop.py module doc): after a turn that found work, it polls
for the next command a while before it sleeps through trio, and that while is bounded by the
turn it follows and by the loop's yield budget, so an idle server never spins.

What the spin buys is measured in the benchmark (R1 at 10 threads); here its bounds, that it
returns what becomes ready mid-spin, and that it does not spin when what comes next is up to
another task. The loop as a whole spins under every other test.
"""

from __future__ import annotations

import select
import socket
import time

import pytest

from faktory_py.server import ioloop
from faktory_py.server.ioloop import IOLoop, spin, spin_deadline


def test_a_spin_lasts_at_most_twice_the_turn_before_it() -> None:
    assert spin_deadline(began=10.0, ended=10.0001, yielded=10.0) == pytest.approx(10.0003)


def test_a_spin_never_runs_past_the_yield_budget() -> None:
    yielded = 10.0
    assert spin_deadline(began=10.0003, ended=10.0008, yielded=yielded) == yielded + ioloop._YIELD_EVERY


def test_no_spin_once_the_yield_budget_is_spent() -> None:
    assert spin_deadline(began=10.0, ended=10.002, yielded=10.0) == 0.0


class ReadyOnThirdPoll:
    """An epoll whose third poll finds a socket ready."""

    def __init__(self) -> None:
        self.polls: list[float] = []

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        self.polls.append(timeout)
        return [(7, select.EPOLLIN)] if len(self.polls) == 3 else []


def test_a_spin_returns_what_becomes_ready_and_never_blocks() -> None:
    epoll = ReadyOnThirdPoll()
    assert spin(epoll, time.monotonic() + 60) == [(7, select.EPOLLIN)]  # type: ignore[arg-type]
    assert epoll.polls == [0, 0, 0]


def test_a_spin_past_its_deadline_polls_no_more() -> None:
    epoll = ReadyOnThirdPoll()
    assert spin(epoll, time.monotonic() - 1) == []  # type: ignore[arg-type]
    assert epoll.polls == []


def test_a_spin_finds_bytes_a_peer_sent_on_a_real_epoll() -> None:
    ours, theirs = socket.socketpair()
    with select.epoll() as epoll, ours, theirs:
        epoll.register(ours.fileno(), select.EPOLLIN)
        assert spin(epoll, time.monotonic() + 0.0002) == []
        theirs.send(b"FETCH default\r\n")
        assert spin(epoll, time.monotonic() + 60) == [(ours.fileno(), select.EPOLLIN)]


def idle_loop() -> IOLoop:
    """A loop that never ran: what decides whether it spins needs none of its collaborators."""
    return IOLoop(None, None, None, None, None, 0, None)  # type: ignore[arg-type]


def test_no_spin_while_replies_wait_for_the_sender() -> None:
    loop = idle_loop()
    assert loop._spin_until(10.0, 10.0001, 10.0) > 0
    loop._queued.append(([], 1))  # the sender sends them once the fsync or the op log is done
    assert loop._spin_until(10.0, 10.0001, 10.0) == 0.0


def test_no_spin_after_a_turn_that_handed_a_connection_back() -> None:
    loop = idle_loop()
    loop._handed_back = True  # its task runs only once the loop yields
    assert loop._spin_until(10.0, 10.0001, 10.0) == 0.0
    assert loop._spin_until(10.0, 10.0001, 10.0) > 0  # the next turn spins again
