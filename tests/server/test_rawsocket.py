"""server/rawsocket.py: a plain TCP connection's bytes with the socket's own calls, still
cancellable at every read, sending whole replies however full the socket buffer is."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from faktory_py.server.rawsocket import RawSocketStream


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RawSocketStream, trio.SocketStream]]:
    """(server end as a RawSocketStream, client end as a trio stream)."""
    a, b = socket.socketpair()
    server_end = RawSocketStream.wrap(trio.SocketStream(trio.socket.from_stdlib_socket(a)))
    client_end = trio.SocketStream(trio.socket.from_stdlib_socket(b))
    assert isinstance(server_end, RawSocketStream)
    yield server_end, client_end
    await server_end.aclose()
    await client_end.aclose()


async def test_reads_what_the_peer_sent_then_eof(pair) -> None:
    server_end, client_end = pair
    await client_end.send_all(b"PUSH {}\r\n")
    assert await server_end.receive_some(100) == b"PUSH {}\r\n"
    await client_end.send_eof()
    assert await server_end.receive_some(100) == b""


async def test_a_read_right_after_a_round_is_still_cancellable(pair) -> None:
    server_end, client_end = pair
    await client_end.send_all(b"ACK {}\r\n")  # data waiting: the read would not block
    server_end.just_yielded = True
    with trio.CancelScope() as scope:
        scope.cancel()
        await server_end.receive_some(100)
    assert scope.cancelled_caught
    assert await server_end.receive_some(100) == b"ACK {}\r\n"  # nothing was lost


async def test_send_all_waits_while_the_socket_buffer_is_full(pair) -> None:
    server_end, client_end = pair
    data = bytes(range(256)) * (1 << 16)  # 16 MiB: far more than the buffer holds
    received = bytearray()

    async def drain() -> None:
        while len(received) < len(data):
            received.extend(await client_end.receive_some(1 << 16))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await server_end.send_all(data)
    assert received == data


async def test_other_streams_are_left_alone() -> None:
    tls_like, _ = trio.testing.memory_stream_pair()
    assert RawSocketStream.wrap(tls_like) is tls_like
