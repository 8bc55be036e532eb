"""statsd metrics (protocol/spec.md §15): a UDP listener on a free loopback port receives
Faktory Enterprise's names with DogStatsD tags for push, fetch, ack, fail, expiry and unique
denial; with statsd unreachable every command answers as ever and the errors are counted;
`[statsd]` is parsed with clear errors. In-process servers (tests/helpers/inprocess.py) on
real time (the sender's 100 ms flush is real), plus one real server process."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from faktory_py.cli import check_config
from faktory_py.config import StatsdConfig, statsd
from faktory_py.errors import ConfigError
from faktory_py.features.statsd import StatsdMetrics
from faktory_py.server.statsd import UdpSender
from helpers import jobs
from helpers.inprocess import InProcessServer, inprocess_config, inprocess_server
from helpers.rawclient import ReplyError, new_jid

TAGS = "#queue:critical,jobtype:Report,env:test"


class Listener:
    """A statsd server: a UDP socket on 127.0.0.1 that collects every line it receives."""

    def __init__(self) -> None:
        self.socket = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.lines: list[str] = []

    async def bind(self) -> int:
        await self.socket.bind(("127.0.0.1", 0))
        return self.socket.getsockname()[1]

    async def until(self, *wanted: str) -> list[str]:
        """Read packets until every line of `wanted` has arrived (each a line's exact text)."""
        with trio.fail_after(100):
            while not all(line in self.lines for line in wanted):
                packet = await self.socket.recv(65536)
                self.lines.extend(packet.decode().split("\n"))
        return self.lines


@asynccontextmanager
async def statsd_server(tmp_path: Path, location: str, **settings: Any) -> AsyncIterator[InProcessServer]:
    config = replace(inprocess_config(tmp_path), statsd=StatsdConfig(location, tags=("env:test",), **settings))
    async with inprocess_server(config) as server:
        yield server


def job(**fields: Any) -> dict[str, Any]:
    return jobs.job(jobtype="Report", args=[1], queue="critical", **fields)


async def test_job_lines_carry_ent_names_and_tags(tmp_path: Path) -> None:
    listener = Listener()
    port = await listener.bind()
    async with statsd_server(tmp_path, f"127.0.0.1:{port}") as server:
        producer = await server.connect()
        worker = await server.connect(wid="w1")
        await producer.push(job())
        fetched = await worker.fetch("critical")
        await worker.json_command("ACK", {"jid": fetched["jid"]})
        await producer.push(job())
        fetched = await worker.fetch("critical")
        await worker.json_command("FAIL", {"jid": fetched["jid"], "errtype": "E", "message": "m"})
        await producer.push(job(custom={"expires_at": "2000-01-01T00:00:00Z"}))
        assert await worker.fetch("critical") is None
        unique = job(custom={"unique_for": 60})
        await producer.push(unique)
        with pytest.raises(ReplyError, match="NOTUNIQUE"):
            await producer.push({**unique, "jid": new_jid()})
        lines = await listener.until(
            f"faktory.jobs.pushed:1|c|{TAGS}", f"faktory.jobs.fetched:1|c|{TAGS}",
            f"faktory.jobs.count:1|c|{TAGS}", f"faktory.jobs.failed:1|c|{TAGS}",
            f"faktory.jobs.expired:1|c|{TAGS}", f"faktory.uniq.lock:1|c|{TAGS}",
            f"faktory.uniq.denied:1|c|{TAGS}")
    assert lines.count(f"faktory.jobs.count:1|c|{TAGS}") == 2  # ACK and FAIL
    assert lines.count(f"faktory.jobs.failed:1|c|{TAGS}") == 1
    assert lines.count(f"faktory.jobs.pushed:1|c|{TAGS}") == 4  # the denied push is no push
    assert lines.count(f"faktory.jobs.fetched:1|c|{TAGS}") == 2  # the expired job was not handed out
    perform = [line for line in lines if line.startswith("faktory.jobs.perform:")]
    assert len(perform) == 1 and perform[0].endswith(f"|ms|{TAGS}")
    assert float(perform[0].split(":")[1].split("|")[0]) >= 0


async def test_global_gauges_and_queue_metrics(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Every 30 s (mock time: the clock jumps while the listener waits)."""
    listener = Listener()
    port = await listener.bind()
    async with statsd_server(tmp_path, f"127.0.0.1:{port}", namespace="app1.faktory.",
                             queue_latency=("critical", "nosuch")) as server:
        producer = await server.connect()
        await producer.push(job())
        await producer.push(job())
        lines = await listener.until("app1.faktory.enqueued:2|g|#env:test", "app1.faktory.processed:0|g|#env:test",
                                     "app1.faktory.working:0|g|#env:test", "app1.faktory.connections:1|g|#env:test",
                                     "app1.faktory.queue.size:2|g|#queue:critical,env:test",
                                     "app1.faktory.queue.latency:30|g|#queue:critical,env:test")
    assert not any("nosuch" in line for line in lines)


class Lines:
    """A `LineSink` that keeps the lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def statistics(self) -> dict[str, int]:
        return {}


def test_report_sends_throttle_gauges_and_cron_counts_since_the_last_report() -> None:
    sink = Lines()
    metrics = StatsdMetrics(sink, tags=("env:test",))
    info: dict[str, Any] = {
        "faktory": {"total_processed": 7, "total_failures": 1, "total_enqueued": 3, "queues": {"a": 3},
                    "sets": {"scheduled": 0, "retries": 1, "dead": 0, "working": 2},
                    "throttles": {"a": {"in_use": 2, "waiting": 3}}, "limits": {"pdf": {"in_use": 1, "waiting": 0}},
                    "cron": {"entries": 1, "fired": 4, "missed": 0, "denied": 1, "skipped": 0}},
        "server": {"connections": 5}}
    metrics.report(info, lambda names: dict.fromkeys(names, 1.5), None)
    assert sink.lines == [
        "faktory.processed:7|g|#env:test", "faktory.failures:1|g|#env:test", "faktory.enqueued:3|g|#env:test",
        "faktory.scheduled:0|g|#env:test", "faktory.retries:1|g|#env:test", "faktory.dead:0|g|#env:test",
        "faktory.working:2|g|#env:test", "faktory.connections:5|g|#env:test",
        "faktory.queue.size:3|g|#queue:a,env:test", "faktory.queue.latency:1.5|g|#queue:a,env:test",
        "faktory.throttle.in_use:2|g|#throttle:a,env:test", "faktory.throttle.waiting:3|g|#throttle:a,env:test",
        "faktory.limit.in_use:1|g|#limit:pdf,env:test", "faktory.limit.waiting:0|g|#limit:pdf,env:test",
        "faktory.cron.fired:4|c|#env:test", "faktory.cron.denied:1|c|#env:test"]
    sink.lines.clear()
    info["faktory"]["cron"] = {"entries": 1, "fired": 6, "missed": 0, "denied": 1, "skipped": 0}
    metrics.report(info, lambda names: {}, ())
    assert [line for line in sink.lines if ".cron." in line] == ["faktory.cron.fired:2|c|#env:test"]


async def test_unreachable_statsd_never_fails_a_command(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with closed_udp_port() as port:
        async with statsd_server(tmp_path, f"127.0.0.1:{port}", buffer_size=1) as server:
            producer = await server.connect()
            worker = await server.connect(wid="w1")
            for _ in range(20):
                assert await producer.push(job()) == b"OK"
                fetched = await worker.fetch("critical")
                assert await worker.json_command("ACK", {"jid": fetched["jid"]}) == b"OK"
            sent = (await producer.info())["faktory"]["statsd"]
    assert sent["errors"] > 0 and sent["lost_lines"] >= sent["errors"]
    warned = [r for r in caplog.records if r.name == "faktory_py.statsd" and r.levelno == logging.WARNING]
    assert len(warned) == 1  # then at most one a minute


@contextmanager
def closed_udp_port() -> Iterator[int]:
    """A loopback UDP port nobody listens on (the kernel answers ICMP port unreachable)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    yield port


def test_sender_counts_a_failed_send_and_never_raises() -> None:
    with closed_udp_port() as port:
        sender = UdpSender(buffer_size=2)
        sender.add("a:1|c")  # not connected yet: lost, counted
        sender.add("b:1|c")
        assert sender.statistics() == {"packets": 0, "errors": 1, "lost_lines": 2}
        sender.connect(socket.AF_INET, ("127.0.0.1", port))
        for _ in range(10):
            sender.add("c:1|c")
            sender.flush()
        sender.close()
    assert sender.statistics()["errors"] > 1


def test_config_defaults_and_values() -> None:
    assert statsd({}) == StatsdConfig()
    got = statsd({"location": "metrics.internal:8125", "namespace": "app1.faktory.", "tags": ["env:prod"],
                  "bufferSize": 50, "queueLatency": ["critical", "default"]})
    assert got == StatsdConfig("metrics.internal:8125", "app1.faktory.", ("env:prod",), 50, ("critical", "default"))
    assert statsd({"location": "h:1", "queueLatency": True}).queue_latency_all
    assert statsd({"location": "h:1", "enabled": True}).warnings == ('config: statsd: unknown key "enabled" ignored',)


@pytest.mark.parametrize("section, error", [
    ({"location": "nohost"}, 'config: statsd.location: must be "host:port", e.g. "127.0.0.1:8125"'),
    ({"location": "h:99999"}, 'config: statsd.location: must be "host:port"'),
    ({"namespace": "a b"}, "config: statsd.namespace: must be a string without"),
    ({"tags": "env:prod"}, 'config: statsd.tags: must be a list of "name:value" strings'),
    ({"tags": ["9lives"]}, "config: statsd.tags: '9lives' is not a DataDog tag"),
    ({"tags": ["host:a"]}, "config: statsd.tags: 'host:a': host, device, source, service are reserved"),
    ({"bufferSize": 0}, "config: statsd.bufferSize: must be an integer from 1 to 1000"),
    ({"queueLatency": ["bad queue"]}, "config: statsd.queueLatency: must be a list of queue names"),
])
def test_config_errors(section: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        statsd(section)
    assert str(raised.value).startswith(error)


def test_a_server_process_reads_conf_d_statsd_toml(server_factory) -> None:
    """The real process: `conf.d/statsd.toml` as Faktory Enterprise's wiki writes it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    server = server_factory(start=False)
    (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (server.conf_dir / "conf.d" / "statsd.toml").write_text(
        f'[statsd]\nlocation = "localhost:{listener.getsockname()[1]}"\ntags = ["env:test"]\n'
        'bufferSize = 15\nqueueLatency = ["critical"]\n')
    server.start()
    with server.client() as client:
        assert client.handshake(wid="w1") == b"OK"
        assert client.push(job()) == b"OK"
        fetched = client.fetch("critical")
        assert client.json_command("ACK", {"jid": fetched["jid"]}) == b"OK"
        wanted = {f"faktory.jobs.pushed:1|c|{TAGS}", f"faktory.jobs.fetched:1|c|{TAGS}",
                  f"faktory.jobs.count:1|c|{TAGS}", "faktory.processed:0|g|#env:test"}
        lines: set[str] = set()
        with listener:
            while not wanted <= lines:
                lines.update(listener.recv(65536).decode().split("\n"))
        assert client.info()["faktory"]["statsd"]["errors"] == 0


def test_check_config_reports_statsd_errors_and_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "conf.d").mkdir()
    statsd_toml = tmp_path / "conf.d" / "statsd.toml"
    statsd_toml.write_text('[statsd]\nlocation = "127.0.0.1:8125"\nenabled = true\n')
    assert check_config(["-c", str(tmp_path)]) == 0
    assert 'warning: config: statsd: unknown key "enabled" ignored' in capsys.readouterr().err
    statsd_toml.write_text('[statsd]\nlocation = "8125"\n')
    assert check_config(["-c", str(tmp_path)]) == 2
    assert 'config: statsd.location: must be "host:port"' in capsys.readouterr().err
