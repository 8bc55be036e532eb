"""How features plug in (faktory_py/core/registry.py): the registry's order is the order every
hook runs in, a feature is asked only for the hooks its record names, a fetch hook's Drop
ends the fetch hooks for that job and tells every drop hook, and `find` looks a feature up
by type. The server's own registry keeps the order its behaviour depends on, and its records
name the pages and commands the web UI and the dispatcher add for them."""

from __future__ import annotations

import random
from typing import Any

import pytest

from collections.abc import Sequence

from faktory_py.core.hooks import Drop, Ended, Ending, Ends, Outcome
from faktory_py.core.lifecycle import Manager
from faktory_py.core.registry import Feature, Registry
from faktory_py.features.batches.feature import Batches
from faktory_py.features.cron.feature import Cron
from faktory_py.features.expiry import ExpiringJobs
from faktory_py.features.throttles.feature import Throttles
from faktory_py.features.tracking import JobTracking
from faktory_py.features.unique import UniqueJobs
from faktory_py.features.workflows.feature import Workflows
from faktory_py.server.app import enterprise_features
from faktory_py.store.api import Job, Op, Reservation
from faktory_py.store.memory import MemoryStore
from helpers import jobs

NOW = 1_700_000_000.0


class Recorder:
    """Implements every hook and writes each call into a shared log; `drops` are the jids
    its fetch hook drops."""

    def __init__(self, name: str, log: list[str], drops: tuple[str, ...] = ()) -> None:
        self.name, self.log, self.drops = name, log, drops

    def prepare(self, job: Job, now: float) -> Job:
        self.log.append(f"{self.name}.prepare")
        return job

    def on_push(self, job: Job, scheduled_for: float | None, wid: str, now: float) -> list[Op]:
        self.log.append(f"{self.name}.push")
        return []

    def on_fetch(self, job: Job, wid: str, now: float) -> list[Op] | Drop:
        self.log.append(f"{self.name}.fetch {job['jid']}")
        return Drop() if job["jid"] in self.drops else []

    def on_drop(self, job: Job, now: float) -> list[Op]:
        self.log.append(f"{self.name}.drop {job['jid']}")
        return []

    def on_ack(self, res: Reservation, now: float) -> list[Op]:
        self.log.append(f"{self.name}.ack")
        return []

    def on_fail(self, res: Reservation, failed: Job, outcome: Outcome, now: float) -> list[Op]:
        self.log.append(f"{self.name}.fail {outcome.name}")
        return []

    def on_end(self, ended: Sequence[Ended], now: float) -> list[Op]:
        self.log.append(f"{self.name}.end {' '.join(end.job['jid'] for end in ended)}")
        return []

    def next_due(self) -> float | None:
        return None

    def run_due(self, now: float) -> list[Op]:
        self.log.append(f"{self.name}.run_due")
        return []

    def info_fields(self) -> dict[str, Any]:
        return {self.name: 1}


def job(jid: str, **fields: Any) -> dict[str, Any]:
    return jobs.job(f"job-000{jid}", **fields)


def test_hooks_run_in_registry_order_and_only_where_a_record_names_them() -> None:
    log: list[str] = []
    first, second = Recorder("first", log), Recorder("second", log)
    registry = Registry([
        Feature("first", first, prepare=first, push=first, fetch=first, drop=first, finish=first,
                timed=first, info=first),
        Feature("second", second, push=second, finish=second),  # no prepare, fetch, drop, timed, info
    ])
    manager = Manager(MemoryStore(), random.Random(0), registry)
    manager.push(job("a", retry=1), NOW)
    manager.fetch(["default"], "", NOW)
    manager.fail("job-000a", "E", "m", [], NOW)
    manager.run_due(NOW + 10_000)  # the retry is due again
    manager.fetch(["default"], "", NOW + 10_000)
    manager.fail("job-000a", "E", "m", [], NOW + 10_000)
    manager.push(job("b"), NOW)
    manager.fetch(["default"], "", NOW)
    manager.ack("job-000b", NOW)
    assert log == [
        "first.prepare", "first.push", "second.push",
        "first.fetch job-000a", "first.fail RETRY", "second.fail RETRY",
        "first.run_due", "first.fetch job-000a", "first.fail DEAD", "second.fail DEAD",
        "first.prepare", "first.push", "second.push", "first.fetch job-000b", "first.ack", "second.ack",
    ]
    assert [info.info_fields() for info in registry.info] == [{"first": 1}]


def test_a_drop_ends_the_fetch_hooks_and_tells_every_drop_hook() -> None:
    log: list[str] = []
    first, second, third = Recorder("first", log), Recorder("second", log, drops=("job-000a",)), Recorder("third", log)
    registry = Registry(Feature(r.name, r, fetch=r, drop=r) for r in (first, second, third))
    manager = Manager(MemoryStore(), random.Random(0), registry)
    manager.push(job("a"), NOW)
    manager.push(job("b"), NOW)
    fetched, _ = manager.fetch(["default"], "", NOW)
    assert fetched is not None and fetched["jid"] == "job-000b"
    assert log == ["first.fetch job-000a", "second.fetch job-000a", "first.drop job-000a", "second.drop job-000a", "third.drop job-000a",
                   "first.fetch job-000b", "second.fetch job-000b", "third.fetch job-000b"]


def test_a_job_without_retries_fails_as_dropped() -> None:
    log: list[str] = []
    recorder = Recorder("only", log)
    manager = Manager(MemoryStore(), random.Random(0), Registry([Feature("only", recorder, finish=recorder)]))
    manager.push(job("a", retry=0), NOW)
    manager.fetch(["default"], "", NOW)
    manager.fail("job-000a", "E", "m", [], NOW)
    assert log == ["only.fail DROPPED"]


def test_custom_only_hooks_are_skipped_for_jobs_without_custom() -> None:
    """A record's `custom_only` slots are not called for a job without a `custom` block (the
    hooks would do nothing with it), and are for one with it; the other slots always are."""
    log: list[str] = []
    gated, always = Recorder("gated", log), Recorder("always", log)
    registry = Registry([
        Feature("gated", gated, prepare=gated, push=gated, fetch=gated, finish=gated, end=gated,
                custom_only=frozenset({"prepare", "push", "fetch", "finish", "end"})),
        Feature("always", always, push=always, fetch=always, finish=always, end=always),
    ])
    manager = Manager(MemoryStore(), random.Random(0), registry)
    for name, extra in (("a", {}), ("b", {"custom": {"k": 1}})):
        manager.push(job(name, **extra), NOW)
        manager.fetch(["default"], "", NOW)
        manager.ack(f"job-000{name}", NOW)
    assert log == [
        "always.push", "always.fetch job-000a", "always.ack", "always.end job-000a",
        "gated.prepare", "gated.push", "always.push", "gated.fetch job-000b", "always.fetch job-000b",
        "gated.ack", "always.ack", "gated.end job-000b", "always.end job-000b",
    ]
    assert registry.plain.fetch == (always,) and registry.fetch == (gated, always)


class Killer(Recorder):
    """An end hook that, told of a plain job ending, ends a job with `custom` in the same step
    (as job dependencies kill a dependent)."""

    def on_end(self, ended: Sequence[Ended], now: float) -> list[Op] | Ends:  # type: ignore[override]
        super().on_end(ended, now)
        if any("custom" in end.job for end in ended):
            return []
        return Ends([], [Ended(job("dep", custom={"after": ["job-000a"]}), Ending.DEAD)])


def test_a_custom_only_end_hook_hears_of_the_jobs_another_hook_ended() -> None:
    log: list[str] = []
    killer, gated = Killer("killer", log), Recorder("gated", log)
    registry = Registry([Feature("killer", killer, end=killer),
                         Feature("gated", gated, end=gated, custom_only=frozenset({"end"}))])
    manager = Manager(MemoryStore(), random.Random(0), registry)
    manager.push(job("a"), NOW)
    manager.fetch(["default"], "", NOW)
    manager.ack("job-000a", NOW)
    assert log == ["killer.end job-000a", "gated.end job-000dep"]


def test_custom_only_names_job_hook_slots() -> None:
    log: list[str] = []
    with pytest.raises(ValueError, match="custom_only"):
        Registry([Feature("r", Recorder("r", log), custom_only=frozenset({"info"}))])


def test_find_looks_a_feature_up_by_type() -> None:
    log: list[str] = []
    recorder = Recorder("r", log)
    registry = Registry([Feature("r", recorder)])
    assert registry.find(Recorder) is recorder
    assert registry.find(Batches) is None
    assert [feature.name for feature in registry] == ["r"]


def test_replace_swaps_a_features_hooks_in_its_place() -> None:
    """A feature whose hooks change (throttles after a reload gain or lose their FETCH gate)
    gets its new record in its old place; an unknown name is refused."""
    log: list[str] = []
    first, second = Recorder("first", log), Recorder("second", log)
    registry = Registry([Feature("first", first, info=first), Feature("second", second)])
    registry.replace(Feature("second", second, push=second, info=second))
    assert [f.name for f in registry] == ["first", "second"]
    assert registry.push == (second,) and registry.info == (first, second)
    registry.replace(Feature("first", first))
    assert registry.info == (second,)
    with pytest.raises(KeyError):
        registry.replace(Feature("third", first))


def test_feature_names_are_unique() -> None:
    log: list[str] = []
    with pytest.raises(ValueError, match="unique"):
        Registry([Feature("same", Recorder("a", log)), Feature("same", Recorder("b", log))])


def test_the_servers_features_keep_their_order() -> None:
    """Hook order is behaviour: expiry drops an expired job before unique, tracking and
    batches see its fetch (they get on_drop instead). Throttles' select hook chooses the job
    before any fetch hook sees it, whatever its place. Workflows holds a job after every push hook ran, and
    comes before batches, whose end hook is told of the dependents it kills. Cron comes last,
    and without entries has no finish or end hook."""
    registry = enterprise_features(MemoryStore())
    assert [feature.name for feature in registry] == ["expiry", "unique", "tracking", "workflows", "batches",
                                                      "throttles", "cron"]
    kinds = (ExpiringJobs, UniqueJobs, JobTracking, Workflows, Batches, Throttles, Cron)
    assert [type(feature.owner) for feature in registry] == list(kinds)
    assert all(registry.find(kind) is feature.owner for kind, feature in zip(kinds, registry))
    assert [type(hook) for hook in registry.fetch] == [ExpiringJobs, UniqueJobs, JobTracking, Batches]
    assert [type(hook) for hook in registry.hold] == [Workflows]
    assert registry.select == ()  # no throttle configured: FETCH takes the head
    # a job without `custom` is no feature's business at PUSH and FETCH (ACK: unique prunes
    # its expired locks, batches releases a hold of the jid, workflows records ends)
    assert registry.plain.prepare == registry.plain.hold == registry.plain.fetch == registry.plain.drop == ()
    assert [type(hook) for hook in registry.plain.push] == [Workflows]
    assert [type(hook) for hook in registry.plain.finish] == [UniqueJobs, Batches]
    assert [type(hook) for hook in registry.plain.end] == [Workflows, Batches]
    # the Throttles tab is routed from the start (a reload may configure throttles), listed once there are some
    assert [(page.name, page.listed) for feature in registry for page in feature.pages] == [
        ("held", True), ("batches", True), ("throttles", False), ("cron", False)]
    assert [feature.commands for feature in registry] == [(), (), ("TRACK",), ("RESULT", "JOB"), ("BATCH",),
                                                          ("THROTTLE",), ("CRON",)]
    assert Cron not in {type(hook) for hook in (*registry.finish, *registry.end)}
