"""`/metrics` in-process (web/metrics.py, protocol/spec.md §13): what a scrape reports after
real commands over TCP, the UI's auth and the scrapers' binding without it, bounded queue
labels, `promtool check metrics`, and a scrape with 100k queued jobs that reads one job."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio

from faktory_py import config as configuration
from faktory_py.config import (
    Config, ConfigError, MetricsConfig, NamedLimit, StatsdConfig, Throttle, ThrottlesConfig, Timers,
)
from faktory_py.server.app import serve
from faktory_py.store.job_queue import encode
from helpers import ROOT
from helpers.async_client import AsyncClient
from helpers.metrics import Scrape, promtool, promtool_check, scrape
from helpers.scan_guard import CountingDict, NoScanQueue, guard, guard_queue, private_queue, private_set

JOB = {"jobtype": "T", "args": [], "queue": "default"}


def config(tmp_path: Path, **overrides: Any) -> Config:
    (tmp_path / "conf").mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = dict(binding="127.0.0.1:0", web_binding="127.0.0.1:0", data_dir=tmp_path / "data",
                                    conf_dir=tmp_path / "conf", timers=Timers(fetch_timeout=0.2))
    return Config(**{**settings, **overrides})


async def get(url: str, password: str | None = None) -> Scrape:
    return await trio.to_thread.run_sync(scrape, url, password)


async def test_a_scrape_reports_jobs_queues_sets_workers_and_command_times(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    worker = await AsyncClient.connect(server.port, wid="w1")
    for i in range(4):
        assert await worker.push({**JOB, "jid": f"job{i:05d}"}) == b"OK"
    assert await worker.push({**JOB, "jid": "low00001", "queue": "low"}) == b"OK"
    first, second, low = await worker.fetch("default"), await worker.fetch("default"), await worker.fetch("low")
    for job in (first, low):
        assert await worker.json_command("ACK", {"jid": job["jid"]}) == b"OK"
    assert await worker.json_command("FAIL", {"jid": second["jid"], "errtype": "E", "message": "m"}) == b"OK"
    assert await worker.fetch("empty") is None  # waits out the 0.2 s FETCH timeout
    with pytest.raises(Exception, match="unknown command"):
        await worker.command("BOGUS")

    reply = await get(server.web_urls[0] + "/metrics")
    assert reply.status == 200
    assert reply.content_type.startswith("text/plain; version=0.0.4")
    value = reply.value
    assert value("faktory_jobs_processed_total") == 3
    assert value("faktory_jobs_failed_total") == 1
    assert value("faktory_queue_size", queue="default") == 2
    assert value("faktory_queue_size", queue="low") == 0
    assert 0 < value("faktory_queue_latency_seconds", queue="default") < 60
    assert value("faktory_queue_latency_seconds", queue="low") == 0
    assert value("faktory_queues") == 2
    assert value("faktory_set_size", set="retries") == 1
    assert value("faktory_set_size", set="working") == 0
    assert value("faktory_worker_processes", state="running") == 1
    assert value("faktory_connections") == 1
    assert value("faktory_journal_writable") == 1
    # HELLO is the handshake's; every other command is timed under its verb, or `other`
    assert value("faktory_command_duration_seconds_count", verb="PUSH") == 5
    assert value("faktory_command_duration_seconds_count", verb="FETCH") == 4
    assert value("faktory_command_duration_seconds_count", verb="ACK") == 2
    assert value("faktory_command_duration_seconds_count", verb="FAIL") == 1
    assert value("faktory_command_duration_seconds_count", verb="other") == 1
    assert value("faktory_command_duration_seconds_bucket", verb="PUSH", le="+Inf") == 5
    assert ("faktory_command_duration_seconds_count", frozenset({("verb", "BOGUS")})) not in reply.samples()
    # only the FETCH that found no job waited, and for at least its timeout
    assert value("faktory_fetch_wait_seconds_count") == 1
    assert value("faktory_fetch_wait_seconds_bucket", le="0.1") == 0
    assert value("faktory_fetch_wait_seconds_sum") >= 0.2
    assert value("faktory_journal_write_seconds_count") >= 1
    await worker.aclose()


async def test_with_timings_off_commands_are_not_timed_and_the_rest_is_served(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path, metrics=MetricsConfig(timings=False), fsync="always"))
    client = await AsyncClient.connect(server.port)
    assert await client.push({**JOB, "jid": "untimed1"}) == b"OK"
    assert await client.fetch("empty") is None  # a FETCH that waited
    reply = await get(server.web_urls[0] + "/metrics")
    names = {name for name, _labels in reply.samples()}
    assert not any(name.startswith(("faktory_command_duration", "faktory_fetch_wait")) for name in names)
    assert reply.value("faktory_jobs_pushed_total") == 1
    assert reply.value("faktory_queue_size", queue="default") == 1
    assert reply.value("faktory_journal_fsync_seconds_count") >= 1  # the journal's timings stay
    await client.aclose()


async def test_pushed_counts_committed_pushes_and_not_the_journal_replay(tmp_path: Path, running) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, config(tmp_path))
        client = await AsyncClient.connect(server.port)
        for i in range(3):
            assert await client.push({**JOB, "jid": f"push{i:04d}"}) == b"OK"
        await client.json_command("PUSHB", [{**JOB, "jid": "bulk0001"}, {"jobtype": ""}])
        with pytest.raises(Exception, match="jobtype"):
            await client.push({**JOB, "jid": "bad00001", "jobtype": ""})
        assert (await get(server.web_urls[0] + "/metrics")).value("faktory_jobs_pushed_total") == 4
        await client.aclose()
        server.shutdown()
    restarted = await running(config(tmp_path))  # the same data directory: its journal is replayed
    reply = await get(restarted.web_urls[0] + "/metrics")
    assert reply.value("faktory_queue_size", queue="default") == 4
    assert reply.value("faktory_jobs_pushed_total") == 0


async def test_journal_fsyncs_are_timed(tmp_path: Path, running) -> None:
    """Under `fsync = always` every acknowledged PUSH waited for an fsync, which was timed."""
    server = await running(config(tmp_path, fsync="always"))
    client = await AsyncClient.connect(server.port)
    assert await client.push({**JOB, "jid": "synced01"}) == b"OK"
    reply = await get(server.web_urls[0] + "/metrics")
    assert reply.value("faktory_journal_fsync_seconds_count") >= 1
    assert reply.value("faktory_journal_write_seconds_count") >= 1
    await client.aclose()


async def test_metrics_asks_for_the_ui_password_and_the_scrapers_binding_does_not(tmp_path: Path,
                                                                                   running) -> None:
    server = await running(config(tmp_path, password="s3cret", metrics=MetricsConfig(binding="127.0.0.1:0")))
    ui = server.web_urls[0] + "/metrics"
    assert (await get(ui)).status == 401
    assert (await get(ui, "wrong")).status == 401
    assert (await get(ui, "s3cret")).status == 200
    [scraper] = server.metrics_urls
    reply = await get(scraper + "/metrics")
    assert reply.status == 200 and reply.value("faktory_jobs_processed_total") == 0
    assert (await get(scraper + "/")).status == 404  # /metrics alone: nothing of the UI
    assert (await get(scraper + "/stats")).status == 404


async def test_the_scrapers_binding_serves_without_the_web_ui(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path, web_binding="0", metrics=MetricsConfig(binding="127.0.0.1:0")))
    assert server.web_urls == []
    assert (await get(server.metrics_urls[0] + "/metrics")).status == 200


async def test_queues_past_max_queues_are_summed_under_other(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path, metrics=MetricsConfig(max_queues=2)))
    client = await AsyncClient.connect(server.port)
    for i, queue in enumerate(("q1", "q2", "q3", "q4", "q4")):
        assert await client.push({**JOB, "jid": f"jid{i:05d}", "queue": queue}) == b"OK"
    assert await client.command("QUEUE PAUSE q3") == b"OK"
    reply = await get(server.web_urls[0] + "/metrics")
    sizes = {dict(labels)["queue"]: value for (name, labels), value in reply.samples().items()
             if name == "faktory_queue_size"}
    assert sizes == {"q1": 1, "q2": 1, "(other)": 3}
    assert reply.value("faktory_queue_paused", queue="(other)") == 1
    assert reply.value("faktory_queues") == 4
    await client.aclose()


async def test_promtool_check_metrics_passes_on_a_scrape(tmp_path: Path, running) -> None:
    """Every family present (throttles configured, a worker, jobs in every set): promtool parses
    the exposition and finds nothing to lint (names, units, `_total`, help texts). The README's
    queries use these names and parse."""
    throttles = ThrottlesConfig((Throttle("slow", timeout=60, concurrency=2), Throttle("rated", timeout=60, rate=(5, 1.0))),
                                limits=(NamedLimit("pdf", jobtypes=(JOB["jobtype"],), concurrency=3),))
    # statsd on (its counters are families too), to a port nobody listens on
    server = await running(config(tmp_path, throttles=throttles, statsd=StatsdConfig("127.0.0.1:9")))
    worker = await AsyncClient.connect(server.port, wid="w1")
    for i, queue in enumerate(("default", "slow", "slow", "rated")):
        assert await worker.push({**JOB, "jid": f"jid{i:05d}", "queue": queue}) == b"OK"
    job = await worker.fetch("slow")
    assert await worker.json_command("FAIL", {"jid": job["jid"], "errtype": "E", "message": "m"}) == b"OK"
    reply = await get(server.web_urls[0] + "/metrics")
    assert reply.value("faktory_throttle_limit", queue="slow") == 2
    assert reply.value("faktory_throttle_in_use", queue="rated") == 0
    assert reply.value("faktory_limit_concurrency", limit="pdf") == 3
    assert reply.value("faktory_limit_in_use", limit="pdf") == 0  # the FAILed job's slot is free
    checked = await trio.to_thread.run_sync(promtool_check, reply.text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""
    await worker.aclose()
    # the README's dashboard queries name only metrics a scrape has, and are valid PromQL
    readme = (ROOT / "README.md").read_text()
    queries = re.findall(r"^\| [^|]+ \| `(.+)` \|$", readme[readme.index("Grafana-ready queries"):], re.M)
    assert len(queries) >= 10
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name, _ in reply.samples()}
    for query in queries:
        for name in re.findall(r"\b(faktory_\w+)", query):
            assert re.sub(r"_bucket$", "", name) in families, (name, query)
    rules = tmp_path / "readme_queries.yml"  # JSON is YAML
    rules.write_text(json.dumps({"groups": [{"name": "readme", "rules": [
        {"record": f"readme:query{i}", "expr": query} for i, query in enumerate(queries)]}]}))
    parsed = await trio.run_process([promtool(), "check", "rules", str(rules)], capture_stdout=True,
                                    capture_stderr=True, check=False)
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr


async def test_a_scrape_with_100k_queued_jobs_reads_one_job_per_queue(tmp_path: Path, running) -> None:
    """Queue sizes are lengths and a queue's latency reads its head job only: a scrape touches
    one job of a 100 000-job queue and no entry of a 100 000-entry set."""
    server = await running(config(tmp_path))
    manager = server.dispatcher.manager
    now = server.dispatcher.clock.now()
    manager.push({**JOB, "jid": "head0000", "queue": "big"}, now)
    raws = [encode({**JOB, "jid": f"jid{i:07d}", "queue": "big", "enqueued_at": "2026-01-01T00:00:00Z"})
            for i in range(100_000)]
    private_queue(manager.store, "big").extend(raws)  # test setup, not journaled
    retries = private_set(manager.store, "retries")
    for i in range(100_000):
        retries.add(f"jid{i:07d}", now + 86400 + i, {**JOB, "jid": f"jid{i:07d}"})
    guard_queue(private_queue(manager.store, "big"))
    guard(retries)
    NoScanQueue.heads = CountingDict.lookups = 0
    reply = await get(server.web_urls[0] + "/metrics")
    assert reply.status == 200, reply.text
    assert reply.value("faktory_queue_size", queue="big") == 100_001
    assert reply.value("faktory_set_size", set="retries") == 100_000
    assert NoScanQueue.heads == 1
    assert CountingDict.lookups == 0


@pytest.mark.parametrize(("toml", "expected"), [
    ("", MetricsConfig()),
    ('[faktory_py.metrics]\nbinding = "127.0.0.1:9999"\nmax_queues = 10\n', MetricsConfig("127.0.0.1:9999", 10)),
    ('[faktory_py.metrics]\nbinding = "0.0.0.0"\n', MetricsConfig("0.0.0.0", 100)),
    ("[faktory_py.metrics]\ntimings = false\n", MetricsConfig(timings=False)),
])
def test_the_metrics_section_is_read(tmp_path: Path, toml: str, expected: MetricsConfig) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "metrics.toml").write_text(toml)
    assert configuration.load(["-c", str(tmp_path)], {}).metrics == expected


@pytest.mark.parametrize("toml", ['binding = ""', "binding = 7421", 'binding = "host:port"', "max_queues = -1",
                                  'max_queues = "10"', "timings = 0", 'timings = "off"'])
def test_a_bad_metrics_section_is_refused(tmp_path: Path, toml: str) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "metrics.toml").write_text(f"[faktory_py.metrics]\n{toml}\n")
    with pytest.raises(ConfigError, match=r"faktory_py\.metrics|invalid binding"):
        configuration.load(["-c", str(tmp_path)], {})
