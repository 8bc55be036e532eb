"""The ceiling: a bare trio server that greets like Faktory and answers every line with +OK.

It does no work at all, but moves bytes the way faktory_py does (64 KiB reads, the replies
to the lines of one read written together in one `send_all`, TCP_NODELAY as trio sets it),
so the same load generator driving it measures what trio, the loopback and the generator
cost on their own. faktory_py's PUSH throughput as a fraction of this one's is the share of
the ceiling that the server's own work leaves.

    python -m bench.echo_server --port 7499
"""

from __future__ import annotations

import argparse
import signal

import trio

GREETING = b'+HI {"v":2}\r\n'
OK = b"+OK\r\n"


async def handle(stream: trio.SocketStream) -> None:
    buffer = bytearray()
    try:
        await stream.send_all(GREETING)
        while data := await stream.receive_some(65536):
            buffer += data
            lines = buffer.count(b"\n")
            if lines:
                del buffer[: buffer.rfind(b"\n") + 1]
                await stream.send_all(OK * lines)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def main(host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(port, host=host)
            nursery.start_soon(trio.serve_listeners, handle, listeners)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
