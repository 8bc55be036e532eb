"""The limits and modes of a throttle or named limit (protocol/spec.md §11.1, §11.5, §11.7–§11.9).

A leaf, so that `config` can make its entries of this type when it loads them and the throttles
feature can read them as its rules' limits: one definition of the fields, on both sides of
the rule that features never import `config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Rate(NamedTuple):
    """`rate = { limit = L, period = P }` (protocol/spec.md §11.5)."""

    limit: int
    #: seconds
    period: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """The limits and modes a `[throttles.<queue>]` entry and a `[faktory_py.limits.<name>]`
    entry share (`config.Throttle` and `config.NamedLimit` add what selects their jobs); the
    throttles feature reads a rule's limits through this type alone."""

    #: seconds after its FETCH at which a slot ends even if the job has not (None: only with
    #: the job; a throttle must set it, as in Faktory Enterprise)
    timeout: int | None = None
    #: at most this many slots per partition across the server (None: no such limit)
    concurrency: int | None = None
    #: at most this many per (worker process (HELLO `wid`), partition)
    worker: int | None = None
    #: at most `rate.limit` FETCH grants per partition in any `rate.period` seconds
    rate: Rate | None = None
    #: "timeout": the slot ends at `timeout` (Faktory); "job_end": `timeout` only flags it
    #: overdue (protocol/spec.md §11.7)
    slot_release: str = "timeout"
    #: "fail": a worker process reaped for missing heartbeats fails its jobs here; "keep": it does not
    on_worker_lost: str = "fail"
    #: selectors of the values whose tuple is a job's partition: every limit applies per
    #: partition (protocol/spec.md §11.8); () for one partition
    partition: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rate is not None and not isinstance(self.rate, Rate):  # a (limit, period) pair
            object.__setattr__(self, "rate", Rate(*self.rate))
