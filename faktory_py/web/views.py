"""What each web page shows, as plain data computed from the live server state.

Pure functions over the store's read methods (`store.api.Store`), the worker registry and
the batches extension, with "now" passed in: no HTTP, no templates, no clock, so they are
tested directly. A page of a sorted set (retries, scheduled, dead, working) is a positional
slice that touches only its 25 rows, so it costs the same with 100k jobs behind it; a queue
page reads the queue from its head to the end of the page (a C-level walk, and the pages
people read are the first).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Generic, TypeVar

from .. import FAKTORY_VERSION, __version__
from ..core.workers import Worker
from ..features.batches.feature import Batches
from ..features.batches.model import Batch
from ..store.api import Store, StoreStatistics
from ..util.timefmt import format_time, utc_day

PAGE_SIZE = 25
HISTORY_DAYS = (7, 30, 90, 180)
#: URL segment → store set, as Faktory names its pages (the dead set is "morgue")
SET_PAGES = {"retries": "retries", "scheduled": "scheduled", "morgue": "dead"}

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: its rows plus what the pager needs."""

    rows: list[T]
    number: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))

    @property
    def offset(self) -> int:
        return (self.number - 1) * PAGE_SIZE


def page_number(raw: str | None) -> int:
    """`?page=N` as a page number ≥ 1; anything unparsable is the first page."""
    try:
        return max(1, int(raw or 1))
    except ValueError:
        return 1


# --- sorted sets (retries, scheduled, dead) ---------------------------------------------

def entry_key(score: float, jid: str) -> str:
    """Faktory's key of a set entry: `<RFC3339Nano of its score>|<jid>`.

    The time part pins the entry as shown: if the job was retried and failed again
    meanwhile, the same jid has a new score and an old key no longer matches it.
    """
    return f"{format_time(score)}|{jid}"


def resolve_keys(store: Store, set_name: str, keys: Iterable[str]) -> list[str]:
    """The jids of the keys that still name an entry of the set with that score."""
    jids = []
    for key in keys:
        at, sep, jid = key.partition("|")
        found = store.set_entry(set_name, jid) if sep else None
        if found is not None and format_time(found[0]) == at:
            jids.append(jid)
    return jids


@dataclass(frozen=True)
class Entry:
    """One row of a set page (or its detail page)."""

    key: str
    at: str
    job: Mapping[str, Any]

    @property
    def failure(self) -> Mapping[str, Any]:
        return self.job.get("failure") or {}


def set_page(store: Store, set_name: str, number: int) -> Page[Entry]:
    """Entries in score order (next due first), one page of them."""
    page: Page[Entry] = Page([], number, store.set_size(set_name))
    rows = [Entry(entry_key(score, jid), format_time(score), job)
            for score, jid, job in store.set_page(set_name, page.offset, PAGE_SIZE)]
    return Page(rows, number, page.total)


def set_entry(store: Store, set_name: str, key: str) -> Entry | None:
    jids = resolve_keys(store, set_name, [key])
    if not jids:
        return None
    score, job = store.set_entry(set_name, jids[0])  # type: ignore[misc]
    return Entry(key, format_time(score), job)


# --- queues -----------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueRow:
    name: str
    size: int
    paused: bool
    latency: float


def queue_rows(state: StoreStatistics, latencies: Mapping[str, float]) -> list[QueueRow]:
    """Every known queue, sorted by name (Faktory's order), with size and latency."""
    return [QueueRow(name, size, name in state.paused, float(latencies.get(name, 0)))
            for name, size in sorted(state.queues.items())]


def queue_page(store: Store, queue: str, number: int) -> Page[Mapping[str, Any]]:
    """Waiting jobs, next to be fetched first; decodes only the page's jobs."""
    page: Page[Mapping[str, Any]] = Page([], number, store.queue_size(queue))
    return Page(store.queue_page(queue, page.offset, PAGE_SIZE), number, page.total)


# --- busy -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Busy:
    """The Busy page: worker processes and one page of jobs being worked on."""

    processes: list[Worker]
    #: wid → jobs it holds (counted over the whole working set: that is bounded by the
    #: workers' concurrency, not a backlog like the queues and the other sets)
    held: Mapping[str, int]
    jobs: Page[tuple[str, float, Mapping[str, Any]]]  # (wid, reserved_at, job)
    #: jids whose reservation holds a throttle slot (protocol/spec.md §11.2)
    slots: frozenset[str] = frozenset()


#: the Busy page's buttons on a reservation: MUTATE's commands on the `working` target
WORKING_ACTIONS = ("requeue", "kill", "discard")


def busy(workers: Mapping[str, Worker], store: Store, number: int, slots: frozenset[str] = frozenset()) -> Busy:
    processes = sorted(workers.values(), key=lambda w: (w.hostname, w.pid, w.wid))
    held = Counter(res.wid for res in store.reservations())
    page: Page[Any] = Page([], number, sum(held.values()))
    rows = [(res.wid, res.reserved_at, res.job) for res in store.reservation_page(page.offset, PAGE_SIZE)]
    return Busy(processes, held, Page(rows, number, page.total), slots)


# --- dashboard --------------------------------------------------------------------------

def history_days(raw: str | None) -> int:
    """`?days=` as one of the offered spans, default 30 (Faktory's)."""
    try:
        days = int(raw or 30)
    except ValueError:
        return 30
    return days if days in HISTORY_DAYS else 30


def history(counts: Mapping[str, Sequence[int]], days: int, now: float) -> list[tuple[str, int, int]]:
    """(day, processed, failed) for the last `days` UTC days, oldest first, zeros filled."""
    out = []
    for back in range(days - 1, -1, -1):
        day = utc_day(now - timedelta(days=back).total_seconds())
        processed, failed = counts.get(day, (0, 0))
        out.append((day, processed, failed))
    return out


# --- batches ----------------------------------------------------------------------------

def batch_page(extension: Batches, number: int) -> Page[Batch]:
    """Batches newest first (the dict holds them in creation order)."""
    batches = extension.batches
    page: Page[Batch] = Page([], number, len(batches))
    newest_first = reversed(batches.values())
    return Page(list(islice(newest_first, page.offset, page.offset + PAGE_SIZE)), number, page.total)


#: "2" is Faktory's "ACKed"; here it also marks a callback job that left without an ACK (dead,
#: discarded, expired, deleted: protocol/spec.md §10), so the word is "finished"
CALLBACK_STATES = {"": "pending", "1": "enqueued", "2": "finished"}


def callback_state(batch: Batch, kind: str) -> str:
    """A callback's state in words: none, pending, enqueued (running) or finished."""
    if getattr(batch, kind) is None:
        return "none"
    return CALLBACK_STATES.get(getattr(batch, kind + "_st"), "pending")


# --- debug ------------------------------------------------------------------------------

def _rss_mb() -> str:
    """Current resident memory from /proc (Linux); INFO reports the peak instead."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return f"{int(line.split()[1]) / 1024:.1f} MB"
    except OSError:
        pass
    return "unknown"


def debug_facts(data_dir: Path, conf_dir: Path, bindings: Mapping[str, str]) -> list[tuple[str, str]]:
    """The Debug page: versions, where the data is, this process and its disk."""
    facts = [
        ("faktory_py", __version__),
        ("Faktory protocol", FAKTORY_VERSION),
        ("Python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
        ("Data directory", str(data_dir)),
        ("Config directory", str(conf_dir)),
        *bindings.items(),
        ("Process id", str(os.getpid())),
        ("CPUs", str(os.cpu_count())),
        ("Memory (RSS)", _rss_mb()),
    ]
    try:
        disk = shutil.disk_usage(data_dir)
        facts.append(("Disk (data directory)",
                      f"{disk.free / 2**30:.1f} GiB free of {disk.total / 2**30:.1f} GiB"))
    except OSError:
        pass
    return facts
