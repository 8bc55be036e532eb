"""The web UI's data and actions without HTTP: page data (`faktory_py.web.views`) and the
semantics methods its actions call (`Manager.enqueue_entries` & co.), which must be journaled
like every other change, and paging that never walks a whole set."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faktory_py.config import BatchesConfig
from faktory_py.features.batches.feature import Batches
from faktory_py.errors import ClientError
from faktory_py.core.lifecycle import DEAD_TTL, Manager
from faktory_py.store import job_queue
from faktory_py.store.memory import MemoryStore
from faktory_py.util.timefmt import format_time, utc_day
from faktory_py.web import pages, urls, views
from faktory_py.web.state import WebState
from faktory_py.core.workers import Worker, WorkerRegistry
from faktory_py.core.registry import Feature, Registry, WebPage
from faktory_py.server.app import enterprise_features
from starlette.responses import Response
from helpers import jobs
from helpers.model_replay import holdings, replay, roundtrip
from helpers.scan_guard import CountingDict, guard, private_set

NOW = 1_780_000_000.0


class Journaled:
    """A manager whose store keeps every committed record, as the journal would get it."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.store = MemoryStore(sink=self._sink)
        self.manager = Manager(self.store)

    def _sink(self, ops: list[dict[str, Any]]) -> int:
        self.records.append(roundtrip(ops))
        return len(self.records)

    def replayed(self) -> MemoryStore:
        return replay(MemoryStore(), self.records)


def job(jid: str, queue: str = "default", **fields: Any) -> dict[str, Any]:
    return jobs.job(jid, args=[jid], queue=queue, **fields)


@pytest.fixture
def j() -> Journaled:
    return Journaled()


def retrying(j: Journaled, jids: list[str], at: float = NOW + 3600) -> None:
    """Entries in retries at distinct times, without going through FAIL."""
    for i, jid in enumerate(jids):
        j.store.commit([{"op": "zadd", "set": "retries", "score": at + i, "job": job(jid)}])


# --- semantics (manager) ----------------------------------------------------------------

def test_enqueue_entries_moves_the_named_entries_with_a_fresh_enqueued_at(j: Journaled) -> None:
    retrying(j, ["a" * 8, "b" * 8, "c" * 8])
    j.manager.enqueue_entries("retries", ["b" * 8, "gone-jid"], NOW)
    assert [e[1] for e in j.store.set_entries("retries")] == ["a" * 8, "c" * 8]
    (queued,) = j.store.queued("default")
    assert queued["jid"] == "b" * 8 and queued["enqueued_at"] == format_time(NOW)
    assert holdings(j.replayed()) == holdings(j.store)


def test_enqueue_entries_none_means_all(j: Journaled) -> None:
    retrying(j, ["a" * 8, "b" * 8])
    j.manager.enqueue_entries("retries", None, NOW)
    assert j.store.set_size("retries") == 0
    assert [x["jid"] for x in j.store.queued("default")] == ["a" * 8, "b" * 8]
    assert holdings(j.replayed()) == holdings(j.store)


def test_kill_entries_moves_to_dead_with_its_ttl(j: Journaled) -> None:
    retrying(j, ["a" * 8, "b" * 8])
    j.manager.kill_entries("retries", ["a" * 8], NOW)
    assert j.store.set_entry("dead", "a" * 8) == (NOW + DEAD_TTL, job("a" * 8))
    assert j.store.set_entry("retries", "a" * 8) is None
    j.manager.kill_entries("retries", None, NOW + 1)  # "kill all" kills (Faktory's enqueues: W2)
    assert j.store.set_size("retries") == 0 and j.store.set_size("dead") == 2
    assert j.store.queue_names() == []
    with pytest.raises(ClientError):
        j.manager.kill_entries("dead", None, NOW)
    assert holdings(j.replayed()) == holdings(j.store)


def test_delete_entries_selected_and_all(j: Journaled) -> None:
    retrying(j, ["a" * 8, "b" * 8, "c" * 8])
    j.manager.delete_entries("retries", ["c" * 8], NOW)
    assert [e[1] for e in j.store.set_entries("retries")] == ["a" * 8, "b" * 8]
    j.manager.delete_entries("retries", None, NOW)
    assert j.store.set_size("retries") == 0
    assert holdings(j.replayed()) == holdings(j.store)


def test_delete_queued_removes_jobs_anywhere_in_the_queue(j: Journaled) -> None:
    for jid in ("a" * 8, "b" * 8, "c" * 8, "d" * 8):
        j.manager.push(job(jid), NOW)
    j.manager.delete_queued("default", ["c" * 8, "a" * 8, "not-there"], NOW)
    assert [x["jid"] for x in j.store.queued("default")] == ["b" * 8, "d" * 8]
    j.manager.delete_queued("no-such-queue", ["b" * 8], NOW)
    assert holdings(j.replayed()) == holdings(j.store)


# --- paging -----------------------------------------------------------------------------

def test_a_page_of_100k_retries_touches_only_its_rows() -> None:
    store = MemoryStore()
    big = private_set(store, "retries")
    for i in range(100_000):
        big.add(f"jid{i:07d}", NOW + i, job(f"jid{i:07d}"))
    guard(big)
    CountingDict.lookups = 0
    page = views.set_page(store, "retries", 2001)
    assert CountingDict.lookups == views.PAGE_SIZE
    assert [row.job["jid"] for row in page.rows][:2] == ["jid0050000", "jid0050001"]
    assert (page.total, page.pages) == (100_000, 4000)
    assert views.set_page(store, "retries", 4001).rows == []
    # a detail page and an action's key lookup are one lookup each
    CountingDict.lookups = 0
    key = page.rows[3].key
    assert views.set_entry(store, "retries", key).job["jid"] == "jid0050003"
    assert views.resolve_keys(store, "retries", [key]) == ["jid0050003"]
    assert CountingDict.lookups == 0  # by `get`, not by item access


def test_queue_page_reads_one_page() -> None:
    store = MemoryStore()
    store.commit([{"op": "enqueue", "queue": "q", "raws": [job_queue.encode(job(f"q{i:07d}")) for i in range(1000)]}])
    page = views.queue_page(store, "q", 3)
    assert [row["jid"] for row in page.rows] == [f"q{i:07d}" for i in range(50, 75)]
    assert page.pages == 40


def test_page_numbers() -> None:
    assert [views.page_number(raw) for raw in (None, "", "3", "-2", "x", "0")] == [1, 1, 3, 1, 1, 1]
    assert [views.history_days(raw) for raw in (None, "7", "180", "8", "x")] == [30, 7, 180, 30, 30]


# --- keys -------------------------------------------------------------------------------

def test_entry_keys_pin_the_score() -> None:
    store = MemoryStore()
    store.commit([{"op": "zadd", "set": "dead", "score": NOW + 0.25, "job": job("a" * 8)}])
    key = views.entry_key(NOW + 0.25, "a" * 8)
    assert key == f"{format_time(NOW + 0.25)}|{'a' * 8}"
    assert views.resolve_keys(store, "dead", [key, "junk", f"{format_time(NOW)}|{'a' * 8}", "|"]) == ["a" * 8]
    # failed again meanwhile: the old key is stale
    store.commit([{"op": "zadd", "set": "dead", "score": NOW + 99, "job": job("a" * 8)}])
    assert views.resolve_keys(store, "dead", [key]) == []
    assert views.set_entry(store, "dead", key) is None


# --- other pages ------------------------------------------------------------------------

def test_history_fills_missing_days_oldest_first() -> None:
    day = 86400
    counts = {"2026-05-28": [5, 1]}
    series = views.history(counts, 7, NOW)  # NOW is 2026-05-28
    assert len(series) == 7
    assert series[-1] == ("2026-05-28", 5, 1)
    assert series[0] == (utc_day(NOW - 6 * day), 0, 0)


def test_queue_rows_sorted_with_paused_and_latency() -> None:
    store = MemoryStore()
    store.commit([{"op": "declare_queue", "queue": "b"}, {"op": "declare_queue", "queue": "a"},
                  {"op": "enqueue", "queue": "b", "raws": [job_queue.encode(job(f"b{i}", "b")) for i in range(2)]},
                  {"op": "pause", "queues": ["b"]}])
    rows = views.queue_rows(store.statistics(), {"b": 1.5})
    assert rows == [views.QueueRow("a", 0, False, 0.0), views.QueueRow("b", 2, True, 1.5)]


def test_busy_counts_jobs_per_process() -> None:
    store = MemoryStore()
    manager = Manager(store)
    for jid in ("a" * 8, "b" * 8, "c" * 8):
        manager.push(job(jid), NOW)
    manager.fetch(["default"], "w1", NOW)
    manager.fetch(["default"], "w1", NOW)
    manager.fetch(["default"], "w2", NOW)
    workers = {wid: Worker(wid, "host", 1, (), NOW, NOW) for wid in ("w2", "w1")}
    busy = views.busy(workers, store, 1)
    assert [w.wid for w in busy.processes] == ["w1", "w2"]  # by host, pid, wid
    assert dict(busy.held) == {"w1": 2, "w2": 1}
    assert sorted(row[2]["jid"] for row in busy.jobs.rows) == ["a" * 8, "b" * 8, "c" * 8]


def test_batches_newest_first_with_callback_states() -> None:
    store = MemoryStore()
    batches = Batches(store, BatchesConfig.policy, BatchesConfig.uncommitted_ttl, BatchesConfig.retention)
    bids = []
    for i in range(30):
        bid, ops = batches.new({"description": f"b{i}", "success": {"jobtype": "Done", "args": []}}, "", NOW + i)
        store.commit(ops)
        bids.append(bid)
    first = views.batch_page(batches, 1)
    assert [b.bid for b in first.rows] == bids[::-1][:25]
    assert [b.bid for b in views.batch_page(batches, 2).rows] == bids[::-1][25:]
    newest = first.rows[0]
    assert views.callback_state(newest, "success") == "pending"
    assert views.callback_state(newest, "complete") == "none"
    store.commit(batches.commit(newest.bid, NOW + 100))  # empty batch: success fires at COMMIT
    assert views.callback_state(batches.get(newest.bid), "success") == "enqueued"


class FixedClock:
    def now(self) -> float:
        return NOW


def _site(registry: Registry) -> pages.Site:
    async def durable(position: int) -> None:
        pass

    manager = Manager(MemoryStore(), features=registry)
    state = WebState(manager, WorkerRegistry(60), registry, FixedClock(), info=lambda now: {},
                     refusal=lambda: None, durable=durable)
    return pages.Site(state, render=lambda request, template, **context: Response())


def test_a_features_pages_are_routed_only_while_it_is_registered() -> None:
    """The menu entry and the routes both come from the feature's record (`web.pages`); a page
    a record names but does not list (Throttles without throttles, Cron without entries) is
    routed, not in the menu."""
    registry = enterprise_features(MemoryStore())
    site = _site(registry)
    assert [page.name for page in site.state.feature_pages] == ["held", "batches"]
    assert [route.path for route in pages.feature_routes(site)] == [  # type: ignore[attr-defined]
        "/held", "/batches", "/batches/{bid}", "/throttles", "/cron", "/cron/{id}"]
    without = _site(Registry(feature for feature in registry
                             if feature.name not in ("workflows", "batches", "throttles", "cron")))
    assert without.state.feature_pages == [] and pages.feature_routes(without) == []
    unknown = _site(Registry([Feature("mystery", object(), pages=(WebPage("mystery", "Mystery"),))]))
    with pytest.raises(ModuleNotFoundError):
        pages.feature_routes(unknown)


def test_templates_and_assets_ship_in_the_wheel() -> None:
    """pyproject.toml's package data covers every file the UI serves or renders."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(views.__file__).resolve().parent
    tool = tomllib.loads((root.parent.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "faktory_py.web" in tool["packages"]
    globs = tool["package-data"]["faktory_py.web"]
    files = [str(p.relative_to(root)) for d in ("templates", "static") for p in (root / d).rglob("*") if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files)


#: any text a jid or key can be that UTF-8 can carry (a page cannot show a lone surrogate either)
NAMES = st.text(st.characters(exclude_categories=["Cs"]))


@given(NAMES, NAMES)
def test_names_survive_the_query_string(name: str, key: str) -> None:
    link = urls.url("/prefix", "/queues", name=name, page=None, key=key)
    parts = urlsplit("http://h" + link)
    assert parts.path == "/prefix/queues" and not parts.fragment
    assert parse_qsl(parts.query, keep_blank_values=True) == [("name", name), ("key", key)]


@given(NAMES)
def test_form_values_survive_the_browser(key: str) -> None:
    value = urls.form_value(key)
    assert not set(value) & set("\r\n\0")  # what a browser rewrites in a form value
    assert urls.from_form(value) == key
    assert urls.form_value("2026-01-01T00:00:00.123456Z|jid-1") == "2026-01-01T00:00:00.123456Z|jid-1"
