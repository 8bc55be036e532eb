"""Which limits a job is subject to, and in which partition of each: a job's *class*.

A rule is a `[throttles.<queue>]` entry (its jobs are those of the queue) or a
`[faktory_py.limits.<name>]` entry (those of its `queues` and `jobtypes`); a job is subject
to every rule that selects it, and in each to the partition its `partition` selectors give
(protocol/spec.md §11.8–§11.9). The class of a job — the (rule, partition) pairs of all the
rules it is subject to — is all FETCH needs to know about it: two jobs of one class are held
back by exactly the same slots and rate windows. Everything here is computed from the job
and the configuration, never stored, so a restart or a reload derives it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ...util import jsoncodec
from ...util.limits import Limit

#: the canonical JSON of each selected value, in the order of the rule's selectors
Partition = tuple[str, ...]
#: a rule's name and one of its partitions: what slots and rate windows are counted by
SlotKey = tuple[str, Partition]
#: the slot keys of every rule a job is subject to, in the rules' order
JobClass = tuple[SlotKey, ...]

#: the prefix of a named limit's rule name: `:` is in no queue name, so no throttle's clashes
LIMIT_PREFIX = "limits:"
_NULL = "null"


@dataclass(frozen=True, slots=True)
class Rule:
    """A limit and the jobs it applies to."""

    #: the queue of a throttle; `LIMIT_PREFIX` + the name of a named limit
    name: str
    #: its configuration entry (`config.Throttle` or `config.NamedLimit`), read for its limits
    limit: Limit
    #: the queues whose jobs it selects (None: every queue)
    queues: frozenset[str] | None = None
    #: the jobtypes it selects (None: every jobtype)
    jobtypes: frozenset[str] | None = None

    @property
    def label(self) -> str:
        """Its name as INFO, THROTTLE STATUS and the web UI show it (queue or limit name)."""
        return self.name.removeprefix(LIMIT_PREFIX)

    @property
    def is_limit(self) -> bool:
        return self.name.startswith(LIMIT_PREFIX)

    def partition_of(self, job: Mapping[str, Any]) -> Partition:
        return tuple(_canonical(_select(job, selector)) for selector in self.limit.partition)


def throttle(queue: str, limit: Limit) -> Rule:
    return Rule(queue, limit, queues=frozenset((queue,)))


def named_limit(name: str, limit: Limit, queues: Iterable[str] | None, jobtypes: Iterable[str] | None) -> Rule:
    return Rule(LIMIT_PREFIX + name, limit, None if queues is None else frozenset(queues),
                None if jobtypes is None else frozenset(jobtypes))


def _select(job: Mapping[str, Any], selector: str) -> Any:
    """The value `selector` names in `job`, None where its path leads nowhere."""
    if selector in ("jobtype", "queue"):
        return job.get(selector)
    value: Any = job
    for segment in selector.split("."):
        if isinstance(value, dict):
            value = value.get(segment)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return None
    return value


def _canonical(value: Any) -> str:
    """A value's canonical JSON (sorted keys, no spaces): equal values, equal partitions."""
    return _NULL if value is None else jsoncodec.canonical(value)


def decode_partition(partition: Partition) -> list[Any] | None:
    """A partition as THROTTLE STATUS shows it: the selected values (None: unpartitioned)."""
    return [jsoncodec.loads(value) for value in partition] if partition else None


class Rules:
    """The rules in force, in configuration order (throttles first, then named limits)."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.by_name = {rule.name: rule for rule in rules}
        #: (job, its class) of the last `class_of` that computed one
        self._last: tuple[Mapping[str, Any] | None, JobClass] = (None, ())
        #: queue → the rules that may select its jobs (only queues some rule names)
        self._of_queue: dict[str, tuple[Rule, ...]] = {}
        #: the rules that select jobs of every queue (a named limit without `queues`)
        self._everywhere = tuple(rule for rule in self.by_name.values() if rule.queues is None)
        for rule in self.by_name.values():
            for queue in rule.queues or ():
                self._of_queue[queue] = ()
        for queue in self._of_queue:
            self._of_queue[queue] = tuple(rule for rule in self.by_name.values()
                                          if rule.queues is None or queue in rule.queues)
        #: queue → the class of all its jobs, where no rule of it looks into the job
        self._fixed = {queue: _fixed(rules) for queue, rules in self._of_queue.items()}
        self._fixed_elsewhere = _fixed(self._everywhere)

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.by_name.values())

    def of_queue(self, queue: str) -> tuple[Rule, ...]:
        """The rules that may select jobs of `queue` (none: its FETCH takes the head)."""
        return self._of_queue.get(queue, self._everywhere)

    def fixed_class(self, queue: str) -> JobClass | None:
        """The class of every job of `queue` when no rule that may select them selects by
        jobtype or partitions them, else None (`class_of` must read each job)."""
        return self._fixed.get(queue, self._fixed_elsewhere)

    def class_of(self, job: Mapping[str, Any]) -> JobClass:
        """The class of `job`. The last answer is kept for the same job object: the slots
        and the rate windows both ask for each reservation (jobs are never changed in place)."""
        if job is self._last[0]:
            return self._last[1]
        rules = self._of_queue.get(job.get("queue", ""), self._everywhere)
        if not rules:  # the common case, on every reservation: no limit at all
            return ()
        job_class = tuple((rule.name, rule.partition_of(job) if rule.limit.partition else ())
                          for rule in rules if rule.jobtypes is None or job.get("jobtype") in rule.jobtypes)
        self._last = (job, job_class)
        return job_class


def _fixed(rules: tuple[Rule, ...]) -> JobClass | None:
    """The class the jobs of a queue selected by `rules` all have, if they do."""
    if any(rule.jobtypes is not None or rule.limit.partition for rule in rules):
        return None
    return tuple((rule.name, ()) for rule in rules)
