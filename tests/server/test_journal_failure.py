"""Journal write failures (protocol/spec.md §7): a write that fails degrades the server, one
that cannot be mended stops it, a failed compaction is cleaned up and retried.

The faults are injected in-process at the system calls the journal makes (a write that
stops half-way with ENOSPC, a failing fsync or truncate), so each test is quick and exact;
tests/server/test_disk_full.py does the same through the CLI on a filesystem that really fills up.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import trio

from helpers.async_client import AsyncClient
from faktory_py.config import Config, Timers
from faktory_py.errors import ClientError
from faktory_py.server.app import load_store, serve
from faktory_py.store import journal as journal_module
from faktory_py.server.durability import DurableJournal, JournalFailed
from faktory_py.store.journal import Journal
from faktory_py.store.memory import MemoryStore
from helpers.polling import until
from helpers.rawclient import ReplyError

ENOSPC = OSError(errno.ENOSPC, "No space left on device")
MISCONF = ("MISCONF journal write failed: [Errno 28] No space left on device; "
           "refusing writes until it can be written")


def job(jid: str, queue: str = "q") -> dict[str, object]:
    return {"jid": jid, "jobtype": "T", "args": [], "queue": queue}


def config(tmp_path: Path, **changes: Any) -> Config:
    return Config(binding="127.0.0.1:0", data_dir=tmp_path / "data", conf_dir=tmp_path / "conf",
                  timers=Timers(fetch_timeout=0.2), **changes)


def replayed_jids(cfg: Config, queue: str = "q") -> list[str]:
    store, journal = load_store(cfg)
    journal.close()
    return [j["jid"] for j in store.queued(queue)]


class DiskFull:
    """While `full`, every journal write stops half-way with ENOSPC (as on a full disk)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        real = journal_module._write_all

        def write_all(fd: int, data: bytes) -> None:
            if self.full:
                real(fd, data[: len(data) // 2])
                raise ENOSPC
            real(fd, data)

        monkeypatch.setattr(journal_module, "_write_all", write_all)


def unanswered(client: AsyncClient) -> bool:
    """Nothing has arrived on `client`'s socket (checked without waiting)."""
    with socket.socket(fileno=os.dup(client.stream.socket.fileno())) as sock:
        try:
            sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
        except BlockingIOError:
            return True
    return False


@pytest.mark.parametrize("fsync", ["always", "everysec"])
async def test_failed_write_refuses_writes_keeps_reads_and_resumes(tmp_path: Path, monkeypatch, fsync: str) -> None:
    cfg = config(tmp_path, fsync=fsync)
    disk = DiskFull(monkeypatch)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, cfg)
            first = await AsyncClient.connect(server.port)
            other = await AsyncClient.connect(server.port)
            assert await first.push(job("kept-000000001")) == b"OK"
            disk.full = True
            await first.send("PUSH " + json.dumps(job("waited-00000001")))
            await until(lambda: server.durable.degraded is not None)
            # The write was attempted right before the send, so a reply would be there now.
            assert unanswered(first)
            assert server.durable.failed.is_set() is False
            info = await other.info()  # what changes nothing is answered
            assert info["faktory"]["queues"]["q"] == 2  # from memory; the second is not acknowledged
            assert await other.command("QUEUE LATENCY q")
            assert await other.fetch("empty") is None  # nothing to reserve: it waits, then nil
            for command in ["PUSH " + json.dumps(job("refused-0000001")),
                            "FETCH q", 'ACK {"jid":"kept-000000001"}', "QUEUE PAUSE q", "FLUSH",
                            'TRACK SET {"jid":"kept-000000001","percent":5}']:
                with pytest.raises(ReplyError) as refused:
                    await other.command(command)
                assert str(refused.value) == MISCONF, command
            assert unanswered(first)
            disk.full = False  # space freed: the retry writes it, the reply goes out
            assert await first.reply() == b"OK"
            assert server.durable.degraded is None
            assert await other.push(job("after-000000001")) == b"OK"
            assert (await other.fetch("q"))["jid"] == "kept-000000001"
            server.shutdown()
    assert replayed_jids(cfg) == ["waited-00000001", "after-000000001"]


async def test_a_reply_waiting_for_the_journal_is_dropped_when_its_peer_leaves(tmp_path: Path, monkeypatch) -> None:
    cfg = config(tmp_path)
    disk = DiskFull(monkeypatch)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, cfg)
            leaving = await AsyncClient.connect(server.port)
            disk.full = True
            await leaving.send("PUSH " + json.dumps(job("unacked-0000001")))
            await until(lambda: server.durable.degraded is not None)
            await leaving.aclose()
            await until(lambda: server.dispatcher.stats.connections == 0)  # its task did not stay behind
            disk.full = False
            await until(lambda: server.durable.degraded is None)
            server.shutdown()
    assert replayed_jids(cfg) == ["unacked-0000001"]  # journaled after all, just never acknowledged


async def test_timers_wait_while_the_journal_cannot_be_written(tmp_path: Path, monkeypatch, autojump_clock) -> None:
    cfg = config(tmp_path, fsync="no")  # no fsync thread: the mock clock may jump (see test_timers.py)
    disk = DiskFull(monkeypatch)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, cfg)
        store = server.dispatcher.manager.store
        client = await AsyncClient.connect(server.port)
        at = datetime.fromtimestamp(server.dispatcher.clock.now() + 60, timezone.utc)
        assert await client.push({**job("later-000000001"), "at": at.isoformat().replace("+00:00", "Z")}) == b"OK"
        disk.full = True
        await client.send("PUSH " + json.dumps(job("waited-00000001")))
        await until(lambda: server.durable.degraded is not None)
        appended = server.durable.appended
        await trio.sleep(3600)  # long past due, in mock time
        assert server.durable.appended == appended and store.set_size("scheduled") == 1  # the timer waited
        disk.full = False
        assert await client.reply() == b"OK"
        await until(lambda: store.set_size("scheduled") == 0)
        server.shutdown()
    assert replayed_jids(cfg) == ["waited-00000001", "later-000000001"]


async def test_a_partial_frame_that_cannot_be_cut_off_stops_the_server(tmp_path: Path, monkeypatch) -> None:
    cfg = config(tmp_path, fsync="always")
    disk = DiskFull(monkeypatch)
    with trio.fail_after(20):
        with pytest.raises(BaseExceptionGroup) as stopped:  # serve() raised it inside our nursery
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve, cfg)
                first = await AsyncClient.connect(server.port)
                assert await first.push(job("kept-000000001")) == b"OK"
                other = await AsyncClient.connect(server.port)
                disk.full = True

                def no_truncate(fd: int, size: int) -> None:
                    raise OSError(errno.EIO, "Input/output error")

                monkeypatch.setattr(os, "ftruncate", no_truncate)
                await first.send("PUSH " + json.dumps(job("lost-000000001")))
                await first.wait_closed()  # no +OK: the connection closes unanswered
                await other.wait_closed()
                assert server.durable.failed.is_set()
    assert stopped.value.subgroup(JournalFailed) is not None, stopped.value
    monkeypatch.undo()
    assert replayed_jids(cfg) == ["kept-000000001"]


async def test_a_failed_fsync_stops_the_server(tmp_path: Path, monkeypatch) -> None:
    cfg = config(tmp_path, fsync="always")
    real_fsync = os.fdatasync
    failing = {"on": False}

    def fsync(fd: int) -> None:
        if failing["on"]:
            failing["on"] = False  # once: Linux reports a lost write only once
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fdatasync", fsync)
    with trio.fail_after(20):
        with pytest.raises(BaseExceptionGroup) as stopped:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve, cfg)
                client = await AsyncClient.connect(server.port)
                failing["on"] = True
                await client.send("PUSH " + json.dumps(job("unsynced-000001")))
                await client.wait_closed()
    assert stopped.value.subgroup(JournalFailed) is not None, stopped.value


async def test_fsync_task_survives_a_descriptor_limit(tmp_path: Path, monkeypatch, caplog) -> None:
    """`Journal.fsync` dups the fd: EMFILE there is no failed fsync, so it is tried again."""
    cfg = config(tmp_path, fsync="always")
    real_dup = os.dup
    failures = {"left": 0}

    def dup(fd: int) -> int:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_dup(fd)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, cfg)
            client = await AsyncClient.connect(server.port)
            monkeypatch.setattr(os, "dup", dup)
            failures["left"] = 1
            assert await client.push(job("synced-00000001")) == b"OK"  # after the retry
            monkeypatch.undo()
            assert failures["left"] == 0 and not server.durable.failed.is_set()
            assert "could not fsync the journal ([Errno 24] Too many open files)" in caplog.text
            server.shutdown()
    assert replayed_jids(cfg) == ["synced-00000001"]


async def test_ops_that_cannot_be_packed_are_refused_before_they_apply(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        assert list(journal.replay()) == []
        durable = DurableJournal(journal, "no", 1 << 30)
        store = MemoryStore(sink=durable.append)
        store.commit([{"op": "counters", "processed": 1, "failures": 0, "history": {}}])
        with pytest.raises(ClientError, match="cannot be journaled: Integer value out of range"):
            store.commit([{"op": "counters", "processed": 2**64, "failures": 0, "history": {}}])
        assert store.statistics().processed == 1
        durable.write()
    replayed = MemoryStore()
    with Journal.open(tmp_path) as journal:
        for record in journal.replay():
            for op in record:
                replayed.apply(op)
    assert replayed.statistics().processed == 1


async def test_a_compaction_without_room_for_its_segment_is_undone_and_retried(
        tmp_path: Path, monkeypatch, caplog) -> None:
    cfg = config(tmp_path, compact_min_bytes=2_000)
    real_header = Journal._write_header
    full = {"on": True}

    def write_header(self: Journal, fd: int, number: int) -> int:
        if full["on"] and number > 1:
            os.write(fd, b"\0\0\0")  # a header cut short
            raise ENOSPC
        return real_header(self, fd, number)

    monkeypatch.setattr(Journal, "_write_header", write_header)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, cfg)
            client = await AsyncClient.connect(server.port)
            pushed = []
            while server.durable.compaction_failures < 2:
                pushed.append(f"job-{len(pushed):010d}")
                assert await client.push(job(pushed[-1])) == b"OK"
            assert sorted(p.name for p in cfg.data_dir.glob("journal.*")) == ["journal.00000001.fj"]
            assert server.durable.degraded is None and not server.durable.failed.is_set()
            assert "journal compaction failed ([Errno 28] No space left on device)" in caplog.text
            full["on"] = False
            while server.durable.compactions < 1:
                pushed.append(f"job-{len(pushed):010d}")
                assert await client.push(job(pushed[-1])) == b"OK"
            server.shutdown()
    assert (cfg.data_dir / "snapshot.fj").exists()
    assert replayed_jids(cfg) == pushed


def test_degraded_is_logged_once_and_recovery_too(tmp_path: Path, monkeypatch, caplog) -> None:
    """Operators see when writes stop and when they resume (one line each, not one per retry)."""
    disk = DiskFull(monkeypatch)

    async def main() -> None:
        with Journal.open(tmp_path) as journal:
            assert list(journal.replay()) == []
            durable = DurableJournal(journal, "no", 1 << 30)
            store = MemoryStore(sink=durable.append)
            disk.full = True
            store.commit([{"op": "declare_queue", "queue": "a"}])
            for _ in range(3):
                durable.write()
            assert durable.refusal() == MISCONF.removeprefix("MISCONF ")
            disk.full = False
            durable.write()
            assert durable.refusal() is None
        with Journal.open(tmp_path) as journal:
            assert list(journal.replay()) == [[{"op": "declare_queue", "queue": "a"}]]

    with caplog.at_level(logging.INFO, "faktory_py.journal"):
        trio.run(main)
    assert caplog.text.count("writing the journal failed") == 1
    assert caplog.text.count("the journal is written again (1 commits had waited)") == 1
