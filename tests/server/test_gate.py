"""server/gate.py, the command port of a standby: a connection is parked (not greeted)
until the node serves, or forwarded byte for byte to an advertised primary; one address
lookup answers every connection for PARK_POLL. In-process, over trio's memory streams and
a loopback listener standing in for the primary."""

from __future__ import annotations

from functools import partial

import trio
import trio.testing

from faktory_py.server.gate import PARK_POLL, Gate


async def test_a_parked_connection_is_served_once_the_node_serves(
        autojump_clock: trio.testing.MockClock) -> None:
    served: list[trio.abc.Stream] = []
    lookups: list[float] = []
    advertised: tuple[str, int] | None = None  # no primary has advertised an address

    async def serve(stream: trio.abc.Stream) -> None:
        served.append(stream)

    async def primary() -> tuple[str, int] | None:
        lookups.append(trio.current_time())
        return advertised

    gate = Gate(serve, primary)
    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(gate.handle, trio.testing.memory_stream_pair()[1])
        await trio.sleep(10 * PARK_POLL)
        assert served == []  # parked: nobody greets them
        gate.serving.set()
    assert len(served) == 50
    assert len(lookups) <= 12  # one lookup per PARK_POLL for all 50, not one per connection


async def test_without_a_lookup_connections_are_only_parked(autojump_clock: trio.testing.MockClock) -> None:
    served: list[trio.abc.Stream] = []

    async def serve(stream: trio.abc.Stream) -> None:
        served.append(stream)

    gate = Gate(serve, None)  # TLS on the command port: never forwarded
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gate.handle, trio.testing.memory_stream_pair()[1])
        await trio.sleep(5)
        assert served == []
        gate.serving.set()
    assert len(served) == 1


async def test_a_connection_is_forwarded_to_the_advertised_primary() -> None:
    """Bytes go both ways unchanged; the primary closing ends the client's connection."""

    async def upstream(stream: trio.abc.Stream) -> None:
        await stream.send_all(b"+HI {}\r\n")
        assert await stream.receive_some() == b"HELLO {}\r\n"
        await stream.send_all(b"+OK\r\n")
        await stream.aclose()

    async def never(stream: trio.abc.Stream) -> None:
        raise AssertionError("a standby served a client itself")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, upstream, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]

            async def primary() -> tuple[str, int]:
                return "127.0.0.1", port

            gate = Gate(never, primary)
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(gate.handle, server)
            assert await client.receive_some() == b"+HI {}\r\n"
            await client.send_all(b"HELLO {}\r\n")
            assert await client.receive_some() == b"+OK\r\n"
            assert await client.receive_some() == b""  # closed with the primary's end
            nursery.cancel_scope.cancel()


async def test_an_unreachable_primary_closes_the_client() -> None:
    async def never(stream: trio.abc.Stream) -> None:
        raise AssertionError("a standby served a client itself")

    async def primary() -> tuple[str, int]:
        return "127.0.0.1", 1  # nothing listens there

    with trio.fail_after(10):
        client, server = trio.testing.memory_stream_pair()
        await Gate(never, primary).handle(server)
        assert await client.receive_some() == b""
