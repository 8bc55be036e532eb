"""Job dependencies without sockets: declaring, holding, release in the step that resolved the
last dependency, the policies, unknown jids, cycles (protocol/spec.md §14; the reference's
C-T3 … C-T7). Every test ends by rebuilding the store from its journal (C-T11's in-process
half: `World.check_replay` after each step where it matters)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from faktory_py import config
from faktory_py.config import ConfigError
from faktory_py.core.lifecycle import Manager
from faktory_py.errors import ClientError
from faktory_py.features.batches.feature import Batches
from faktory_py.features.workflows.feature import Workflows, workflow_table
from faktory_py.server.app import enterprise_features
from faktory_py.store.memory import MemoryStore
from faktory_py.util.timefmt import format_time
from helpers.model_replay import enterprise_manager, holdings, replay, roundtrip

NOW = 1_700_000_000.0


def jid(name: str) -> str:
    return (name * 8)[:8] if len(name) == 1 else name


class World:
    """A store with every feature, a manager, a journal, and conveniences."""

    def __init__(self) -> None:
        self.journal: list[list[dict[str, Any]]] = []
        self.store, self.manager, self.wf = self._build(sink=self._sink)
        self.now = NOW

    @staticmethod
    def _build(**observers: Any) -> tuple[MemoryStore, Manager, Workflows]:
        return enterprise_manager(Workflows, seed=1, **observers)

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.journal.append(roundtrip(ops))
        return len(self.journal)

    def push(self, name: str, after: list[Any] | None = None, **fields: Any) -> None:
        custom = dict(fields.pop("custom", {}))
        if after is not None:
            custom["after"] = [jid(a) if isinstance(a, str) else a for a in after]
        job = {"jid": jid(name), "jobtype": "Work", "args": [], "queue": fields.pop("queue", "default"),
               **({"custom": custom} if custom else {}), **fields}
        self.manager.push(job, self.now)

    def run(self, name: str, queue: str = "default") -> dict[str, Any]:
        """Fetch the next job, which must be `name`."""
        job, _ = self.manager.fetch([queue], "w1", self.now)
        assert job is not None and job["jid"] == jid(name), job
        return job

    def ack(self, name: str, result: Any = None) -> dict[str, Any]:
        job = self.run(name)
        self.manager.ack(jid(name), self.now, result)
        return job

    def fail(self, name: str, **fields: Any) -> None:
        self.run(name)
        self.manager.fail(jid(name), "Boom", "it broke", [], self.now)

    def queued(self, queue: str = "default") -> list[str]:
        return [job["jid"] for job in self.store.queued(queue)]

    def dead(self, name: str) -> dict[str, Any] | None:
        entry = self.store.set_entry("dead", jid(name))
        return None if entry is None else entry[1]

    def held(self) -> list[str]:
        return sorted(self.wf.held)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.manager.run_due(self.now)

    def check_replay(self) -> None:
        """A store rebuilt from the journal, and one rebuilt from a snapshot, equal this one."""
        store, _manager, wf = self._build()
        replay(store, self.journal)
        assert workflow_table(wf) == workflow_table(self.wf)
        assert holdings(store) == holdings(self.store)
        again, _m, wf2 = self._build()
        replay(again, [roundtrip(record) for record in self.store.snapshot()])
        assert workflow_table(wf2) == workflow_table(self.wf)


@pytest.fixture
def world() -> World:
    return World()


def test_a_chain_pushed_in_reverse_is_released_one_ack_at_a_time(world: World) -> None:
    world.push("c", after=["b"])
    world.push("b", after=["a"])
    world.push("a")
    assert world.held() == [jid("b"), jid("c")]
    assert world.queued() == [jid("a")]
    world.ack("a")
    assert world.held() == [jid("c")] and world.queued() == [jid("b")]
    world.check_replay()
    b = world.ack("b", result={"n": 3})
    assert b["custom"]["_after"] == {jid("a"): {"outcome": "success"}}
    assert world.held() == [] and world.queued() == [jid("c")]
    c = world.run("c")
    assert c["custom"]["_after"] == {jid("b"): {"outcome": "success", "result": {"n": 3}}}
    assert set(c) <= {"jid", "jobtype", "args", "queue", "custom", "created_at", "enqueued_at", "retry"}
    assert c["enqueued_at"] == format_time(NOW)
    assert world.wf.info_fields() == {"workflows": {"held": 0, "released": 2, "killed": 0, "missing": 0}}
    world.check_replay()


def test_a_job_whose_dependencies_all_ended_is_released_at_its_push(world: World) -> None:
    world.push("x")
    world.push("y", after=["x"])  # x is known (queued): y waits
    world.ack("x")
    world.push("z", after=["x"])  # x's outcome is kept while y named it … and for ttl
    assert world.queued() == [jid("y"), jid("z")]
    world.check_replay()


@pytest.mark.parametrize("how", ["discarded", "dead"])
def test_policy_success_kills_the_dependent_and_its_dependents_in_the_same_step(world: World, how: str) -> None:
    world.push("a", retry=0 if how == "discarded" else 1)
    world.push("b", queue="other")
    world.push("c", after=["a", "b"])
    world.push("d", after=["c"])
    world.fail("a")
    if how == "dead":
        world.advance(3600)  # into its queue again
        world.fail("a")
    c, d = world.dead("c"), world.dead("d")
    assert c is not None and d is not None and world.held() == []
    assert c["failure"]["errtype"] == "DependencyFailed"
    assert c["failure"]["message"] == f"dependency {jid('a')} {how}"
    assert d["failure"]["message"] == f"dependency {jid('c')} dead"
    assert c["failure"]["retry_count"] == 0 and c["failure"]["remaining"] == 0
    world.check_replay()


def test_policy_complete_releases_with_every_outcome(world: World) -> None:
    world.push("a", retry=0)
    world.push("b")
    world.push("c", after=["a", "b"], custom={"after_policy": "complete"})
    world.fail("a")
    assert world.held() == [jid("c")]
    world.ack("b", result="ok")
    c = world.run("c")
    assert c["custom"]["_after"] == {jid("a"): {"outcome": "discarded"},
                                     jid("b"): {"outcome": "success", "result": "ok"}}
    world.check_replay()


def test_deleted_dependencies_resolve_as_deleted(world: World) -> None:
    world.push("a", retry=3)
    world.push("q", queue="other")
    world.push("c", after=["a", "q"], custom={"after_policy": "complete"})
    world.fail("a")  # into the retry set
    world.manager.mutate({"cmd": "discard", "target": "retries", "filter": {"jids": [jid("a")]}}, world.now)
    world.manager.remove(["other"], world.now)
    c = world.run("c")
    assert c["custom"]["_after"] == {jid("a"): {"outcome": "deleted"}, jid("q"): {"outcome": "deleted"}}
    world.check_replay()


def test_an_unknown_dependency_is_missing_after_its_timeout(world: World) -> None:
    world.push("c", after=["n"], custom={"after_timeout": 60})
    world.push("d", after=["m"], custom={"after_timeout": 60})
    world.advance(30)
    world.push("m")  # seen within the timeout: a normal wait
    world.advance(30)
    dead = world.dead("c")
    assert dead is not None and dead["failure"]["message"] == f"dependency {jid('n')} missing"
    assert world.held() == [jid("d")]
    world.ack("m")
    assert world.queued() == [jid("d")]
    assert world.wf.info_fields()["workflows"]["missing"] == 1
    world.check_replay()


def test_a_cycle_is_refused_and_changes_nothing(world: World) -> None:
    world.push("x", after=["y"])
    before = len(world.journal)
    with pytest.raises(ClientError) as err:
        world.push("y", after=["x"])
    assert str(err.value) == f"custom.after: dependency cycle {jid('y')} -> {jid('x')} -> {jid('y')}"
    assert len(world.journal) == before and world.held() == [jid("x")]
    world.advance(1800)
    assert world.dead("x") is not None


@pytest.mark.parametrize(("after", "extra", "message"), [
    ("nope", {}, 'custom.after must be an array of job ids or {"jid"|"bid": id} objects'),
    ([], {}, 'custom.after must be an array of job ids or {"jid"|"bid": id} objects'),
    (["short"], {}, 'custom.after must be an array of job ids or {"jid"|"bid": id} objects'),
    ([{"jid": "aaaaaaaa", "x": 1}], {}, 'custom.after must be an array of job ids or {"jid"|"bid": id} objects'),
    (["cccccccc"], {}, "custom.after: a job cannot depend on itself"),
    (["aaaaaaaa"], {"after_policy": "always"}, 'custom.after_policy must be "success" or "complete"'),
    (["aaaaaaaa"], {"after_timeout": 0}, "custom.after_timeout must be a positive number of seconds: 0"),
])
def test_bad_declarations_are_refused(world: World, after: Any, extra: dict[str, Any], message: str) -> None:
    job = {"jid": "cccccccc", "jobtype": "W", "args": [], "custom": {"after": after, **extra}}
    with pytest.raises(ClientError) as err:
        world.manager.push(job, NOW)
    assert str(err.value) == f"{message}"
    assert world.journal == []


def test_too_many_dependencies(world: World) -> None:
    after = [f"dep{i:08d}" for i in range(10001)]
    with pytest.raises(ClientError) as err:
        world.manager.push({"jid": "cccccccc", "jobtype": "W", "args": [], "custom": {"after": after}}, NOW)
    assert str(err.value) == "custom.after: too many dependencies (10001 > 10000)"


def test_pushb_reports_each_refusal_and_holds_the_rest(world: World) -> None:
    errors, _ = world.manager.push_bulk([
        {"jid": "bbbbbbbb", "jobtype": "W", "args": [], "custom": {"after": ["aaaaaaaa"]}},
        {"jid": "cccccccc", "jobtype": "W", "args": [], "custom": {"after": ["cccccccc"]}},
    ], NOW)
    assert errors == {"cccccccc": "custom.after: a job cannot depend on itself"}
    assert world.held() == ["bbbbbbbb"]


def test_a_held_job_with_a_future_at_goes_to_the_scheduled_set(world: World) -> None:
    world.push("a")
    world.push("b", after=["a"], at=format_time(NOW + 600))
    world.ack("a")
    entry = world.store.set_entry("scheduled", jid("b"))
    assert entry is not None and entry[0] == NOW + 600
    world.check_replay()


def test_a_held_job_past_its_expiry_is_dropped_as_expired(world: World) -> None:
    world.push("a")
    world.push("b", after=["a"], custom={"expires_in": 10})
    world.push("c", after=["b"], custom={"after_policy": "complete"})
    world.now += 20
    world.ack("a")
    assert world.queued() == [jid("c")]
    c = world.run("c")
    assert c["custom"]["_after"] == {jid("b"): {"outcome": "expired"}}
    world.check_replay()


def test_outcome_records_are_forgotten_after_ttl_once_no_held_job_names_them(world: World) -> None:
    world.push("a")
    world.push("b", after=["a"])
    world.ack("a", result=1)
    assert world.wf.result(jid("a"), world.now)["result"] == 1
    world.advance(86400)
    assert world.wf.result(jid("a"), world.now) == {"jid": jid("a"), "outcome": "unknown"}
    assert jid("a") not in world.wf.records
    world.check_replay()


def test_a_job_deleted_from_its_queue_by_the_web_ui_resolves_as_deleted(world: World) -> None:
    world.push("a")
    world.push("c", after=["a"], custom={"after_policy": "complete"})
    world.manager.delete_queued("default", [jid("a")], world.now)
    assert world.run("c")["custom"]["_after"] == {jid("a"): {"outcome": "deleted"}}


def test_mutate_held(world: World) -> None:
    """MUTATE target `held`: discard (dependents see deleted), kill (dead), requeue (released
    now, whatever its dependencies), with MUTATE's filters."""
    for name in "xyz":
        world.push(name, after=["n"])
    world.push("d", after=["x", "y"], custom={"after_policy": "complete"})
    world.manager.mutate({"cmd": "discard", "target": "held", "filter": {"jids": [jid("x")]}}, world.now)
    y = world.wf.held[jid("y")].job
    world.manager.mutate({"cmd": "kill", "target": "held", "filter": {"jids": [jid("y")]}}, world.now)
    assert world.dead("y") == y and world.held() == [jid("z")]
    assert world.run("d")["custom"]["_after"] == {jid("x"): {"outcome": "deleted"}, jid("y"): {"outcome": "dead"}}
    world.manager.mutate({"cmd": "requeue", "target": "held"}, world.now)
    assert world.held() == [] and world.run("z")["custom"]["_after"] == {}
    world.check_replay()


def test_configuration(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "wf.toml").write_text('[faktory_py.workflows]\ndependency_key = "needs"\nunknown_timeout = 60\n'
                                    '[faktory_py.results]\nmax_bytes = 10\n')
    loaded = config.load(["-c", str(tmp_path), "-d", str(tmp_path / "db")], {})
    assert loaded.workflows == config.WorkflowsConfig(dependency_key="needs", unknown_timeout=60.0)
    assert loaded.results == config.ResultsConfig(max_bytes=10)
    (conf_d / "wf.toml").write_text("[faktory_py.workflows]\nunknown_timeout = 0\n")
    with pytest.raises(ConfigError, match=r"\[faktory_py.workflows\] unknown_timeout must be a positive number"):
        config.load(["-c", str(tmp_path)], {})


def test_another_dependency_key_or_none() -> None:
    store = MemoryStore()
    features = enterprise_features(store, workflows=config.WorkflowsConfig(dependency_key=""))
    manager = Manager(store, random.Random(1), features)
    manager.push({"jid": "bbbbbbbb", "jobtype": "W", "args": [], "custom": {"after": ["aaaaaaaa"]}}, NOW)
    assert [job["jid"] for job in store.queued("default")] == ["bbbbbbbb"]


def test_a_dependency_waiting_in_its_queue_past_the_timeout_is_not_missing(world: World) -> None:
    """Queues keep no jid index: a queued dependency is looked for when its deadline comes."""
    world.push("a", queue="slow")
    world.push("b", after=["a"], custom={"after_timeout": 60})
    world.advance(120)
    assert world.held() == [jid("b")] and world.wf.held[jid("b")].unknown == {}
    world.check_replay()
    job, _ = world.manager.fetch(["slow"], "w1", world.now)
    assert job is not None
    world.manager.ack(jid("a"), world.now)
    assert world.queued() == [jid("b")]


def test_a_track_set_result_is_recorded_when_the_job_succeeds(world: World) -> None:
    tracking = world.wf.tracking
    assert tracking is not None
    world.push("a")
    world.push("f", retry=0)
    world.push("c", after=["a", "f"], custom={"after_policy": "complete"})
    world.run("a")
    world.store.commit(tracking.progress_ops(jid("a"), world.now, result={"pages": 3}))
    world.store.commit(tracking.progress_ops(jid("a"), world.now, result={"pages": 4}))  # last write wins
    world.manager.ack(jid("a"), world.now)
    world.run("f")
    world.store.commit(tracking.progress_ops(jid("f"), world.now, result="half"))
    world.manager.fail(jid("f"), "E", "m", [], world.now)  # a failed job's result is not kept
    assert world.run("c")["custom"]["_after"] == {jid("a"): {"outcome": "success", "result": {"pages": 4}},
                                                  jid("f"): {"outcome": "discarded"}}
    with pytest.raises(ClientError) as err:
        tracking.progress_ops(jid("a"), world.now, result="x" * 70_000)
    assert str(err.value) == "result too large (70002 bytes > 65536)"
    world.check_replay()


def test_from_track_desc_makes_a_tracked_jobs_desc_its_result() -> None:
    store = MemoryStore()
    features = enterprise_features(store, results=config.ResultsConfig(from_track_desc=True))
    manager = Manager(store, random.Random(1), features)
    workflows = features.find(Workflows)
    assert workflows is not None and workflows.tracking is not None
    manager.push({"jid": "aaaaaaaa", "jobtype": "W", "args": [], "custom": {"track": 1}}, NOW)
    manager.push({"jid": "bbbbbbbb", "jobtype": "W", "args": [], "custom": {"after": ["aaaaaaaa"]}}, NOW)
    manager.fetch(["default"], "w", NOW)
    store.commit(workflows.tracking.progress_ops("aaaaaaaa", NOW, desc='{"ok":true}'))
    manager.ack("aaaaaaaa", NOW)
    released, _ = manager.fetch(["default"], "w", NOW)
    assert released is not None
    assert released["custom"]["_after"] == {"aaaaaaaa": {"outcome": "success", "result": '{"ok":true}'}}


def test_a_batch_member_killed_by_policy_counts_as_failed(world: World) -> None:
    batches = world.manager.features.find(Batches)
    assert batches is not None
    bid, ops = batches.new({"complete": {"jobtype": "Done", "args": []}}, "", world.now)
    world.store.commit(ops)
    world.push("x", retry=0, queue="up")
    world.push("m", after=["x"], custom={"bid": bid})
    world.store.commit(batches.commit(bid, world.now))
    job, _ = world.manager.fetch(["up"], "w1", world.now)
    assert job is not None
    world.manager.fail(jid("x"), "E", "m", [], world.now)  # m is killed by policy
    assert world.dead("m") is not None
    status = batches.status(bid, world.now)
    assert (status["pending"], status["failed"], status["complete_st"]) == (1, 1, "1")


def test_a_tracked_job_killed_or_deleted_while_held_is_dead_to_track_get(world: World) -> None:
    tracking = world.wf.tracking
    assert tracking is not None
    world.push("a", retry=0)
    world.push("b", after=["a"], custom={"track": 1})
    world.push("c", after=["n"], custom={"track": 1})
    assert tracking.progress(jid("b"), world.now)["state"] == "enqueued"
    world.fail("a")
    world.manager.mutate({"cmd": "discard", "target": "held"}, world.now)
    assert tracking.progress(jid("b"), world.now)["state"] == "dead"
    assert tracking.progress(jid("c"), world.now)["state"] == "dead"
