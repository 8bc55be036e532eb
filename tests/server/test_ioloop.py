"""The batched I/O loop (server/ioloop.py): identified plain TCP connections are served by one
task between their waits, one journal write per turn for every connection's replies; what
needs waiting, closing or failing goes back to the connection's own task, which attaches
again afterwards.

A whole server in the test's trio run, its clients over loopback TCP (the loop serves only
real sockets); what the loop does is read from the server: `Server.io_loop.attached`, its
`batches`, and the journal's write count.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from faktory_py.config import parse_store
from faktory_py.server.app import Server
from helpers.async_client import AsyncClient, PeerClosed
from helpers.inprocess import inprocess_config, running_server
from helpers.jobs import job, push_command


@asynccontextmanager
async def running(tmp_path: Path, fsync: str = "no") -> AsyncIterator[Server]:
    """A server on real time (`fsync always` runs its fsync in a thread)."""
    async with running_server(replace(inprocess_config(tmp_path), fsync=fsync)) as server:
        yield server


async def until(check: Callable[[], bool], what: str) -> None:
    """Until `check()` holds (polled without sleeping: the loop runs between two polls, and
    what a test waits for takes a task switch or two)."""
    for _ in range(1000):
        if check():
            return
        await trio.sleep(0)
    raise AssertionError(f"never {what}")


async def attached(server: Server, count: int) -> None:
    """Until `count` connections wait in the loop."""
    await until(lambda: server.io_loop.attached == count, f"{count} connections attached")


def hold_fsync(server: Server, monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make the journal's fsyncs wait (in their thread) until the second event is set; the
    first is set when one has started."""
    journal = server.durable.journal  # type: ignore[attr-defined]
    entered, release = threading.Event(), threading.Event()
    fsync = journal.fsync

    def held_fsync() -> int:
        entered.set()
        release.wait(10)
        return fsync()

    monkeypatch.setattr(journal, "fsync", held_fsync)
    return entered, release


def fsyncs(server: Server) -> int:
    return sum(server.durable.fsync_times.counts)  # type: ignore[attr-defined]


async def connect(server: Server, rcvbuf: int = 0, **hello: object) -> tuple[AsyncClient, socket.socket]:
    """An identified client, and its stdlib socket (to send on it without yielding);
    `rcvbuf`: its receive buffer, when not the kernel's default."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", server.port))
    client = await AsyncClient.handshake(trio.SocketStream(trio.socket.from_stdlib_socket(sock)), **hello)
    return client, sock


async def received_until_closed(client: AsyncClient) -> bytes:
    """Every byte the server sends until it closes the connection."""
    got = b""
    try:
        while data := await client.stream.receive_some(65536):
            got += data
    except trio.BrokenResourceError:  # a reset
        pass
    return got


def writes(server: Server) -> int:
    return sum(server.durable.write_times.counts)  # type: ignore[attr-defined]


async def test_one_journal_write_for_every_connection_in_the_turn(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        clients = [await connect(server) for _ in range(5)]
        await attached(server, 5)
        batches, written = server.io_loop.batches, writes(server)
        for _, sock in clients:  # all five commands arrive before the loop runs again
            sock.send(push_command(job()) + b"\r\n")
        for client, _ in clients:
            assert await client.reply() == b"OK"
        assert server.io_loop.batches == batches + 1
        assert writes(server) == written + 1  # five commits, one write, before any +OK
        assert server.durable.write_through(server.durable.appended)
        for client, _ in clients:
            await client.aclose()


async def test_one_fsync_for_the_batch_under_fsync_always(tmp_path: Path) -> None:
    async with running(tmp_path, fsync="always") as server:
        clients = [await connect(server) for _ in range(5)]
        await attached(server, 5)
        synced, written = fsyncs(server), writes(server)
        for _, sock in clients:
            sock.send(push_command(job()) + b"\r\n")
        for client, _ in clients:
            assert await client.reply() == b"OK"
        assert writes(server) == written + 1
        assert fsyncs(server) == synced + 1
        for client, _ in clients:
            await client.aclose()


async def test_the_next_batch_is_read_run_and_written_while_a_batch_waits_for_its_fsync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path, fsync="always") as server:
        (first, first_sock), (second, second_sock) = await connect(server), await connect(server)
        await attached(server, 2)
        entered, release = hold_fsync(server, monkeypatch)
        batches, written, synced = server.io_loop.batches, writes(server), fsyncs(server)
        first_sock.send(push_command(job()) + b"\r\n")
        await trio.to_thread.run_sync(entered.wait, 10)  # the first batch's fsync runs
        second_sock.send(push_command(job()) + b"\r\n")
        await until(lambda: server.io_loop.batches == batches + 2, "the second batch run")
        assert writes(server) == written + 2  # the second batch is in the file meanwhile
        assert fsyncs(server) == synced  # and the first fsync still runs
        release.set()
        assert await first.reply() == b"OK"
        assert await second.reply() == b"OK"
        assert fsyncs(server) == synced + 2  # the second +OK waited for an fsync of its own
        await first.aclose()
        await second.aclose()


async def test_a_connections_replies_keep_their_order_across_batches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path, fsync="always") as server:
        (client, sock), (other, other_sock) = await connect(server), await connect(server)
        await attached(server, 2)
        entered, release = hold_fsync(server, monkeypatch)
        batches = server.io_loop.batches
        sock.send(push_command(job()) + b"\r\n")
        await trio.to_thread.run_sync(entered.wait, 10)
        sock.send(b"INFO\r\n")  # a read: its reply depends on no commit of its own
        await until(lambda: server.io_loop.batches == batches + 2, "the INFO run")
        other_sock.send(b"INFO\r\n")
        await until(lambda: server.io_loop.batches == batches + 3, "the other INFO run")
        release.set()
        assert await client.reply() == b"OK"  # first, though the INFO needed no fsync
        assert json.loads(await client.reply())["faktory"]["total_enqueued"] == 1
        assert json.loads(await other.reply())["faktory"]["total_enqueued"] == 1  # queued behind them
        await attached(server, 2)
        await client.aclose()
        await other.aclose()


async def test_a_connection_closed_while_its_batches_wait_for_the_fsync_gets_no_reply(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path, fsync="always") as server:
        (worker, worker_sock), (other, other_sock) = await connect(server, wid="w1"), await connect(server)
        await attached(server, 2)
        entered, release = hold_fsync(server, monkeypatch)
        batches = server.io_loop.batches
        for sock in (worker_sock, other_sock):
            sock.send(push_command(job()) + b"\r\n")
        await trio.to_thread.run_sync(entered.wait, 10)  # the batch waits for its fsync
        worker_sock.send(push_command(job()) + b"\r\n")  # and a second batch
        await until(lambda: server.io_loop.batches == batches + 2, "the second batch run")
        server.dispatcher.workers.reap(server.dispatcher.clock.now() + 10**6)  # closes the worker's connection
        assert await received_until_closed(worker) == b""  # at once, without the +OKs not yet earned
        release.set()
        assert await other.reply() == b"OK"
        await attached(server, 1)
        await other.aclose()


async def test_the_loop_reads_on_while_a_batch_waits_for_its_redis_append(
        tmp_path: Path, redis_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = replace(inprocess_config(tmp_path), redis=parse_store(redis_store, {"lease_ttl_ms": 2000}))
    async with running_server(config) as server:
        (first, first_sock), (second, second_sock) = await connect(server), await connect(server)
        await attached(server, 2)
        oplog = server.durable
        appending, release = trio.Event(), trio.Event()
        append_once = oplog._append_once  # type: ignore[attr-defined]

        async def held_append(args: list[object]) -> bool:
            appending.set()
            await release.wait()
            return await append_once(args)  # type: ignore[no-any-return]

        monkeypatch.setattr(oplog, "_append_once", held_append)
        batches, appended = server.io_loop.batches, oplog.appended
        first_sock.send(push_command(job()) + b"\r\n")
        await appending.wait()  # the first batch's append is in flight
        second_sock.send(push_command(job()) + b"\r\n")
        await until(lambda: server.io_loop.batches == batches + 2, "the second batch run")
        assert oplog.appended == appended + 2 and not oplog.is_synced(appended + 1)
        release.set()
        assert await first.reply() == b"OK"
        assert await second.reply() == b"OK"
        await first.aclose()
        await second.aclose()


async def test_a_blocked_fetch_is_handed_back_and_attaches_again(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        (worker, _), (producer, _) = await connect(server, wid="w1"), await connect(server)
        await attached(server, 2)
        await worker.send("FETCH q")  # empty: its task waits for a job
        await attached(server, 1)
        await producer.wait_fetches_waiting(1)
        pushed = job(queue="q")
        assert await producer.push(pushed) == b"OK"
        assert json.loads(await worker.reply())["jid"] == pushed["jid"]
        await attached(server, 2)  # served by the loop again
        assert await worker.json_command("ACK", {"jid": pushed["jid"]}) == b"OK"
        assert (await producer.info())["faktory"]["total_processed"] == 1
        await worker.aclose()
        await producer.aclose()


async def test_what_the_socket_does_not_take_is_sent_by_the_task_in_order(tmp_path: Path) -> None:
    big = "x" * (1 << 20)
    async with running(tmp_path) as server:
        reader, sock = await connect(server, rcvbuf=1 << 16)
        jids = []
        for _ in range(12):  # 12 MB of replies: more than the socket buffers take (4 MB + 64 kB)
            pushed = job(queue="big", args=[big])
            jids.append(pushed["jid"])
            assert await reader.push(pushed) == b"OK"
        await attached(server, 1)
        sock.send(b"FETCH big\r\n" * len(jids) + b"INFO\r\n")
        await attached(server, 0)  # the loop handed the rest of its send to the task
        for jid in jids:
            assert json.loads(await reader.reply())["jid"] == jid
        assert json.loads(await reader.reply())["faktory"]["tasks"]
        await attached(server, 1)
        await reader.aclose()


async def test_a_connection_closed_while_attached_leaves_the_loop(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        (worker, _), (other, _) = await connect(server, wid="w1"), await connect(server)
        await attached(server, 2)
        server.dispatcher.workers.reap(server.dispatcher.clock.now() + 10**6)  # closes the worker's connection
        await worker.wait_closed()
        await attached(server, 1)
        assert await other.push(job()) == b"OK"  # the loop goes on with the others
        await other.aclose()


async def test_an_exception_serving_one_connection_closes_only_that_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path) as server:
        (doomed, _), (other, _) = await connect(server), await connect(server)
        await attached(server, 2)
        handle = server.dispatcher.handle

        def explode_on_boom(session, command):  # a bug past the dispatcher's own guard
            if command.verb == "BOOM":
                raise RuntimeError("boom")
            return handle(session, command)

        monkeypatch.setattr(server.dispatcher, "handle", explode_on_boom)
        with caplog.at_level(logging.ERROR, logger="faktory_py.server"):
            await doomed.send("BOOM")
            with pytest.raises(PeerClosed):
                await doomed.reply()
        assert "connection task failed" in caplog.text and "boom" in caplog.text
        assert await other.push(job()) == b"OK"
        await attached(server, 1)
        assert server.io_loop.running
        await doomed.aclose()
        await other.aclose()


async def test_replies_the_journal_cannot_take_wait_in_their_task_while_reads_are_answered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path) as server:
        (pusher, _), (reader, _) = await connect(server), await connect(server)
        await attached(server, 2)
        journal = server.durable.journal  # type: ignore[attr-defined]
        append_packed = journal.append_packed

        def disk_full(payload: object) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(journal, "append_packed", disk_full)
        await pusher.send("PUSH " + json.dumps(job()))
        await attached(server, 1)  # its +OK waits for the journal in the pusher's task
        assert server.durable.refusal() is not None
        assert (await reader.info())["faktory"]["total_enqueued"] == 1  # the loop answers reads
        monkeypatch.setattr(journal, "append_packed", append_packed)  # the retry then writes
        assert await pusher.reply() == b"OK"
        await attached(server, 2)
        await pusher.aclose()
        await reader.aclose()
