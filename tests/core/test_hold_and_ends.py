"""The two small core mechanisms job dependencies need (faktory_py/core/hooks.py): a hold hook
takes over storing a pushed job after every push hook ran, and a hook that ends jobs itself
answers `Ends`, whose jobs every *other* end hook is told of in the same step (once each) —
whether the answer came from an end hook, a hold hook or a timed hook."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from faktory_py.core.hooks import Ended, Ending, Ends
from faktory_py.core.lifecycle import Manager
from faktory_py.core.registry import Feature, Registry
from faktory_py.store.api import Job, Op, SetAdd
from faktory_py.store.memory import MemoryStore
from helpers import jobs

NOW = 1_700_000_000.0


def job(jid: str) -> dict[str, Any]:
    return jobs.job(jid * 8)


class Listener:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def on_push(self, job: Job, scheduled_for: float | None, wid: str, now: float) -> list[Op]:
        self.log.append(f"push {job['jid'][0]}")
        return []

    def on_end(self, ended: Sequence[Ended], now: float) -> list[Op]:
        self.log += [f"end {e.job['jid'][0]} {e.ending.value}" for e in ended]
        return []


class Killer:
    """Holds jobs of jobtype "Hold"; when a job ends, kills the held one into the dead set."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.held: Job | None = None

    def hold(self, job: Job, scheduled_for: float | None, now: float) -> Ends | None:
        if job["jobtype"] != "Hold":
            return None
        self.held = job
        return Ends([], [])

    def _kill(self) -> Ends:
        assert self.held is not None
        held, self.held = self.held, None
        return Ends([SetAdd("dead", NOW + 60, held)], [Ended(held, Ending.DEAD)])

    def on_end(self, ended: Sequence[Ended], now: float) -> list[Op] | Ends:
        self.log += [f"killer saw {e.job['jid'][0]}" for e in ended]
        return self._kill() if self.held is not None else []

    def next_due(self) -> float | None:
        return NOW + 10 if self.held is not None else None

    def run_due(self, now: float) -> list[Op] | Ends:
        return self._kill() if self.held is not None else []


def world() -> tuple[Manager, Killer, list[str]]:
    log: list[str] = []
    store = MemoryStore()
    first, killer, last = Listener(log), Killer(log), Listener(log)
    registry = Registry([Feature("first", first, push=first, end=first),
                         Feature("killer", killer, hold=killer, end=killer, timed=killer),
                         Feature("last", last, push=last, end=last)])
    return Manager(store, random.Random(1), registry), killer, log


def test_a_held_job_is_in_no_queue_and_every_push_hook_saw_it() -> None:
    manager, killer, log = world()
    manager.push({**job("h"), "jobtype": "Hold"}, NOW)
    assert log == ["push h", "push h"] and killer.held is not None
    assert manager.store.queue_size("default") == 0


def test_the_jobs_an_end_hook_ends_are_told_to_the_others_once() -> None:
    manager, _killer, log = world()
    manager.push({**job("h"), "jobtype": "Hold"}, NOW)
    manager.push(job("a"), NOW)
    manager.fetch(["default"], "w", NOW)
    log.clear()
    manager.ack("a" * 8, NOW)
    # "last" hears of a and h in one call (it comes after the killer), "first" of h after
    assert log == ["end a success", "killer saw a", "end a success", "end h dead", "end h dead"]
    assert manager.store.set_entry("dead", "h" * 8) is not None


def test_a_timed_hooks_ends_reach_the_end_hooks() -> None:
    manager, _killer, log = world()
    manager.push({**job("h"), "jobtype": "Hold"}, NOW)
    log.clear()
    manager.run_due(NOW + 10)
    assert log == ["end h dead", "end h dead"]
