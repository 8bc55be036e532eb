"""The synchronous dispatcher without a socket and without trio: commands in, `Reply` or
`Block` out, with the journal position each reply must wait for.

The clock, the fetch waiters and the journal are fakes; the store, the job semantics and the
Enterprise features are the real ones (protocol/spec.md §3 for the replies, §7 for the
refusals while the journal cannot be written).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from faktory_py import wire
from faktory_py.commands.features import register_feature_commands
from faktory_py.commands.dispatch import Block, Dispatcher, Reply, Session
from faktory_py.config import Timers
from faktory_py.core.info import ServerStats
from faktory_py.core.lifecycle import Manager
from faktory_py.core.workers import WorkerRegistry
from faktory_py.server.app import enterprise_features
from faktory_py.store.memory import MemoryStore
from faktory_py.wire.handshake import Hello

NOW = 1_900_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.unix = NOW

    def now(self) -> float:
        return self.unix


@dataclass
class FakeJournal:
    """Counts commits as the server's journal does: each op list gets the next position."""

    appended: int = 0

    def append(self, ops: list[dict[str, Any]]) -> int:
        self.appended += 1
        return self.appended


@dataclass(frozen=True)
class Waiting:
    fetches_waiting: int


@dataclass
class FakeWaiters:
    """Records the dispatcher's `top_up` calls; nobody waits here (the adapter would)."""

    waiting: int = 0
    topped_up: list[tuple[str, int]] = field(default_factory=list)

    def statistics(self) -> Waiting:
        return Waiting(self.waiting)

    def top_up(self, queue: str, available: int) -> None:
        self.topped_up.append((queue, available))


class Harness:
    def __init__(self) -> None:
        self.journal = FakeJournal()
        self.store = MemoryStore(sink=self.journal.append)
        features = enterprise_features(self.store)
        self.clock = FakeClock()
        self.waiters = FakeWaiters()
        self.stats = ServerStats(started_at=NOW)
        self.manager = Manager(self.store, features=features)
        self.workers = WorkerRegistry(Timers.heartbeat_timeout)
        self.dispatcher = Dispatcher(self.manager, self.workers, self.clock, self.journal, self.waiters,
                                     self.stats, Timers.fetch_timeout)
        register_feature_commands(self.dispatcher, features)
        self.session = Session(conn_id=1)

    def handle(self, line: str, session: Session | None = None) -> Reply | Block:
        verb, _, arg = line.partition(" ")
        return self.dispatcher.handle(session or self.session, wire.Command(verb, arg))

    def reply(self, line: str, session: Session | None = None) -> Reply:
        reply = self.handle(line, session)
        assert isinstance(reply, Reply), reply
        return reply

    def push(self, jid: str, queue: str = "default", **fields: Any) -> Reply:
        job = {"jid": jid, "jobtype": "T", "args": [], "queue": queue, **fields}
        return self.reply("PUSH " + json.dumps(job))

    def worker_session(self, wid: str = "w1") -> Session:
        session = Session(conn_id=2, wid=wid)
        session.worker = self.workers.register(Hello(wid=wid, hostname="h", pid=1), 2, lambda: None, NOW)
        return session


@pytest.fixture
def h() -> Harness:
    return Harness()


def _job(reply: Reply) -> dict[str, Any]:
    assert reply.data is not None and reply.data.startswith(b"$") and reply.data != wire.NULL, reply
    return json.loads(reply.data.split(b"\r\n", 1)[1])


def test_push_fetch_ack_fail_replies_and_positions(h: Harness) -> None:
    assert h.push("jid-a-0001") == Reply(wire.OK, 1, False)
    assert h.push("jid-b-0001") == Reply(wire.OK, 2, False)
    fetched = h.reply("FETCH default")
    assert _job(fetched)["jid"] == "jid-a-0001" and fetched.position == 3 and not fetched.close
    assert h.reply('ACK {"jid":"jid-a-0001"}') == Reply(wire.OK, 4, False)
    assert _job(h.reply("FETCH default"))["jid"] == "jid-b-0001"
    assert h.reply('FAIL {"jid":"jid-b-0001","errtype":"E","message":"m"}') == Reply(wire.OK, 6, False)
    assert h.stats.command_count == 6


def test_fetch_answers_the_job_as_stored(h: Harness) -> None:
    """The reply is the stored job (protocol/spec.md §3 FETCH): the queue's bytes as they
    are, in Faktory's field order with the server's stamps, not a second encoding."""
    h.push("jid-a-0001", args=[1, "x\u00e9"], custom={"k": 1.5})
    head, stored = h.store.queue_head_stored("default")  # type: ignore[misc]
    assert list(head) == ["retry", "custom", "jid", "queue", "jobtype", "created_at", "enqueued_at", "args"]
    assert h.reply("FETCH default").data == wire.bulk(stored) and json.loads(stored) == head


def test_read_only_commands_wait_for_nothing(h: Harness) -> None:
    h.push("jid-a-0001")
    info = h.reply("INFO")
    assert info.position == 0 and json.loads(info.data.split(b"\r\n", 1)[1])["faktory"]["total_enqueued"] == 1
    assert h.reply("QUEUE LATENCY default").position == 0
    assert h.reply('ACK {"jid":"jid-nobody"}') == Reply(wire.OK, 0, False)  # nothing to commit


def test_pushb_waits_for_its_last_commit(h: Harness) -> None:
    jobs = [{"jid": j, "jobtype": "T", "args": []} for j in ("jid-a-0001", "jid-b-0001")] + [{"jid": "jid-bad-0001"}]
    reply = h.reply("PUSHB " + json.dumps(jobs))
    assert reply.position == 2 and json.loads(reply.data.split(b"\r\n", 1)[1]) == {"jid-bad-0001": "jobs must have a jobtype parameter"}


def test_end_closes_without_a_reply(h: Harness) -> None:
    assert h.reply("END") == Reply(None, 0, True)


def test_fetch_on_empty_queues_blocks_then_gets_the_job_it_was_woken_for(h: Harness) -> None:
    block = h.handle("FETCH q1 q2")
    assert block == Block(("q1", "q2"), ("q1", "q2"), 2.0, 0)
    assert h.dispatcher.retry_fetch(h.session, block, None) == block  # still nothing
    h.push("jid-a-0001", queue="q2")
    h.push("jid-b-0001", queue="q2")
    reply = h.dispatcher.retry_fetch(h.session, block, "q2")
    assert isinstance(reply, Reply) and _job(reply)["jid"] == "jid-a-0001" and reply.position == 3
    assert h.waiters.topped_up == [("q2", 1)]  # the job it left behind wakes the next waiter
    assert h.stats.command_count == 3  # the FETCH counted once, however often it was tried


def test_fetch_that_waits_in_vain_gets_nil(h: Harness) -> None:
    block = h.handle("FETCH q1")
    assert isinstance(block, Block)
    assert h.dispatcher.fetch_timed_out(block, None) == Reply(wire.NULL, 0, False)
    assert h.waiters.topped_up == []
    # woken, but another fetcher was quicker: what is left in the queue is passed on
    assert h.dispatcher.fetch_timed_out(block, "q1") == Reply(wire.NULL, 0, False)
    assert h.waiters.topped_up == [("q1", 0)]


def test_a_job_dropped_on_the_way_is_waited_for(h: Harness) -> None:
    """An expired job is dropped at FETCH (a commit): the `$-1` after the wait depends on it."""
    h.push("jid-old-0001", custom={"expires_in": 1})
    h.clock.unix += 10
    block = h.handle("FETCH default")
    assert isinstance(block, Block) and block.since == 1
    assert h.dispatcher.fetch_timed_out(block, None) == Reply(wire.NULL, 2, False)


def test_paused_queues_are_not_waited_on(h: Harness) -> None:
    h.push("jid-a-0001", queue="q1")
    h.push("jid-b-0001", queue="q2")
    assert _job(h.reply("FETCH q2"))["jid"] == "jid-b-0001"
    assert h.reply("QUEUE PAUSE q1").data == wire.OK
    block = h.handle("FETCH q1 q2")
    assert isinstance(block, Block) and block.wait_on == ("q2",)
    h.reply("QUEUE PAUSE q2")
    assert h.dispatcher.retry_fetch(h.session, block, "q2").wait_on == ()  # only the timeout ends it
    h.reply("QUEUE RESUME q1")
    assert _job(h.dispatcher.retry_fetch(h.session, block, "q1"))["jid"] == "jid-a-0001"


def test_a_quiet_worker_gets_nothing(h: Harness) -> None:
    session = h.worker_session()
    h.push("jid-a-0001")
    session.worker.signal("quiet")
    block = h.handle("FETCH default", session)
    assert isinstance(block, Block) and block.wait_on == ()
    assert h.dispatcher.retry_fetch(session, block, "default") == block
    assert h.dispatcher.fetch_timed_out(block, None).data == wire.NULL
    assert h.store.queue_size("default") == 1


def test_misconf_refuses_changes_but_answers_reads(h: Harness) -> None:
    h.push("jid-a-0001")
    h.dispatcher.refusal = lambda: "journal write failed: disk full; refusing writes until it can be written"
    refused = b"-MISCONF journal write failed: disk full; refusing writes until it can be written\r\n"
    assert h.push("jid-b-0001") == Reply(refused, 0, False)
    assert h.reply("FETCH default") == Reply(refused, 0, False)  # it would reserve a job
    assert isinstance(h.handle("FETCH empty"), Block)  # nothing to reserve: it waits as usual
    assert h.reply("INFO").data.startswith(b"$")
    assert h.reply("TRACK GET jid-a-0001").data.startswith(b"$")
    assert h.reply("QUEUE PAUSE default").data == refused
    assert h.journal.appended == 1


def test_a_fetch_about_to_wait_is_refused_if_the_journal_failed_meanwhile(h: Harness) -> None:
    """Before its first wait (the adapter sent earlier replies, which may have failed the
    journal) a FETCH is checked like a new command; once waiting, a wake reserves."""
    block = h.handle("FETCH default")
    assert isinstance(block, Block)
    h.push("jid-a-0001")
    h.dispatcher.refusal = lambda: "journal write failed: disk full"
    assert h.dispatcher.retry_fetch(h.session, block, None) == Reply(
        b"-MISCONF journal write failed: disk full\r\n", 1, False)
    assert _job(h.dispatcher.retry_fetch(h.session, block, "default"))["jid"] == "jid-a-0001"


def test_unknown_command(h: Harness) -> None:
    assert h.reply("push {}") == Reply(b"-ERR unknown command push\r\n", 0, False)
    assert h.stats.command_count == 1


def test_client_errors_keep_their_code(h: Harness) -> None:
    h.push("jid-a-0001", custom={"unique_for": 60})
    assert h.push("jid-b-0001", custom={"unique_for": 60}).data == b"-NOTUNIQUE Job not unique\r\n"
    assert h.reply("FETCH").data == b"-ERR must call fetch with at least one queue\r\n"


def test_an_internal_error_is_answered_and_logged(h: Harness, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(h.manager, "push", broken)
    assert h.push("jid-a-0001") == Reply(b"-ERR internal error\r\n", 0, False)
    assert "internal error handling PUSH" in caplog.text
    block = h.handle("FETCH q")
    monkeypatch.setattr(h.manager, "fetch_stored", broken)
    assert h.dispatcher.retry_fetch(h.session, block, "q") == Reply(b"-ERR internal error\r\n", 0, False)


def test_feature_commands_wait_for_their_commits(h: Harness) -> None:
    new = h.reply('BATCH NEW {"success":{"jobtype":"Done","args":[]}}')
    bid = new.data.split(b"\r\n")[1].decode()
    assert bid.startswith("b-") and new.position == 1
    assert h.reply(f"BATCH STATUS {bid}").position == 0
    assert h.reply(f"BATCH COMMIT {bid}") == Reply(wire.OK, 2, False)
    assert h.reply('TRACK SET {"jid":"jid-x-0001","percent":5}').position == 3
