"""Every JSON argument is validated once, at the edge (protocol/spec.md §4.4): a property test.

For arbitrary JSON text — deep, wide, huge numbers, NaN, lone surrogates, bytes that are not
UTF-8 — a command is either refused with `-ERR` (never `internal error`) and changes nothing,
or answered and then survives what the server later does with it: the journal replay of a
restart, a snapshot (compaction) and its replay, the due timer moving a scheduled job, FETCH,
FAIL or an expired reservation, and a retry. After each, the restarted store's snapshot is
byte for byte the live one's, and FETCH returns the bytes the live queue held.

In-process and without sockets (a real Journal in a tmpfs directory, the store rebuilt by
`server.replay_journal`, the Dispatcher as `serve` wires it), so hundreds of examples take
seconds. The same strategies drive test_fuzz_tcp.py against a server process.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import pytest
import trio
from hypothesis import event, given
from hypothesis import strategies as st

from faktory_py import wire
from faktory_py.commands.features import register_feature_commands
from faktory_py.commands.dispatch import Block, Dispatcher, Session
from faktory_py.core.info import ServerStats
from faktory_py.config import Config, Timers
from faktory_py.core.lifecycle import Manager
from faktory_py.server.app import enterprise_features, replay_journal
from faktory_py.store.journal import Journal
from faktory_py.store.memory import MemoryStore
from faktory_py.server.waiters import QueueWaiters
from faktory_py.core.workers import WorkerRegistry
from helpers.json_fuzz import TIMEOUT, corrupted, fuzz_settings, jobs, mostly, objects, scalars, string_lists, strings, values

pytestmark = pytest.mark.timeout(TIMEOUT)

NOW = 1_900_000_000.0  # 2030: the scheduled choices below are ahead of it
LATER = 4_200_000_000.0  # 2103: everything scheduled is due, every reservation expired
JID = "edge-jid-0001"
SCHEDULED = ('"2099-01-01T00:00:00Z"', '"2030-03-17T17:46:42Z"')


class FakeClock:
    def __init__(self) -> None:
        self.unix = NOW

    def now(self) -> float:
        return self.unix


class FakeJournalPosition:
    """The dispatcher reads where the journal is; positions matter only to the server's sends."""

    appended = 0


class Harness:
    """One in-process server over the journal in `directory` (see module docstring)."""

    def __init__(self, directory: Path, clock: FakeClock) -> None:
        self.directory, self.clock = directory, clock
        self.journal = Journal.open(directory)
        # Packed as it is committed: an op the journal cannot take fails the command.
        self.store = MemoryStore(sink=self.journal.append)
        features = enterprise_features(self.store)
        replay_journal(self.journal, self.store)
        self.manager = Manager(self.store, features=features)
        self.dispatcher = Dispatcher(self.manager, WorkerRegistry(Timers.heartbeat_timeout), clock,
                                     FakeJournalPosition(), QueueWaiters(), ServerStats(started_at=NOW),
                                     Timers.fetch_timeout)
        register_feature_commands(self.dispatcher, features)
        self.session = Session(conn_id=1)

    def send(self, line: bytes) -> bytes:
        """The reply to one request line, decoded from bytes as the server's reader does
        (a FETCH that would wait gets what it gets when its wait ends in vain: `$-1`)."""
        reader = wire.LineReader(Config.max_line)
        reader.receive_data(line + b"\r\n")
        command = reader.next_command()
        assert command is not None
        reply = self.dispatcher.handle(self.session, command)
        if isinstance(reply, Block):
            reply = self.dispatcher.fetch_timed_out(reply, None)
        assert reply.data is not None
        assert b"internal error" not in reply.data, reply.data[:300]
        return reply.data

    def state(self) -> list[bytes]:
        """The whole store as the journal would hold it: its snapshot records, packed."""
        return [msgpack.packb(record, use_bin_type=True) for record in self.store.snapshot()]

    def restart(self) -> Harness:
        """Stop (close the journal) and start again from the directory; the state must survive."""
        before = self.state()
        self.journal.close()
        restarted = Harness(self.directory, self.clock)
        assert restarted.state() == before
        return restarted

    def compact_and_restart(self) -> Harness:
        self.journal.write_snapshot(self.store.snapshot(), self.journal.rotate())
        return self.restart()


@contextmanager
def harness() -> Iterator[Harness]:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None  # fsyncs cost nothing there
    with tempfile.TemporaryDirectory(dir=base) as directory:
        server = Harness(Path(directory) / "data", FakeClock())
        try:
            yield server
        finally:
            server.journal.close()


async def refused_or_kept(server: Harness, line: bytes) -> tuple[Harness, bytes]:
    """Send `line`: an error must change nothing; anything else must survive both kinds of restart."""
    before = server.state()
    reply = server.send(line)
    event(f"{line.split(b' ')[0].decode()}: {'refused' if reply.startswith(b'-') else 'kept'}")
    if reply.startswith(b"-"):
        assert server.state() == before
        return server, reply
    return server.restart().compact_and_restart(), reply


async def fetches_agree(server: Harness) -> Harness:
    """FETCH from every queue gets the same bytes from the live server and from a copy of its
    data directory started afresh (a restart); returns the live server, restarted."""
    copy = server.directory.with_name("copy")
    shutil.copytree(server.directory, copy)
    replica = Harness(copy, server.clock)
    try:
        for name in [name for name in server.store.queue_names() if server.store.queue_size(name)]:
            reply = server.send(b"FETCH " + name.encode())
            event(f"FETCH: {'nothing (dropped)' if reply == wire.NULL else 'a job'}")
            assert replica.send(b"FETCH " + name.encode()) == reply
        assert replica.state() == server.state()
    finally:
        replica.journal.close()
        shutil.rmtree(copy)
    return server.restart()


async def _push_lifecycle(line: bytes, fail: bool, backtrace: str) -> None:
    with harness() as server:
        server, reply = await refused_or_kept(server, b"PUSH " + line)
        if reply.startswith(b"-"):
            return
        assert reply == b"+OK\r\n"
        server.clock.unix = LATER - 10_000
        server.manager.run_due(server.clock.now())  # the due timer's work (a scheduled job is enqueued)
        server = await fetches_agree(server.restart())
        if fail:
            server, _ = await refused_or_kept(
                server, f'FAIL {{"jid":"{JID}","errtype":"E","message":"m","backtrace":{backtrace}}}'.encode())
        server.clock.unix = LATER  # an unfailed reservation expires; the retry comes due
        server.manager.run_due(server.clock.now())
        server = await fetches_agree(server.restart())
        server.compact_and_restart()


@fuzz_settings(300)
@given(line=jobs(JID, SCHEDULED).flatmap(corrupted), fail=st.booleans(), backtrace=mostly(string_lists, values))
def test_push_is_refused_or_survives_its_whole_life(line: bytes, fail: bool, backtrace: str) -> None:
    trio.run(_push_lifecycle, line, fail, backtrace)


_JID = mostly(st.just(json.dumps(JID)), values)
_STRING = mostly(strings, values)
ARGUMENTS = st.one_of(
    st.tuples(st.just("ACK"), objects(jid=_JID)),
    st.tuples(st.just("FAIL"), objects(jid=_JID, errtype=_STRING, message=_STRING,
                                       backtrace=mostly(string_lists, values))),
    st.tuples(st.just("MUTATE"), objects(
        cmd=st.sampled_from(('"kill"', '"requeue"', '"discard"', '"clear"')),
        target=st.sampled_from(('"retries"', '"scheduled"', '"dead"')),
        filter=objects(jids=mostly(string_lists, values), regexp=_STRING, jobtype=_STRING))),
    st.tuples(st.just("BATCH NEW"), objects(
        description=_STRING, success=objects(jobtype=st.just('"cb"'), args=values, custom=values),
        complete=objects(jobtype=st.just('"cb"'), args=values))),
    st.tuples(st.just("TRACK SET"), objects(jid=_JID, percent=scalars, desc=_STRING, reserve_until=values)),
    st.tuples(st.just("PUSHB"), mostly(st.lists(jobs(JID, SCHEDULED), max_size=3).map(
        lambda items: "[" + ",".join(items) + "]"), values)),
    st.tuples(st.just("QUEUE PAUSE"), strings),
)


async def _command(verb: str, line: bytes) -> None:
    with harness() as server:
        # a job in each place commands act on: reserved (ACK/FAIL/TRACK), scheduled, retrying
        for jid, at in ((JID, ""), ("edge-scheduled", ',"at":"2099-01-01T00:00:00Z"'), ("edge-retry", "")):
            assert server.send(f'PUSH {{"jid":"{jid}","jobtype":"T","args":[]{at}}}'.encode()) == b"+OK\r\n"
        assert server.send(b"FETCH default") != wire.NULL
        assert server.send(b"FETCH default") != wire.NULL
        assert server.send(b'FAIL {"jid":"edge-retry"}') == b"+OK\r\n"
        server, _ = await refused_or_kept(server, verb.encode() + b" " + line)
        server.clock.unix = LATER  # callbacks, retries and expiries run
        server.manager.run_due(server.clock.now())
        await fetches_agree(server.restart().compact_and_restart())


@fuzz_settings(300)
@given(st.data())
def test_command_arguments_are_refused_or_survive(data: st.DataObject) -> None:
    verb, arg = data.draw(ARGUMENTS)
    trio.run(_command, verb, data.draw(corrupted(arg)))
