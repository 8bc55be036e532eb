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
import trio.testing

from faktory_py.config import parse_store
from faktory_py.server import durability
from faktory_py.server.app import Server
from faktory_py.server.waiters import Parked
from faktory_py.tools.client import ReplyError
from helpers.async_client import AsyncClient, PeerClosed
from helpers.inprocess import inprocess_config, inprocess_server, running_server
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
    """Make the journal's fsyncs wait (in their thread, as a slow disk's) until the second
    event is set; the first is set when one has started."""
    monkeypatch.setattr(durability, "INLINE_FSYNC_MAX", 0.0)
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


async def connect(server: Server, rcvbuf: int = 0, sndbuf: int = 0, **hello: object) -> tuple[AsyncClient, socket.socket]:
    """An identified client, and its stdlib socket (to send on it without yielding);
    `rcvbuf`, `sndbuf`: its socket buffers, when not the kernel's defaults."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
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


def waiting(server: Server) -> int:
    """FETCHes waiting for a job, parked in the loop or asleep in a task."""
    return server.dispatcher.waiters.statistics().fetches_waiting


def fetch_waits(server: Server) -> int:
    """Blocked FETCHes answered so far (the fetch wait timings' count)."""
    return sum(server.timings.fetch_wait.counts)


async def parked(server: Server, count: int) -> None:
    """Until `count` FETCHes are parked in the loop (and no task waits instead)."""
    await until(lambda: server.io_loop.parked == count == waiting(server), f"{count} FETCHes parked")


async def test_a_parked_fetch_woken_by_a_push_goes_out_in_the_pushs_batch(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        (worker, _), (producer, producer_sock) = await connect(server, wid="w1"), await connect(server)
        await attached(server, 2)
        await worker.send("FETCH q")
        await parked(server, 1)
        assert server.io_loop.attached == 2  # no task took the connection back
        batches, answered = server.io_loop.batches, fetch_waits(server)
        pushed = job(queue="q")
        producer_sock.send(push_command(pushed) + b"\r\n")
        assert await producer.reply() == b"OK"
        assert json.loads(await worker.reply())["jid"] == pushed["jid"]
        assert server.io_loop.batches == batches + 1  # the +OK and the job: one turn
        assert fetch_waits(server) == answered + 1
        assert waiting(server) == 0
        assert await worker.json_command("ACK", {"jid": pushed["jid"]}) == b"OK"
        assert (await producer.info())["faktory"]["total_processed"] == 1
        await worker.aclose()
        await producer.aclose()


async def test_a_parked_fetch_answers_nil_when_its_time_is_up(
        tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    async with running(tmp_path) as server:
        (worker, _), (other, _) = await connect(server, wid="w1"), await connect(server)
        await attached(server, 2)
        await worker.send("FETCH q")
        await parked(server, 1)
        answered = fetch_waits(server)
        mock_clock.jump(1.99)
        await other.info()  # a turn of the loop after the jump
        assert server.io_loop.parked == 1
        mock_clock.jump(0.01)  # the FETCH's 2 s are up
        assert await worker.reply() is None
        assert fetch_waits(server) == answered + 1 and waiting(server) == 0
        assert await other.push(job(queue="q")) == b"OK"
        assert (await other.info())["faktory"]["queues"]["q"] == 1  # nothing reserved for the timed-out FETCH
        await worker.aclose()
        await other.aclose()


async def test_a_parked_fetchs_job_goes_out_in_the_pushs_batch_with_one_fsync(tmp_path: Path) -> None:
    async with running(tmp_path, fsync="always") as server:
        (worker, _), (producer, producer_sock) = await connect(server, wid="w1"), await connect(server)
        await attached(server, 2)
        await worker.send("FETCH q")
        await parked(server, 1)
        synced, batches = fsyncs(server), server.io_loop.batches
        pushed = job(queue="q")
        producer_sock.send(push_command(pushed) + b"\r\n")
        assert await producer.reply() == b"OK"
        assert json.loads(await worker.reply())["jid"] == pushed["jid"]
        assert server.io_loop.batches == batches + 1
        assert fsyncs(server) == synced + 1  # the push and the reservation: one fsync (the job's reply waits for none)
        await worker.aclose()
        await producer.aclose()


async def test_a_peer_that_leaves_while_parked_gets_no_job_reserved(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        (worker, worker_sock), (producer, _) = await connect(server, wid="w1"), await connect(server)
        await attached(server, 2)
        await worker.send("FETCH q")
        await parked(server, 1)
        worker_sock.shutdown(socket.SHUT_WR)
        assert await received_until_closed(worker) == b""  # closed at once, not after a `$-1`
        await attached(server, 1)
        assert waiting(server) == 0
        assert await producer.push(job(queue="q")) == b"OK"
        info = await producer.info()
        assert info["faktory"]["queues"]["q"] == 1 and info["faktory"]["tasks"]["Busy"]["size"] == 0
        await worker.aclose()
        await producer.aclose()


async def test_commands_pipelined_after_a_parked_fetch_run_after_its_reply(tmp_path: Path) -> None:
    """Buffered, not run, while the FETCH waits (INFO then sees the job it reserved),
    and the peer's EOF after them does not end the wait: it ends the connection after them."""
    async with running(tmp_path) as server:
        (worker, worker_sock), (producer, _) = await connect(server, wid="w1"), await connect(server)
        await attached(server, 2)
        worker_sock.send(b"FETCH q\r\nINFO\r\n")
        await parked(server, 1)
        worker_sock.shutdown(socket.SHUT_WR)
        await producer.info()  # the loop has read the EOF
        assert server.io_loop.parked == 1
        pushed = job(queue="q")
        assert await producer.push(pushed) == b"OK"
        assert json.loads(await worker.reply())["jid"] == pushed["jid"]
        assert json.loads(await worker.reply())["faktory"]["tasks"]["Busy"]["size"] == 1  # the job reserved
        assert await received_until_closed(worker) == b""
        await attached(server, 1)
        await worker.aclose()
        await producer.aclose()


async def test_a_peer_pipelining_behind_a_parked_fetch_is_not_read_past_a_line(tmp_path: Path) -> None:
    """Once more than a line's worth (`max_line`) is buffered behind a parked FETCH, the loop
    stops reading the peer, whose sends then wait in the kernel, and serves everyone else;
    once the FETCH is answered it reads on, and every command runs, in order."""
    line = b"NOOP " + b"x" * 1000 + b"\r\n"
    lines = 1024  # 1 MB: far more than a 16 kB send buffer and the server's receive buffer take
    async with running_server(inprocess_config(tmp_path, max_line=4096)) as server:
        (worker, _), (producer, _) = await connect(server, sndbuf=1 << 14, wid="w1"), await connect(server)
        await attached(server, 2)
        sent = trio.Event()

        async def pipeline() -> None:
            await worker.stream.send_all(b"FETCH q\r\n" + line * lines)
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipeline)
            await until(lambda: server.io_loop.held == 1, "the worker held")
            assert server.io_loop.parked == 1
            assert (await producer.info())["server"]["connections"] == 2  # a turn of the loop later
            assert server.io_loop.held == 1 and not sent.is_set()
            pushed = job(queue="q")
            assert await producer.push(pushed) == b"OK"
            assert json.loads(await worker.reply())["jid"] == pushed["jid"]
            for _ in range(lines):
                with pytest.raises(ReplyError, match="unknown command NOOP"):
                    await worker.reply()
        assert server.io_loop.held == 0
        assert await worker.json_command("ACK", {"jid": pushed["jid"]}) == b"OK"
        await worker.aclose()
        await producer.aclose()


async def test_a_stop_answers_every_parked_fetch_with_nil(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        workers = [await connect(server, wid=f"w{n}") for n in range(2)]
        await attached(server, 2)
        for worker, _ in workers:
            await worker.send("FETCH q")
        await parked(server, 2)
        server.shutdown()
        for worker, _ in workers:
            assert await worker.reply() is None
            with pytest.raises(ReplyError, match="shutdown in progress"):
                await worker.command("INFO")
            await worker.aclose()


async def test_a_worker_terminated_while_parked_leaves_the_waiters(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        (doomed, _), (worker, _) = await connect(server, wid="doomed"), await connect(server, wid="w1")
        await attached(server, 2)
        await doomed.send("FETCH q")
        await parked(server, 1)
        await worker.send("FETCH q")
        await parked(server, 2)
        server.dispatcher.workers.reap(server.dispatcher.clock.now() + 10**6)  # cancels both tasks
        await doomed.wait_closed()
        await worker.wait_closed()
        await attached(server, 0)
        assert waiting(server) == 0 and server.io_loop.parked == 0
        (producer, _) = await connect(server)
        assert await producer.push(job(queue="q")) == b"OK"
        assert (await producer.info())["faktory"]["queues"]["q"] == 1
        await doomed.aclose()
        await worker.aclose()
        await producer.aclose()


async def test_parked_fetches_get_jobs_in_the_order_they_began_to_wait(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        workers = [await connect(server, wid=f"w{n}") for n in range(3)]
        (producer, producer_sock) = await connect(server)
        await attached(server, 4)
        for count, (worker, _) in enumerate(workers, 1):
            await worker.send("FETCH q")
            await parked(server, count)
        pushed = [job(queue="q") for _ in workers]
        producer_sock.send(b"".join(push_command(payload) + b"\r\n" for payload in pushed))
        for _ in pushed:
            assert await producer.reply() == b"OK"
        for (worker, _), payload in zip(workers, pushed):
            assert json.loads(await worker.reply())["jid"] == payload["jid"]
        for worker, _ in [*workers, (producer, producer_sock)]:
            await worker.aclose()


def count_wakes(monkeypatch: pytest.MonkeyPatch) -> list[Parked]:
    """The parked FETCHes woken from now on, once per wake."""
    woken: list[Parked] = []
    fire = Parked.fire

    def counted(parked: Parked) -> None:
        if not parked.fired:
            woken.append(parked)
        fire(parked)

    monkeypatch.setattr(Parked, "fire", counted)
    return woken


async def test_a_job_a_fetch_of_the_same_turn_takes_wakes_no_parked_fetch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PUSH and a FETCH pipelined in one write: the FETCH takes the job, and the oldest
    parked FETCH is not even woken for it (the turn held the wake, waiters.py `hold`); it
    gets the next job, before a FETCH parked after it."""
    async with running(tmp_path) as server:
        (oldest, _), (newer, _), (busy, busy_sock) = [await connect(server, wid=f"w{n}") for n in range(3)]
        await attached(server, 3)
        await oldest.send("FETCH q")
        await parked(server, 1)
        await newer.send("FETCH q")
        await parked(server, 2)
        woken = count_wakes(monkeypatch)
        first, second = job(queue="q"), job(queue="q")
        busy_sock.send(push_command(first) + b"\r\nFETCH q\r\n")
        assert await busy.reply() == b"OK"
        assert json.loads(await busy.reply())["jid"] == first["jid"]
        assert server.io_loop.parked == 2 and woken == []
        assert await busy.push(second) == b"OK"
        assert json.loads(await oldest.reply())["jid"] == second["jid"]
        assert server.io_loop.parked == 1 == waiting(server)
        for client in (oldest, newer, busy):
            await client.aclose()


async def test_a_parked_fetch_whose_job_a_later_fetch_took_keeps_its_place(tmp_path: Path) -> None:
    """Two jobs wake the two oldest parked FETCHes; the first one's reply runs a FETCH its
    peer pipelined behind it, which takes the job the second was woken for. That one waits
    on in its place (`QueueWaiters.rewait`): the next job is its, not a newer FETCH's."""
    async with running(tmp_path) as server:
        (first, first_sock), (second, _), (newest, _), (producer, producer_sock) = [
            await connect(server, wid=f"w{n}") for n in range(4)]
        await attached(server, 4)
        first_sock.send(b"FETCH q\r\nFETCH q\r\n")  # the second waits behind the first
        await parked(server, 1)
        await second.send("FETCH q")
        await parked(server, 2)
        await newest.send("FETCH q")
        await parked(server, 3)
        jobs = [job(queue="q") for _ in range(3)]
        producer_sock.send(push_command(jobs[0]) + b"\r\n" + push_command(jobs[1]) + b"\r\n")
        assert [await producer.reply(), await producer.reply()] == [b"OK", b"OK"]
        assert [json.loads(await first.reply())["jid"] for _ in range(2)] == [jobs[0]["jid"], jobs[1]["jid"]]
        assert server.io_loop.parked == 2
        assert await producer.push(jobs[2]) == b"OK"
        assert json.loads(await second.reply())["jid"] == jobs[2]["jid"]
        assert server.io_loop.parked == 1 == waiting(server)
        for client in (first, second, newest, producer):
            await client.aclose()


async def test_a_wake_for_a_fetch_whose_worker_went_quiet_passes_on(tmp_path: Path) -> None:
    """The oldest parked FETCH's worker went quiet (a BEAT on its other connection): the job
    that wakes it goes to the next waiting FETCH at once, not when that one's 2 s are up."""
    async with running(tmp_path) as server:
        (quiet, _), (beat, _), (other, _) = [await connect(server, wid=wid) for wid in ("w-quiet", "w-quiet", "w-other")]
        producer, _ = await connect(server)
        await attached(server, 4)
        await quiet.send("FETCH q")
        await parked(server, 1)
        await other.send("FETCH q")
        await parked(server, 2)
        assert json.loads(await beat.json_command("BEAT", {"wid": "w-quiet", "current_state": "quiet"})) == {
            "state": "quiet"}
        pushed = job(queue="q")
        assert await producer.push(pushed) == b"OK"
        assert json.loads(await other.reply())["jid"] == pushed["jid"]
        assert server.io_loop.parked == 1  # the quiet worker's FETCH waits out its time
        for client in (quiet, beat, other, producer):
            await client.aclose()


async def test_parked_fetches_and_fetches_waiting_in_a_task_share_one_fifo(tmp_path: Path) -> None:
    """A connection the loop does not serve (here an in-memory stream, as TLS) waits in its
    task; it began to wait first, so it gets the first job."""
    async with inprocess_server(inprocess_config(tmp_path)) as srv:
        server = srv.server
        in_task = await srv.connect(wid="in-task")
        (in_loop, _), (producer, _) = await connect(server, wid="in-loop"), await connect(server)
        await in_task.send("FETCH q")
        await until(lambda: waiting(server) == 1, "the task's FETCH waiting")
        await in_loop.send("FETCH q")
        await until(lambda: waiting(server) == 2 and server.io_loop.parked == 1, "a FETCH parked")
        first, second = job(queue="q"), job(queue="q")
        assert await producer.push(first) == b"OK"
        assert json.loads(await in_task.reply())["jid"] == first["jid"]
        assert server.io_loop.parked == 1
        assert await producer.push(second) == b"OK"
        assert json.loads(await in_loop.reply())["jid"] == second["jid"]
        for client in (in_task, in_loop, producer):
            await client.aclose()


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


async def test_a_fetch_parked_when_its_connection_is_handed_back_waits_in_its_task(tmp_path: Path) -> None:
    big = "x" * (1 << 20)
    async with running(tmp_path) as server:
        (reader, sock), (producer, _) = await connect(server, rcvbuf=1 << 16), await connect(server)
        jids = []
        for _ in range(12):  # more than the socket buffers take: the loop hands the rest back
            pushed = job(queue="big", args=[big])
            jids.append(pushed["jid"])
            assert await producer.push(pushed) == b"OK"
        await attached(server, 2)
        answered = fetch_waits(server)
        sock.send(b"FETCH big\r\n" * len(jids) + b"FETCH later\r\n")  # the last one parks
        await attached(server, 1)
        assert server.io_loop.parked == 0  # it left the loop with its connection
        later = job(queue="later")
        assert await producer.push(later) == b"OK"
        for jid in jids:
            assert json.loads(await reader.reply())["jid"] == jid
        assert json.loads(await reader.reply())["jid"] == later["jid"]
        assert fetch_waits(server) == answered + 1
        await attached(server, 2)
        await reader.aclose()
        await producer.aclose()


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
