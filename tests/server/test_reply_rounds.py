"""Reply rounds (server/replyround.py): one journal write for the replies of every connection
that answers in the same scheduler turn, each reply sent only once its commits are in the
journal, each connection's replies in its own order; what a round cannot send is left to the
connection.

Over real socket pairs and a real journal; the whole server under real clients is covered by
the TCP and interop tests, which all go through rounds.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from faktory_py.server.durability import DurableJournal
from faktory_py.server import replyround
from faktory_py.server.replyround import ReplyRounds
from faktory_py.store.journal import Journal

OP = {"op": "declare_queue", "queue": "q"}


@contextmanager
def durable_journal(tmp_path: Path) -> Iterator[DurableJournal]:
    with Journal.open(tmp_path) as journal:
        assert list(journal.replay()) == []
        yield DurableJournal(journal, "no", 1 << 30)


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """(server end, non-blocking; client end) socket pairs."""
    made: list[tuple[socket.socket, socket.socket]] = []
    for _ in range(3):
        server_end, client_end = socket.socketpair()
        server_end.setblocking(False)
        made.append((server_end, client_end))
    yield made
    for server_end, client_end in made:
        server_end.close()
        client_end.close()


def writes(durable: DurableJournal) -> int:
    return sum(durable.write_times.counts)


async def test_one_journal_write_for_every_connection_in_the_turn(tmp_path: Path, pairs) -> None:
    with durable_journal(tmp_path) as durable:
        rounds = ReplyRounds(durable)
        rests: dict[int, bytes] = {}

        async def answer(i: int, sock: socket.socket) -> None:
            needs = durable.append([OP])  # each connection's command committed something
            rests[i] = bytes(await rounds.send(sock, b"+OK %d\r\n" % i, needs))

        async with trio.open_nursery() as nursery:
            for i, (server_end, _) in enumerate(pairs):
                nursery.start_soon(answer, i, server_end)
        assert writes(durable) == 1 and durable.write_through(durable.appended)
        assert rests == {0: b"", 1: b"", 2: b""}
        for i, (_, client_end) in enumerate(pairs):
            assert client_end.recv(100) == b"+OK %d\r\n" % i


async def test_nothing_is_sent_while_the_journal_cannot_be_written(tmp_path: Path, pairs, monkeypatch) -> None:
    (server_end, client_end), *_ = pairs
    with durable_journal(tmp_path) as durable:
        rounds = ReplyRounds(durable)
        monkeypatch.setattr(durable.journal, "append_packed", _enospc)
        needs = durable.append([OP])
        assert bytes(await rounds.send(server_end, b"+OK\r\n", needs)) == b"+OK\r\n"  # left to the connection
        assert durable.degraded is not None
    client_end.setblocking(False)
    with pytest.raises(BlockingIOError):
        client_end.recv(100)


def _enospc(payload: object) -> int:
    raise OSError(28, "No space left on device")


async def test_what_the_socket_does_not_take_is_left_to_the_connection(tmp_path: Path, pairs) -> None:
    (full_end, _), (other_end, other_client), _ = pairs
    big = b"x" * (1 << 24)  # more than any socket buffer takes at once
    with durable_journal(tmp_path) as durable:
        rounds = ReplyRounds(durable)
        got: dict[str, int] = {}

        async def send(name: str, sock: socket.socket, data: bytes) -> None:
            got[name] = len(await rounds.send(sock, data, durable.append([OP])))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, "big", full_end, big)
            nursery.start_soon(send, "small", other_end, b"+OK\r\n")
    assert 0 < got["big"] < len(big) and got["small"] == 0
    assert other_client.recv(100) == b"+OK\r\n"


async def test_a_connection_cancelled_before_its_round_is_not_sent_for(tmp_path: Path, pairs, monkeypatch) -> None:
    (lead_end, lead_client), (gone_end, gone_client), _ = pairs
    release = trio.Event()

    async def held_turn() -> None:  # the leader's turn lasts until the test releases it
        with trio.CancelScope(shield=True):
            await release.wait()

    monkeypatch.setattr(replyround, "_let_the_turn_run", held_turn)
    with durable_journal(tmp_path) as durable:
        rounds = ReplyRounds(durable)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rounds.send, lead_end, b"+OK lead\r\n", durable.append([OP]))
            await trio.testing.wait_all_tasks_blocked()
            with trio.CancelScope() as gone:
                gone.cancel()  # a connection closed while it waits for the leader's round
                await rounds.send(gone_end, b"+OK gone\r\n", durable.append([OP]))
            assert gone.cancelled_caught
            release.set()
    assert lead_client.recv(100) == b"+OK lead\r\n"
    gone_client.setblocking(False)
    with pytest.raises(BlockingIOError):
        gone_client.recv(100)
