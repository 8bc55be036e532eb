"""Connection processes (`--io-processes N`, server/connprocs.py and server/connproc.py): the
link's framing, and a whole server with two connection processes — real child processes, real
TCP — keeping the in-process mode's guarantees: order and replies, FETCH blocking and wake-up,
a silent worker's connection closed, the connection limit, graceful stop, a killed connection
process replaced; and, on the mock clock in the test's own run, a client that does not read its
replies closed after the send timeout, and the pause before restarting a process that keeps
dying. The kill -9 durability tests (state or connection process) are in test_connprocs_kill.py.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from faktory_py.config import Timers
from faktory_py.server import connprocs
from faktory_py.server.app import Server, serve
from faktory_py.server.connproc import SEND_TIMEOUT, ConnectionProcess
from faktory_py.server.connprocs import ConnectionProcesses, Outbox, _read_link
from faktory_py.server.link import CLOSE, CREDIT, DATA, EOF, OPEN, STOP, FrameReader, LinkError, frame
from faktory_py.tools.client import ReplyError
from helpers.async_client import AsyncClient, PeerClosed
from helpers.inprocess import inprocess_config, running_server
from helpers.jobs import job
from helpers.polling import until

#: how long any one test may take (the children start in ~0.3 s each)
HANG_GUARD = 30

frames = st.lists(st.tuples(st.sampled_from([OPEN, DATA, EOF, CLOSE, CREDIT, STOP]),
                            st.integers(0, 2**32 - 1), st.binary(max_size=300)), max_size=20)


@given(frames, st.lists(st.integers(1, 50), max_size=30))
def test_frames_come_back_whole_however_the_stream_is_cut(sent: list[tuple[int, int, bytes]],
                                                          cuts: list[int]) -> None:
    stream = b"".join(frame(*f) for f in sent)
    reader = FrameReader()
    received = []
    start = 0
    for size in [*cuts, len(stream)]:
        received += reader.feed(stream[start:start + size])
        start += size
    assert received == sent


def test_a_frame_no_writer_makes_is_a_link_error() -> None:
    with pytest.raises(LinkError):
        FrameReader().feed(bytes([99, 0, 0, 0, 1, 0, 0, 0, 0]))


def config(tmp_path: Path, **fields: Any):  # type: ignore[no-untyped-def]
    return inprocess_config(tmp_path, io_processes=2, **fields)


def processes_of(server: Server) -> ConnectionProcesses:
    assert server.io_processes is not None
    return server.io_processes


async def clients(server: Server, count: int, **hello: Any) -> list[AsyncClient]:
    return [await AsyncClient.connect(server.port, **hello) for _ in range(count)]


def blocked(server: Server) -> int:
    return server.dispatcher.waiters.statistics().fetches_waiting


async def test_clients_push_fetch_and_ack_through_two_connection_processes(tmp_path: Path) -> None:
    with trio.fail_after(HANG_GUARD):
        async with running_server(config(tmp_path)) as server:
            assert len(processes_of(server).processes) == 2
            connected = await clients(server, 8)  # the kernel spreads them over both processes
            for i, client in enumerate(connected):
                assert await client.push(job(f"jid-{i:08d}", queue=f"q{i}")) == b"OK"
            for i, client in enumerate(connected):
                fetched = await client.fetch(f"q{i}")
                assert fetched is not None and fetched["jid"] == f"jid-{i:08d}"
                assert await client.json_command("ACK", {"jid": f"jid-{i:08d}"}) == b"OK"
            info = await connected[0].info()
            assert info["server"]["connections"] == 8
            assert info["faktory"]["total_processed"] == 8
            # pipelined commands are answered in order
            lines = "".join(f"PUSH {{\"jid\":\"pipelined-{i:06d}\",\"jobtype\":\"t\",\"args\":[],\"queue\":\"pipe\"}}\r\n"
                            for i in range(200))
            await connected[0].stream.send_all(lines.encode())
            assert [await connected[0].reply() for _ in range(200)] == [b"OK"] * 200
            assert (await connected[0].info())["faktory"]["queues"]["pipe"] == 200


async def test_a_blocked_fetch_wakes_when_another_process_s_client_pushes(tmp_path: Path) -> None:
    with trio.fail_after(HANG_GUARD):
        async with running_server(config(tmp_path, timers=Timers(fetch_timeout=20))) as server:
            waiting, *producers = await clients(server, 4)
            fetched: list[dict[str, Any] | None] = []

            async def fetch() -> None:
                fetched.append(await waiting.fetch("wake"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch)
                await until(lambda: blocked(server) == 1)  # a blocked FETCH
                for producer in producers:  # one of them is on the other process
                    assert await producer.push(job(f"w-{id(producer)}", queue="wake")) == b"OK"
            assert fetched[0] is not None and fetched[0]["queue"] == "wake"


async def test_a_silent_worker_s_connection_is_closed(tmp_path: Path) -> None:
    timers = Timers(heartbeat_timeout=0.3, worker_reap_every=0.05)
    with trio.fail_after(HANG_GUARD):
        async with running_server(config(tmp_path, timers=timers)) as server:
            worker = await AsyncClient.connect(server.port, wid="silent-worker")
            with pytest.raises(PeerClosed):
                await worker.reply()
            assert not server.dispatcher.workers.get("silent-worker")


async def test_the_connection_limit_holds_across_processes(tmp_path: Path) -> None:
    with trio.fail_after(HANG_GUARD):
        async with running_server(config(tmp_path, max_connections=3)) as server:
            connected = await clients(server, 3)
            refused = await AsyncClient.connect(server.port)  # +OK, then the refusal
            with pytest.raises(ReplyError, match="too many connections: 4"):
                await refused.reply()
            with pytest.raises(PeerClosed):
                await refused.reply()
            await connected[0].stream.aclose()  # a slot frees up when one leaves
            await until(lambda: server.dispatcher.stats.connections == 2)  # the slot to free up
            assert (await AsyncClient.connect(server.port)).stream is not None


async def test_a_graceful_stop_refuses_commands_and_connections_then_ends_the_processes(tmp_path: Path) -> None:
    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(serve, config(tmp_path, timers=Timers(shutdown_grace=20)))
            children = list(processes_of(server).processes)
            client = await AsyncClient.connect(server.port)
            server.shutdown()
            with pytest.raises(ReplyError, match="shutdown in progress"):
                await client.command("INFO")
            # still in the grace period (the client is connected): no new connection is accepted
            while await _connects(server.port):
                await trio.sleep(0.01)
            await client.stream.aclose()  # the last client gone, the stop goes on at once
        assert all(child.returncode == 0 for child in children)


async def test_a_client_passed_on_after_a_stop_began_is_closed_not_served() -> None:
    """A connection process may pass on a client it accepted just before it read STOP, when
    the connection nursery may be closed already: the client is closed and nothing starts
    (starting its handler there raised, and ended the server)."""
    with trio.fail_after(HANG_GUARD):
        ours, theirs = trio.socket.socketpair()
        link, child = trio.SocketStream(ours), trio.SocketStream(theirs)
        async with trio.open_nursery() as closed:
            pass
        handled: list[Any] = []

        async def handler(stream: Any) -> None:
            handled.append(stream)

        outbox = Outbox(link)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outbox.run)
            await child.send_all(frame(OPEN, 7, b"127.0.0.1") + frame(DATA, 7, b"HELLO {}\r\n"))
            await child.send_eof()
            await _read_link(link, outbox, {}, handler, closed, lambda: False)
            await outbox.drained()
            nursery.cancel_scope.cancel()
        assert FrameReader().feed(await child.receive_some()) == [(CLOSE, 7, b"")]
        assert handled == []


async def test_a_client_that_does_not_read_its_replies_is_closed_after_the_send_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    """In a connection process (its parts in the test's run, its link a socket pair): a reply
    the client does not take for `SEND_TIMEOUT` seconds closes that client, and the state
    process hears its EOF, at that time and not before."""
    with trio.fail_after(HANG_GUARD):
        ours, theirs = trio.socket.socketpair()
        state, link = trio.SocketStream(ours), trio.SocketStream(theirs)
        process = ConnectionProcess(link, [])
        client, served = trio.testing.lockstep_stream_pair()  # a send waits until the client reads
        reader = FrameReader()

        async def next_frames() -> list[tuple[int, int, bytes]]:
            while not (got := reader.feed(await state.receive_some())):
                pass
            return got

        async with trio.open_nursery() as nursery:
            nursery.start_soon(process._write_link, nursery.cancel_scope)
            nursery.start_soon(process._read_link)
            nursery.start_soon(process._serve, served)
            assert await next_frames() == [(OPEN, 1, b"unknown")]  # (no peer address)
            await state.send_all(frame(DATA, 1, b"+OK\r\n"))
            sent_at = trio.current_time()
            assert await next_frames() == [(EOF, 1, b"")]
            assert trio.current_time() - sent_at == pytest.approx(SEND_TIMEOUT)
            while await client.receive_some():  # (a memory stream keeps the cancelled send's bytes)
                pass  # ends: the client's stream is closed
            assert process.clients == {}
            nursery.cancel_scope.cancel()


async def test_a_connection_process_that_keeps_dying_is_restarted_ever_more_slowly(
        monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    """Each quick death doubles the pause before the next start (0.1 s, 0.2 s, ... at most
    `_MAX_RESTART_PAUSE`); one that lived longer than `_QUICK_DEATH` is restarted at once."""
    starts: list[float] = []
    lives = [0.0] * 9 + [connprocs._QUICK_DEATH + 1, 0.0, 0.0]
    processes = ConnectionProcesses(1, [], None)

    async def run_one(handler: Any, conn_nursery: Any, task_status: Any) -> int:
        starts.append(trio.current_time())
        task_status.started()
        await trio.sleep(lives[len(starts) - 1])
        if len(starts) == len(lives):
            processes._stopping = True
        return -9

    monkeypatch.setattr(processes, "_run_one", run_one)
    with trio.fail_after(HANG_GUARD * 10):  # (mock time)
        async with trio.open_nursery() as nursery:
            await nursery.start(processes.run, None, nursery)
    pauses = [round(start - previous - life, 6) for previous, start, life in zip(starts, starts[1:], lives)]
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 0.0, 0.1]


async def _connects(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True


async def test_a_killed_connection_process_is_replaced_and_its_clients_fetches_end(tmp_path: Path) -> None:
    with trio.fail_after(HANG_GUARD):
        async with running_server(config(tmp_path, timers=Timers(fetch_timeout=20))) as server:
            procs = processes_of(server)
            connected = await clients(server, 6)

            async def fetch(client: AsyncClient) -> None:
                try:
                    await client.fetch("never")
                except PeerClosed:
                    pass

            async with trio.open_nursery() as nursery:
                for client in connected:
                    nursery.start_soon(fetch, client)
                await until(lambda: blocked(server) == 6)  # 6 blocked FETCHes
                victim = procs.processes[0]
                victim.send_signal(signal.SIGKILL)
                # its clients' FETCHes are abandoned (no job is reserved for a client that is gone)
                await until(lambda: blocked(server) < 6)  # the killed process's FETCHes to end
                await until(lambda: procs.started == 3 and len(procs.processes) == 2)  # a new process
                nursery.cancel_scope.cancel()
            for client in await clients(server, 6):  # whichever process accepts, it is served
                assert await client.command("INFO") is not None
