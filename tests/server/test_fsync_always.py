"""`fsync always`: a FETCH reply does not wait for the fsync (protocol/spec.md §7,
server/durability.py `fetch_position`): it acknowledges nothing, the journal is replayed as a
prefix, so a crash that loses the reservation puts the job back in its queue, and every later
`+OK` waits for an fsync that covers it. And the group commit: the next fsync waits for the
clients the last one answered (`_wait_for_cohort`).

A whole server in the test's trio run, its clients over loopback TCP; the journal's fsyncs
are held in their thread, so what waits for one and what does not is exact. The crash is a
power loss: the journal cut back to what the last finished fsync covered, then replayed.
The group commit's wait runs on trio's MockClock, which moves only when the test jumps it.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing

from faktory_py.server import durability
from faktory_py.server.app import Server
from faktory_py.server.durability import DurableJournal
from faktory_py.store.journal import Journal
from helpers.inprocess import inprocess_config, running_server
from helpers.jobs import job, push_command
from server.test_ioloop import attached, connect, running, until


class HeldFsync:
    """The journal's fsync, held in its thread (as a slow disk's) while `held` is set, and
    the size of the newest segment that the last finished fsync made durable (what a power
    loss keeps)."""

    def __init__(self, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(durability, "INLINE_FSYNC_MAX", 0.0)
        journal = server.durable.journal  # type: ignore[attr-defined]
        self.directory = Path(journal.directory)
        self.held = False
        self.entered, self.release = threading.Event(), threading.Event()
        self.durable_size = 0
        fsync = journal.fsync

        def held_fsync() -> int:
            size = self.segment().stat().st_size  # written before the fsync: it covers this much
            if self.held:
                self.entered.set()
                self.release.wait(10)
            position = fsync()
            self.durable_size = size
            return position

        monkeypatch.setattr(journal, "fsync", held_fsync)

    def segment(self) -> Path:
        return sorted(self.directory.glob("journal.*.fj"))[-1]

    async def wait_entered(self) -> None:
        assert await trio.to_thread.run_sync(self.entered.wait, 10), "no fsync started"

    def power_loss(self, copy: Path) -> Path:
        """The data directory as a power loss now would leave it, copied to `copy`."""
        shutil.copytree(self.directory, copy)
        with open(copy / self.segment().name, "r+b") as f:
            f.truncate(self.durable_size)
        return copy


async def test_a_fetch_reply_goes_out_during_the_fsync_a_push_waits_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's path: the FETCH's reply is sent while the fsync of its own reservation
    (and of a PUSH on another connection, which waits) is held; then a power loss puts the
    fetched job back in its queue, and keeps everything acknowledged."""
    async with running(tmp_path, fsync="always") as server:
        fsync = HeldFsync(server, monkeypatch)
        (worker, _), (producer, producer_sock) = await connect(server, wid="w1"), await connect(server)
        done, fetched = job(queue="q"), job(queue="q")
        assert await producer.push(done) == b"OK"
        assert await producer.push(fetched) == b"OK"
        assert (await worker.fetch("q"))["jid"] == done["jid"]
        assert await worker.json_command("ACK", {"jid": done["jid"]}) == b"OK"
        await attached(server, 2)

        fsync.held = True
        unacknowledged = job(queue="q")
        producer_sock.send(push_command(unacknowledged) + b"\r\n")
        with trio.fail_after(5):  # not behind the held fsync
            assert (await worker.fetch("q"))["jid"] == fetched["jid"]
        await fsync.wait_entered()
        assert not fsync.release.is_set()
        crashed = fsync.power_loss(tmp_path / "crashed")
        fsync.release.set()
        assert await producer.reply() == b"OK"
        await worker.aclose()
        await producer.aclose()

    config = replace(inprocess_config(tmp_path / "after"), data_dir=crashed)
    async with running_server(config) as server:
        (client, _) = await connect(server)
        faktory = (await client.info())["faktory"]
        assert faktory["total_processed"] == 1 and faktory["sets"]["working"] == 0
        assert faktory["queues"] == {"q": 1}  # the reservation is lost, the ACK and PUSH are not
        assert (await client.fetch("q"))["jid"] == fetched["jid"]  # fetched again
        await client.aclose()


async def test_a_woken_fetch_gets_its_job_before_the_push_is_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FETCH that waited (parked in the loop, answered by `retry_fetch`): the PUSH that
    wakes it waits for its fsync, the FETCH's reply does not."""
    async with running(tmp_path, fsync="always") as server:
        fsync = HeldFsync(server, monkeypatch)
        (worker, _), (producer, producer_sock) = await connect(server, wid="w1"), await connect(server)
        await attached(server, 2)
        await worker.send("FETCH q")
        await producer.wait_fetches_waiting(1)
        fsync.held = True
        pushed = job(queue="q")
        producer_sock.send(push_command(pushed) + b"\r\n")
        with trio.fail_after(5):
            assert json.loads(await worker.reply())["jid"] == pushed["jid"]
        await fsync.wait_entered()
        assert not fsync.release.is_set()
        fsync.release.set()
        assert await producer.reply() == b"OK"
        await worker.aclose()
        await producer.aclose()


async def test_a_fetch_reply_never_overtakes_its_connection_s_earlier_reply(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection whose `+OK` waits for the fsync sends a FETCH in a later turn: the FETCH's
    reply, which waits for nothing, still goes out after the `+OK`."""
    async with running(tmp_path, fsync="always") as server:
        fsync = HeldFsync(server, monkeypatch)
        client, sock = await connect(server, wid="w1")
        (producer, _) = await connect(server)
        queued = job(queue="q")
        assert await producer.push(queued) == b"OK"
        await attached(server, 2)
        fsync.held = True
        batches = server.io_loop.batches
        pushed = job(queue="other")
        sock.send(push_command(pushed) + b"\r\n")
        await fsync.wait_entered()  # the PUSH's +OK waits for this fsync
        sock.send(b"FETCH q\r\n")
        await until(lambda: server.io_loop.batches == batches + 2, "the FETCH run in a turn of its own")
        fsync.release.set()
        assert await client.reply() == b"OK"
        assert json.loads(await client.reply())["jid"] == queued["jid"]
        await client.aclose()
        await producer.aclose()


async def test_the_next_fsync_waits_for_the_clients_the_last_one_answered(
        tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    """As many commits as the last fsync covered, or half its time: then one fsync covers a
    round of clients that each wait for their reply, not half of them."""
    ops = [{"op": "counters", "processed": 1, "failures": 0, "history": {}}]
    with Journal.open(tmp_path, fsync="always") as journal:
        assert list(journal.replay()) == []
        durable = DurableJournal(journal, "always", 1 << 30)

        def fsyncs() -> int:
            return sum(durable.fsync_times.counts)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(durable.run_fsync)
            for _ in range(3):  # three clients' commands in one turn
                durable.append(ops)
            await durable.durable(3)
            assert fsyncs() == 1
            durable.append(ops)  # the first client is back
            await trio.testing.wait_all_tasks_blocked()
            assert not durable.is_synced(4)  # no fsync for it alone
            durable.append(ops)
            durable.append(ops)  # all three are back: one fsync for the three
            await durable.durable(6)
            assert fsyncs() == 2
            durable.append(ops)  # one comes back, the others do not
            await trio.testing.wait_all_tasks_blocked()
            assert not durable.is_synced(7)
            mock_clock.jump(durable.fsync_times.sum)  # more than half the last fsync's time
            await durable.durable(7)
            assert fsyncs() == 3
            durable.append(ops)  # the last fsync covered one: the next commit is enough
            await durable.durable(8)
            assert fsyncs() == 4
            nursery.cancel_scope.cancel()


async def test_a_quick_fsync_runs_in_the_loop_and_one_after_a_slow_fsync_in_a_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quick fsync runs in the event loop (a thread's hand-offs cost more than they save);
    after one that took longer than INLINE_FSYNC_MAX the next runs in a worker thread, so a
    slow disk does not stall the loop; once one is quick again, they run in the loop again."""
    monkeypatch.setattr(durability, "INLINE_FSYNC_MAX", 0.05)  # far above a thread hand-off
    ops = [{"op": "counters", "processed": 1, "failures": 0, "history": {}}]
    with Journal.open(tmp_path, fsync="always") as journal:
        assert list(journal.replay()) == []
        durable = DurableJournal(journal, "always", 1 << 30)
        in_loop: list[bool] = []
        slow = False

        def recorded_fsync() -> int:
            """Where it ran; no disk I/O, whose time a busy machine could stretch past the limit."""
            in_loop.append(threading.current_thread() is threading.main_thread())
            if slow:
                time.sleep(0.1)  # a slow disk's fsync
            return 0

        monkeypatch.setattr(journal, "fsync", recorded_fsync)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(durable.run_fsync)
            for sequence, slow in enumerate([False, True, False, False], start=1):
                durable.append(ops)
                with trio.fail_after(10):
                    await durable.durable(sequence)
            nursery.cancel_scope.cancel()
    assert in_loop == [True, True, False, True]
