"""Partitions and named limits (protocol/spec.md §11.8–§11.9): configuration, partition keys,
FETCH without head-of-line blocking (A-T7 in process and over TCP on a MockClock server, A-T8
across queues), what a FETCH touches with 10 000 jobs of a full partition ahead of an
eligible one, restart and reload, INFO `limits` and THROTTLE STATUS partitions."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from helpers import jobs
from helpers.inprocess import inprocess_config, running_server
from helpers.model_replay import enterprise_manager, replay, roundtrip, snapshot_records
from helpers.scan_guard import private_queue, refuse_walks
from faktory_py import config
from faktory_py.config import NamedLimit, Throttle, ThrottlesConfig
from faktory_py.core.lifecycle import Manager
from faktory_py.errors import ConfigError
from faktory_py.features.throttles.feature import Throttles
from faktory_py.features.throttles.rules import Rules, throttle
from faktory_py.util.limits import Limit
from faktory_py.server.app import Server
from faktory_py.server.reload import throttle_rules
from faktory_py.store import job_queue
from faktory_py.store.memory import MemoryStore
from test_throttles_tcp import ack, jid, named, status, workers

NOW = 1_700_000_000.0
BY_TENANT = ThrottlesConfig((Throttle("t", timeout=60, concurrency=1, partition=("custom.tenant_id",)),))
PDF = ThrottlesConfig(limits=(NamedLimit("pdf", jobtypes=("RenderPDF",), queues=("a", "b"), concurrency=1),))


def job(name: str, queue: str, jobtype: str = "T", **fields: Any) -> dict[str, Any]:
    return jobs.job(jid(name), jobtype=jobtype, queue=queue, **fields)


def tenant_job(name: str, tenant: str) -> dict[str, Any]:
    return job(name, "t", custom={"tenant_id": tenant})


def build(throttles: ThrottlesConfig, sink: Any = None) -> tuple[MemoryStore, Manager, Throttles]:
    return enterprise_manager(Throttles, sink, throttles=throttles)


def fetched(manager: Manager, queues: list[str], wid: str = "w", now: float = NOW) -> str | None:
    got, _ = manager.fetch(queues, wid, now)
    return None if got is None else named(got)


# --- configuration ------------------------------------------------------------------------

def load(tmp_path: Path, text: str) -> ThrottlesConfig:
    (tmp_path / "conf.d").mkdir(exist_ok=True)
    (tmp_path / "conf.d" / "limits.toml").write_text(text)
    return config.load(["-c", str(tmp_path), "-d", str(tmp_path / "data")], {}).throttles


def test_partitions_and_named_limits_load(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
[throttles.stripe]
concurrency = 10
timeout = 300
partition = ["custom.tenant_id"]

[faktory_py.throttles]
slot_release = "job_end"

[faktory_py.limits.pdf]
jobtypes = ["RenderPDF", "MergePDF"]
queues = ["default", "reports"]
concurrency = 3
rate = { limit = 600, period = 3600 }
partition = ["jobtype", "args.0.account_id"]
""")
    assert loaded.entries == (Throttle("stripe", timeout=300, concurrency=10, slot_release="job_end",
                                       partition=("custom.tenant_id",)),)
    assert loaded.limits == (NamedLimit("pdf", jobtypes=("RenderPDF", "MergePDF"), queues=("default", "reports"),
                                        concurrency=3, rate=(600, 3600.0), slot_release="job_end",
                                        partition=("jobtype", "args.0.account_id")),)


@pytest.mark.parametrize(("entry", "reason"), [
    ("concurrency = 1", "needs jobtypes or queues"),
    ('jobtypes = ["X"]', "needs concurrency, worker or rate"),
    ('jobtypes = "X"\nconcurrency = 1', "jobtypes must be a non-empty list of names"),
    ('queues = []\nconcurrency = 1', "queues must be a non-empty list of names"),
    ('queues = ["no way"]\nconcurrency = 1', "queues: invalid queue name"),
    ('jobtypes = ["X"]\nconcurrency = 1\ncolour = "red"', 'unknown key "colour"'),
    ('jobtypes = ["X"]\nconcurrency = 1\ntimeout = 0', "timeout must be an integer >= 1"),
    ('jobtypes = ["X"]\nconcurrency = 1\npartition = ["tenant"]',
     'partition must be a list of "jobtype", "queue", "custom.<path>" or "args.<path>", not \'tenant\''),
])
def test_every_bad_named_limit_names_itself_and_its_reason(tmp_path: Path, entry: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"[faktory_py.limits.pdf]\n{entry}\n")
    assert str(caught.value) == f"config: faktory_py.limits.pdf: {reason}"


def test_a_named_limit_may_not_take_a_throttles_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[throttles]\npdf = { concurrency = 1, timeout = 60 }\n'
                       '[faktory_py.limits.pdf]\njobtypes = ["X"]\nconcurrency = 1\n')
    assert str(caught.value) == "config: faktory_py.limits.pdf: the name is taken by [throttles.pdf]"


def test_partition_keys_are_canonical_json_and_null_where_the_path_leads_nowhere() -> None:
    rule = throttle("q", Limit(timeout=60, concurrency=1, partition=(
        "jobtype", "queue", "args.0.account_id", "custom.tenant.id", "args.5")))
    job_ = {"jid": "j", "jobtype": "Render", "queue": "q", "args": [{"account_id": {"b": 1, "a": [2, "x"]}}],
            "custom": {"tenant": {"id": 7}}}
    assert rule.partition_of(job_) == ('"Render"', '"q"', '{"a":[2,"x"],"b":1}', "7", "null")
    assert rule.partition_of({"jid": "j", "jobtype": "R", "queue": "q", "args": "no list"})[2:] == (
        "null", "null", "null")


# --- FETCH skips a full partition ---------------------------------------------------------

def test_a_full_partition_is_skipped_and_each_keeps_its_order() -> None:
    """A-T7 in process: concurrency 1 per tenant, queued t1,t1,t1,t2,t3: three FETCHes get
    t1, t2, t3, a fourth nothing; the ACK of t1's job lets the next t1 job out, in order."""
    _store, manager, throttles = build(BY_TENANT)
    for name, tenant in (("a1", "t1"), ("b1", "t1"), ("c1", "t1"), ("a2", "t2"), ("a3", "t3")):
        manager.push(tenant_job(name, tenant), NOW)
    assert [fetched(manager, ["t"]) for _ in range(4)] == ["a1", "a2", "a3", None]
    assert manager.available("t", NOW) == 0
    manager.ack(jid("a1"), NOW + 1)
    assert manager.available("t", NOW + 1) == 1
    assert fetched(manager, ["t"], now=NOW + 1) == "b1"
    manager.push(tenant_job("b2", "t2"), NOW + 2)
    assert fetched(manager, ["t", "other"], now=NOW + 2) is None
    state = throttles.status(["t"], NOW + 2)["t"]
    assert (state["in_use"], state["waiting"], state["partitions"]) == (3, 2, 3)
    assert state["by_partition"][:2] == [
        {"key": ["t1"], "in_use": 1, "waiting": 1, "grants_in_window": None, "next_grant_at": None},
        {"key": ["t2"], "in_use": 1, "waiting": 1, "grants_in_window": None, "next_grant_at": None}]


def test_a_per_jobtype_limit_spans_queues_and_the_other_jobs_flow() -> None:
    """A-T8: one RenderPDF in flight across queues a and b; the other jobtypes of a and b,
    those queued behind a held-back RenderPDF too, flow."""
    _store, manager, throttles = build(PDF)
    for name, queue, jobtype in (("p1", "a", "RenderPDF"), ("p2", "a", "RenderPDF"), ("x1", "a", "Mail"),
                                 ("p3", "b", "RenderPDF"), ("x2", "b", "Mail"), ("x3", "c", "RenderPDF")):
        manager.push(job(name, queue, jobtype), NOW)
    assert [fetched(manager, ["a", "b", "c"]) for _ in range(5)] == ["p1", "x1", "x2", "x3", None]
    manager.ack(jid("p1"), NOW + 1)
    assert fetched(manager, ["b", "a"], now=NOW + 1) == "p3"  # strict queue order: b's first
    assert fetched(manager, ["b", "a"], now=NOW + 1) is None
    info = throttles.info_fields()
    assert info["limits"] == {"pdf": {"jobtypes": ["RenderPDF"], "queues": ["a", "b"], "concurrency": 1,
                                      "worker": None, "timeout": None, "in_use": 1, "waiting": 1, "rate": None,
                                      "partitions": 1, "slot_release": "timeout", "overdue": 0}}


def test_a_job_subject_to_a_throttle_and_a_limit_needs_room_in_both() -> None:
    limits = ThrottlesConfig((Throttle("a", timeout=60, concurrency=2),),
                             limits=(NamedLimit("pdf", jobtypes=("RenderPDF",), worker=1),))
    _store, manager, throttles = build(limits)
    for i in range(3):
        manager.push(job(f"p{i}", "a", "RenderPDF"), NOW)
    manager.push(job("x", "a"), NOW)
    assert fetched(manager, ["a"], "A") == "p0"
    assert fetched(manager, ["a"], "A") == "x"  # A holds its one RenderPDF: the throttle has room
    assert fetched(manager, ["a"], "B") is None  # the throttle is full now
    manager.ack(jid("x"), NOW + 1)
    assert fetched(manager, ["a"], "A", NOW + 1) is None
    assert fetched(manager, ["a"], "B", NOW + 1) == "p1"
    assert throttles.lost("B") == [jid("p1")]


def test_a_rate_limit_applies_per_partition() -> None:
    rated = ThrottlesConfig((Throttle("t", timeout=60, rate=(1, 10.0), partition=("custom.tenant_id",)),))
    _store, manager, throttles = build(rated)
    for name, tenant in (("a1", "t1"), ("b1", "t1"), ("a2", "t2")):
        manager.push(tenant_job(name, tenant), NOW)
    assert [fetched(manager, ["t"]) for _ in range(3)] == ["a1", "a2", None]
    assert throttles.next_due() == NOW + 10
    assert fetched(manager, ["t"], now=NOW + 10) == "b1"


def test_fetch_past_a_full_partition_touches_only_the_heads_of_the_classes(monkeypatch: Any) -> None:
    """10 000 jobs of a full partition ahead of one eligible job: FETCH iterates no queue
    and decodes only the job it hands out (and the head, to check it is not the one)."""
    store, manager, _throttles = build(BY_TENANT)
    manager.push(tenant_job("held", "t1"), NOW)
    assert fetched(manager, ["t"]) == "held"
    for i in range(10_000):
        manager.push(tenant_job(f"q{i}", "t1"), NOW)
    manager.push(tenant_job("free", "t2"), NOW)

    refuse_walks(private_queue(store, "t"))
    decoded = []
    real_decode = job_queue.decode
    monkeypatch.setattr(job_queue, "decode", lambda raw: decoded.append(raw) or real_decode(raw))
    assert fetched(manager, ["t"]) == "free"
    assert len(decoded) <= 3
    assert fetched(manager, ["t"]) is None


def test_full_classes_leave_fetchs_way_until_they_have_room(monkeypatch: Any) -> None:
    """O(log C + k): 1 000 tenants at their limit, each with a job queued ahead of an eligible
    one. The first FETCH parks their classes once; the next ones look at none of them; the
    ACK of one tenant's job brings back its class alone."""
    _store, manager, throttles = build(BY_TENANT)
    for i in range(1000):
        manager.push(tenant_job(f"run{i}", f"t{i}"), NOW)
        assert fetched(manager, ["t"]) == f"run{i}"
    for i in range(1000):
        manager.push(tenant_job(f"next{i}", f"t{i}"), NOW)
    manager.push(tenant_job("free1", "new1"), NOW)
    looked_at = []
    full = type(throttles.occupancy).full
    monkeypatch.setattr(type(throttles.occupancy), "full", lambda self, key: looked_at.append(key) or full(self, key))
    assert fetched(manager, ["t"]) == "free1"
    assert len(looked_at) == 1001
    looked_at.clear()
    manager.push(tenant_job("free2", "new2"), NOW)
    assert fetched(manager, ["t"]) == "free2"
    assert fetched(manager, ["t"]) is None
    assert len(looked_at) == 1
    looked_at.clear()
    manager.ack(jid("run500"), NOW + 1)
    assert fetched(manager, ["t"], now=NOW + 1) == "next500"
    assert len(looked_at) == 1


# --- derived state: restart and reload ----------------------------------------------------

def test_a_restart_rebuilds_the_classes_from_the_journal_and_from_a_snapshot() -> None:
    journal: list[list[dict[str, Any]]] = []

    def sink(ops: list[dict[str, Any]]) -> int:
        journal.append(roundtrip(ops))
        return len(journal)

    store, manager, _throttles = build(BY_TENANT, sink)
    for name, tenant in (("a1", "t1"), ("b1", "t1"), ("a2", "t2"), ("b2", "t2"), ("a3", "t3")):
        manager.push(tenant_job(name, tenant), NOW)
    assert [fetched(manager, ["t"]) for _ in range(2)] == ["a1", "a2"]
    for records in (list(journal), snapshot_records(store)):
        restored, again, _ = build(BY_TENANT)
        replay(restored, records)
        assert [fetched(again, ["t"]) for _ in range(2)] == ["a3", None]
        again.ack(jid("a2"), NOW + 1)
        assert fetched(again, ["t"], now=NOW + 1) == "b2"


def test_a_reload_that_partitions_a_throttle_classifies_the_queued_jobs_again() -> None:
    store, manager, throttles = build(ThrottlesConfig((Throttle("t", timeout=60, concurrency=1),)))
    for name, tenant in (("a1", "t1"), ("b1", "t1"), ("a2", "t2")):
        manager.push(tenant_job(name, tenant), NOW)
    assert [fetched(manager, ["t"]) for _ in range(2)] == ["a1", None]
    manager.features.replace(throttles.reconfigure(throttle_rules(BY_TENANT), (), NOW + 1))
    assert fetched(manager, ["t"], now=NOW + 1) == "a2"
    manager.features.replace(throttles.reconfigure(throttle_rules(ThrottlesConfig()), (), NOW + 2))
    assert fetched(manager, ["t"], now=NOW + 2) == "b1"  # no limit: the head path again
    assert manager.features.select == ()
    assert isinstance(throttles.rules, Rules) and not throttles.rules


def test_a_reload_that_partitions_a_rate_limit_counts_the_live_grants_per_partition() -> None:
    """The grants of a rate limit whose partitions change are counted again from the live
    reservations, per new partition (the old windows are of other partitions); an ended
    reservation's grant is then forgotten, as for a rate the reload adds."""
    rated = ThrottlesConfig((Throttle("t", timeout=60, rate=(1, 10.0)),))
    _store, manager, throttles = build(rated)
    for name, tenant in (("a1", "t1"), ("a2", "t2"), ("b1", "t1"), ("b2", "t2")):
        manager.push(tenant_job(name, tenant), NOW)
    assert [fetched(manager, ["t"]) for _ in range(2)] == ["a1", None]
    by_tenant = ThrottlesConfig((Throttle("t", timeout=60, rate=(1, 10.0), partition=("custom.tenant_id",)),))
    manager.features.replace(throttles.reconfigure(throttle_rules(by_tenant), (), NOW + 1))
    assert throttles.rate.in_window(("t", ('"t1"',)), NOW + 1) == 1
    assert throttles.rate.in_window(("t", ()), NOW + 1) == 0
    assert [fetched(manager, ["t"], now=NOW + 1) for _ in range(2)] == ["a2", None]


# --- over TCP -------------------------------------------------------------------------------

def limited_server(tmp_path: Path, throttles: ThrottlesConfig) -> AbstractAsyncContextManager[Server]:
    return running_server(inprocess_config(tmp_path, throttles=throttles))


async def test_the_ack_of_a_partitions_job_hands_its_next_job_to_a_waiting_fetch(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T7 over TCP: t1,t1,t1,t2,t3 queued, three FETCHes get t1, t2, t3 at once; a fourth
    waits; the ACK of t1's job hands it the next t1 job at once, not at its 2 s timeout."""
    async with limited_server(tmp_path, BY_TENANT) as server:
        producer, *fetchers = await workers(server, 5)
        for name, tenant in (("a1", "t1"), ("b1", "t1"), ("c1", "t1"), ("a2", "t2"), ("a3", "t3")):
            assert await producer.push(tenant_job(name, tenant)) == b"OK"
        start = trio.current_time()
        assert [named(await w.fetch("t")) for w in fetchers[:3]] == ["a1", "a2", "a3"]
        assert trio.current_time() - start < 0.01
        waiting = fetchers[3]
        await waiting.send("FETCH t")
        await producer.wait_fetches_waiting(1)
        state = (await status(producer, "t"))["t"]
        assert (state["in_use"], state["waiting"], state["partitions"]) == (3, 2, 3)
        acked_at = trio.current_time()
        assert await ack(fetchers[1], "a2") == b"OK"  # t2's slot: nothing of t2 is queued
        assert await ack(fetchers[0], "a1") == b"OK"
        assert named(json.loads(await waiting.reply())) == "b1"
        assert trio.current_time() - acked_at < 0.01
        info = (await producer.info())["faktory"]["throttles"]["t"]
        assert (info["in_use"], info["waiting"]) == (2, 1)
        for client in [producer, *fetchers]:
            await client.aclose()


async def test_a_per_jobtype_limit_over_tcp_wakes_a_fetch_of_another_queue(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A-T8 over TCP: the RenderPDF of queue a holds the limit; a FETCH b gets b's Mail job
    queued behind b's RenderPDF, then waits; the ACK of a's RenderPDF hands it b's."""
    async with limited_server(tmp_path, PDF) as server:
        producer, first, second = await workers(server, 3)
        for name, queue, jobtype in (("p1", "a", "RenderPDF"), ("p2", "b", "RenderPDF"), ("x", "b", "Mail")):
            assert await producer.push(job(name, queue, jobtype)) == b"OK"
        assert named(await first.fetch("a")) == "p1"
        assert named(await second.fetch("b")) == "x"
        await second.send("FETCH b")
        await producer.wait_fetches_waiting(1)
        assert (await status(producer, "pdf"))["pdf"]["waiting"] == 1
        assert await ack(first, "p1") == b"OK"
        assert named(json.loads(await second.reply())) == "p2"
        with pytest.raises(Exception, match="no such throttle nope"):
            await status(producer, "nope")
        for client in (producer, first, second):
            await client.aclose()
