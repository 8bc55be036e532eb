"""The end hook (faktory_py/core/hooks.py `EndHook`): every way a job leaves the server for good
is reported exactly once, with its ending, in the step that ends it — and a failure that will
be retried, a requeue, or a dead job deleted from the Morgue is not an ending. Batches and job
dependencies rely on this: a member or dependency that never runs must still end."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from faktory_py.core.hooks import Ended, Ending
from faktory_py.core.lifecycle import Manager
from faktory_py.core.registry import Feature, Registry
from faktory_py.features.expiry import ExpiringJobs
from faktory_py.store.api import Op
from faktory_py.store.memory import MemoryStore
from faktory_py.util.timefmt import format_time
from helpers import jobs

NOW = 1_700_000_000.0


class Endings:
    """An end hook that records (jid, ending) per call."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, Ending]]] = []

    def on_end(self, ended: Sequence[Ended], now: float) -> list[Op]:
        self.calls.append([(e.job["jid"], e.ending) for e in ended])
        return []

    @property
    def seen(self) -> list[tuple[str, Ending]]:
        return [pair for call in self.calls for pair in call]


@pytest.fixture
def setup() -> tuple[Manager, Endings]:
    store = MemoryStore()
    endings = Endings()
    registry = Registry([ExpiringJobs(store).feature(), Feature("endings", endings, end=endings)])
    return Manager(store, random.Random(1), registry), endings


def job(jid: str, **fields: Any) -> dict[str, Any]:
    return jobs.job(jid * 8, **fields)


def reserve(manager: Manager, raw: dict[str, Any]) -> str:
    manager.push(raw, NOW)
    fetched, _ = manager.fetch([raw.get("queue", "default")], "w1", NOW)
    assert fetched is not None and fetched["jid"] == raw["jid"]
    return raw["jid"]


def test_ack_ends_in_success(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    manager.ack(reserve(manager, job("a")), NOW)
    assert endings.calls == [[("a" * 8, Ending.SUCCESS)]]


def test_a_failure_with_retries_left_is_not_an_ending(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    manager.fail(reserve(manager, job("a", retry=2)), "E", "m", [], NOW)
    assert endings.seen == []


def test_failing_with_retry_zero_discards_and_exhausted_retries_kill(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    manager.fail(reserve(manager, job("a", retry=0)), "E", "m", [], NOW)
    manager.fail(reserve(manager, job("b", retry=-1)), "E", "m", [], NOW)
    assert endings.seen == [("a" * 8, Ending.DISCARDED), ("b" * 8, Ending.DEAD)]


def test_an_expired_reservation_without_retries_ends(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    reserve(manager, job("a", retry=0, reserve_for=60))
    manager.run_due(NOW + 61)
    assert endings.seen == [("a" * 8, Ending.DISCARDED)]


def test_a_job_expired_at_fetch_ends_as_expired(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    manager.push(job("a", custom={"expires_at": format_time(NOW + 1)}), NOW)
    manager.push(job("b"), NOW)
    fetched, _ = manager.fetch(["default"], "w1", NOW + 2)
    assert fetched is not None and fetched["jid"] == "b" * 8
    assert endings.seen == [("a" * 8, Ending.EXPIRED)]


def test_mutate_discard_and_kill_of_live_entries_end_them_requeue_does_not(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    for jid in "abc":
        manager.push(job(jid, at=format_time(NOW + 3600)), NOW)
    manager.mutate({"cmd": "discard", "target": "scheduled", "filter": {"jids": ["a" * 8]}}, NOW)
    manager.mutate({"cmd": "kill", "target": "scheduled", "filter": {"jids": ["b" * 8]}}, NOW)
    manager.mutate({"cmd": "requeue", "target": "scheduled", "filter": {"jids": ["c" * 8]}}, NOW)
    assert endings.seen == [("a" * 8, Ending.DELETED), ("b" * 8, Ending.DEAD)]


def test_deleting_dead_jobs_is_not_a_second_ending(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    manager.fail(reserve(manager, job("a", retry=-1)), "E", "m", [], NOW)
    manager.mutate({"cmd": "discard", "target": "dead", "filter": {"jids": ["a" * 8]}}, NOW)
    manager.mutate({"cmd": "clear", "target": "dead"}, NOW)
    assert endings.seen == [("a" * 8, Ending.DEAD)]


def test_clearing_a_live_set_ends_every_entry_in_one_call(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    for jid in "ab":
        manager.fail(reserve(manager, job(jid, retry=5)), "E", "m", [], NOW)
    manager.mutate({"cmd": "clear", "target": "retries"}, NOW)
    assert endings.calls == [[("a" * 8, Ending.DELETED), ("b" * 8, Ending.DELETED)]]


def test_web_ui_deletes_end_jobs(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    for jid in "abc":
        manager.push(job(jid), NOW)
    manager.push(job("d", at=format_time(NOW + 60)), NOW)
    manager.delete_queued("default", ["b" * 8, "zzzzzzzz"], NOW)
    manager.delete_entries("scheduled", ["d" * 8], NOW)
    assert endings.seen == [("b" * 8, Ending.DELETED), ("d" * 8, Ending.DELETED)]


def test_queue_remove_ends_every_queued_job_not_the_reserved_ones(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    reserve(manager, job("a", queue="q"))
    manager.push(job("b", queue="q"), NOW)
    manager.push(job("c", queue="q"), NOW)
    manager.remove(["q"], NOW)
    assert endings.calls == [[("b" * 8, Ending.DELETED), ("c" * 8, Ending.DELETED)]]
    manager.ack("a" * 8, NOW)
    assert endings.calls[-1] == [("a" * 8, Ending.SUCCESS)]


def test_worker_lost_failure_of_a_job_without_retries_ends_it(setup: tuple[Manager, Endings]) -> None:
    manager, endings = setup
    jid = reserve(manager, job("a", retry=0))
    manager.worker_lost("w1", [jid], NOW)
    assert endings.seen == [("a" * 8, Ending.DISCARDED)]
