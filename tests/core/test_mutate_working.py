"""MUTATE on the `working` target [EXT] (protocol/spec.md §3 MUTATE): an operator ends live
reservations by jid — requeue, kill, discard — through the store's one way out of a
reservation, with the features told (throttle slots free, a batch and a tracked job see the
end), journaled and rebuilt exactly by replay. The TCP side (a waiting FETCH woken, a
restart) is in tests/features/test_throttles_mutate_tcp.py."""

from __future__ import annotations

from typing import Any

import pytest

from faktory_py.config import Throttle, ThrottlesConfig
from faktory_py.core.hooks import Ending
from faktory_py.core.lifecycle import Manager
from faktory_py.errors import ClientError
from faktory_py.features.batches.feature import Batches
from faktory_py.features.throttles.feature import Throttles
from faktory_py.features.tracking import JobTracking
from faktory_py.server.app import enterprise_features
from faktory_py.store.memory import MemoryStore
from helpers.model_replay import holdings, replay, roundtrip
from test_end_hook import Endings, job, reserve, setup  # noqa: F401 -- setup is a fixture

NOW = 1_700_000_000.0


class World:
    """A manager over a store with every Enterprise feature (a `q` throttle of 2 slots),
    whose commits are kept as the journal would give them back."""

    def __init__(self) -> None:
        self.records: list[list[dict[str, Any]]] = []
        self.store = self.new_store()
        self.manager = Manager(self.store, features=self.features)

    def new_store(self, sink: bool = True) -> MemoryStore:
        store = MemoryStore(sink=self._sink if sink else None)
        self.features = enterprise_features(store, throttles=ThrottlesConfig((Throttle("q", timeout=600, concurrency=2),)))
        return store

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.records.append(roundtrip(ops))
        return len(self.records)

    def push_and_fetch(self, *names: str, **fields: Any) -> None:
        for name in names:
            self.manager.push({"jid": name, "jobtype": "T", "args": [name], "queue": "q", **fields}, NOW)
        for name in names:
            job, _ = self.manager.fetch(["q"], "w1", NOW)
            assert job is not None and job["jid"] == name

    def mutate(self, cmd: str, *jids: str, **extra: Any) -> int:
        return self.manager.mutate({"cmd": cmd, "target": "working", "filter": {"jids": list(jids)}, **extra}, NOW + 5)

    def in_use(self) -> int:
        throttles = self.features.find(Throttles)
        assert throttles is not None
        return throttles.occupancy.in_use(("q", ()))

    def replayed(self) -> dict[str, Any]:
        """The holdings of a store rebuilt from the records so far (a restart)."""
        return holdings(replay(self.new_store(sink=False), self.records))


def test_requeue_kill_and_discard_end_reservations_and_free_throttle_slots() -> None:
    world = World()
    world.push_and_fetch("jid-requeue", "jid-kill0")
    assert world.in_use() == 2
    assert world.manager.fetch(["q"], "w1", NOW) == (None, 0)  # the throttle is full
    world.mutate("requeue", "jid-requeue")
    assert world.in_use() == 1
    assert [job["args"] for job in world.store.queued("q")] == [["jid-requeue"]]
    requeued = next(world.store.queued("q"))
    assert "failure" not in requeued  # the payload goes back unchanged
    world.mutate("kill", "jid-kill0")
    assert world.in_use() == 0
    ((_score, jid, dead),) = list(world.store.set_entries("dead"))
    assert jid == "jid-kill0"
    assert (dead["failure"]["errtype"], dead["failure"]["message"]) == ("Killed", "killed by an operator")
    job, _ = world.manager.fetch(["q"], "w2", NOW + 6)
    assert job is not None and job["jid"] == "jid-requeue"
    world.mutate("discard", "jid-requeue")
    stats = world.store.statistics()
    assert (stats.working, stats.queues["q"], stats.dead, stats.retries) == (0, 0, 1, 0)
    assert (stats.processed, stats.failures) == (0, 0)  # an operator's end is no run of the job
    assert world.replayed() == holdings(world.store)


def test_a_jid_not_reserved_is_skipped_and_repeated_jids_act_once() -> None:
    world = World()
    world.push_and_fetch("jid-one000")
    assert world.mutate("requeue", "jid-nothere", "jid-one000", "jid-one000") > 0
    assert [job["jid"] for job in world.store.queued("q")] == ["jid-one000"]
    assert world.mutate("kill", "jid-one000") == 0  # queued, not reserved: nothing to end
    assert world.store.set_size("dead") == 0


def test_the_features_see_the_end() -> None:
    """A tracked job killed is `dead`, one requeued `failed` (it will run again, like a
    retry); a unique job discarded gives up its lock."""
    world = World()
    world.push_and_fetch("jid-track1", "jid-track2", custom={"track": 1})
    world.mutate("kill", "jid-track1")
    world.mutate("requeue", "jid-track2")
    tracking = world.features.find(JobTracking)
    assert tracking is not None
    assert tracking.progress("jid-track1", NOW + 6)["state"] == "dead"
    assert tracking.progress("jid-track2", NOW + 6)["state"] == "failed"
    world.manager.push({"jid": "jid-unique", "jobtype": "U", "args": [], "queue": "u",
                        "custom": {"unique_for": 600}}, NOW)
    world.manager.fetch(["u"], "w1", NOW)
    world.mutate("discard", "jid-unique")
    world.manager.push({"jid": "jid-unique2", "jobtype": "U", "args": [], "queue": "u",
                        "custom": {"unique_for": 600}}, NOW + 6)
    assert world.store.queue_size("u") == 1
    assert world.replayed() == holdings(world.store)


def test_a_batch_counts_a_killed_member_failed_and_a_requeued_one_failing_until_it_succeeds() -> None:
    world = World()
    batches = world.features.find(Batches)
    assert batches is not None
    bid, ops = batches.new({"description": "t", "complete": {"jobtype": "Done", "queue": "cb"}}, "", NOW)
    world.store.commit(ops)
    world.push_and_fetch("jid-member1", "jid-member2", custom={"bid": bid})
    world.store.commit(batches.commit(bid, NOW))
    world.mutate("kill", "jid-member1")
    world.mutate("requeue", "jid-member2")
    status = batches.status(bid, NOW + 6)
    assert (status["total"], status["pending"], status["failed"]) == (2, 2, 2)
    job, _ = world.manager.fetch(["q"], "w1", NOW + 6)
    assert job is not None and job["jid"] == "jid-member2"
    world.manager.ack("jid-member2", NOW + 7)
    status = batches.status(bid, NOW + 8)
    assert (status["pending"], status["failed"]) == (1, 1)
    assert world.replayed() == holdings(world.store)


def test_the_end_hooks_see_a_kill_and_a_discard_end_but_not_a_requeue(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    for name in "krd":
        reserve(manager, job(name))
    for cmd, name in (("kill", "k"), ("requeue", "r"), ("discard", "d")):
        manager.mutate({"cmd": cmd, "target": "working", "filter": {"jids": [name * 8]}}, NOW)
    assert endings.calls == [[("k" * 8, Ending.DEAD)], [("d" * 8, Ending.DISCARDED)]]


@pytest.mark.parametrize(("request_", "message"), [
    ({"cmd": "clear", "target": "working"},
     "clear does not apply to target working: requeue, kill or discard filter.jids"),
    ({"cmd": "kill", "target": "working"},
     "target working needs filter.jids, the jids of the reservations to end"),
    ({"cmd": "kill", "target": "working", "filter": {"regexp": "*"}},
     "target working needs filter.jids, the jids of the reservations to end"),
    ({"cmd": "kill", "target": "working", "filter": {"jids": "jid-one000"}},
     "json: cannot unmarshal into Go struct field JobFilter.jids of type []string"),
    ({"cmd": "kill", "target": "working", "filter": []},
     "json: cannot unmarshal into Go struct field Mutation.filter of type server.JobFilter"),
    ({"cmd": "bury", "target": "working", "filter": {"jids": ["jid-one000"]}}, "unknown mutate operation"),
    ({"cmd": "kill", "target": "workers", "filter": {"jids": ["jid-one000"]}},
     "invalid target for mutation command"),
])
def test_bad_requests_are_refused_and_change_nothing(request_: dict[str, Any], message: str) -> None:
    world = World()
    world.push_and_fetch("jid-one000")
    before = holdings(world.store)
    with pytest.raises(ClientError) as refused:
        world.manager.mutate(request_, NOW)
    assert str(refused.value) == message
    assert holdings(world.store) == before


def test_end_reservations_refuses_an_unknown_cmd() -> None:
    """The web UI's way in (`end_reservations`) checks the cmd itself."""
    world = World()
    with pytest.raises(ClientError, match="^unknown mutate operation$"):
        world.manager.end_reservations("clear", ["jid-one000"], NOW)
