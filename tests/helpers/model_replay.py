"""Plumbing shared by the stateful model tests (test_lifecycle_model.py, test_batches_model.py,
test_unique_model.py, the throttles' and workflows' …): a store and manager with every feature,
the journal round trip, rebuilding a store from records, the store state a rebuilt store must
reproduce, and stepping through a manager's due times."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import msgpack

from faktory_py.core.lifecycle import Manager
from faktory_py.server.app import enterprise_features
from faktory_py.store.api import JOB_SETS
from faktory_py.store.memory import MemoryStore

F = TypeVar("F")


def enterprise_manager(kind: type[F], sink: Callable[[list[Any]], int] | None = None, seed: int = 0,
                       **settings: Any) -> tuple[MemoryStore, Manager, F]:
    """A MemoryStore journaling into `sink`, a Manager (retries drawn from `random.Random(seed)`)
    over every feature `enterprise_features` makes with `settings` (`throttles=`, `results=` …),
    and the one of type `kind`."""
    store = MemoryStore(sink=sink)
    features = enterprise_features(store, **settings)
    found = features.find(kind)
    assert found is not None
    return store, Manager(store, random.Random(seed), features), found


def roundtrip(ops: Any) -> Any:
    """What the journal does to a record: msgpack it and read it back."""
    return msgpack.unpackb(msgpack.packb(ops, use_bin_type=True), raw=False)


def snapshot_records(store: MemoryStore) -> list[Any]:
    """`store`'s snapshot as the journal would give it back."""
    return [roundtrip(record) for record in store.snapshot()]


def replay(store: MemoryStore, records: Iterable[list[dict[str, Any]]]) -> MemoryStore:
    """Apply every op of every record to `store`, in order; returns `store`."""
    for record in records:
        for op in record:
            store.apply(op)
    return store


def holdings(store: MemoryStore) -> dict[str, Any]:
    """Where the store holds jobs (queues, sets, working), in comparable form."""
    return {
        "queues": {name: list(store.queued(name)) for name in store.queue_names()},
        "sets": {name: list(store.set_entries(name)) for name in JOB_SETS},
        "working": [tuple(res) for res in store.reservations()],
    }


def working_jids(store: MemoryStore) -> set[str]:
    return {res.job["jid"] for res in store.reservations()}


def due_times(manager: Manager, target: float) -> Iterator[float]:
    """Each time `manager` is next due, up to `target`; the caller runs it before asking for the next."""
    while (due := manager.next_due()) is not None and due <= target:
        yield due
