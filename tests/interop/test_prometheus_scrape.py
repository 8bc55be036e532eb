"""A real Prometheus (Debian's `prometheus`, installed by tests/run.sh) scrapes a faktory_py
process every second, while the Python `faktory` client (cdrx, from PyPI) pushes and works
jobs; the processed counter, a queue's size and a command-time quantile are read back through
Prometheus' HTTP query API (protocol/spec.md §13).

Two scrape jobs: `faktory` on the scrapers' binding (`[faktory_py.metrics] binding`, no auth)
and `faktory_ui` on the web UI's port with the UI's password as Basic auth, as an operator
would configure either. Every wait polls the query API with a deadline.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faktory
import pytest
from faktory._proto import Connection

from faktory_py.tools.processes import free_port
from helpers.polling import eventually
from helpers.servers import ServerProcess

PASSWORD = "s3cret"
QUEUE = "prom"


class Prometheus:
    """`prometheus` on a free loopback port, its TSDB under `base`, with `scrape_configs` (1 s interval)."""

    def __init__(self, base: Path, scrape_configs: list[dict[str, Any]]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("prometheus not installed (Debian's prometheus package; tests/run.sh installs it)")
        base.mkdir(parents=True, exist_ok=True)
        config = base / "prometheus.yml"
        # JSON is YAML: no YAML writer needed
        config.write_text(json.dumps({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                                      "scrape_configs": scrape_configs}))
        self.port = free_port()
        self.log = base / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={base / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read()
        except OSError:
            return 0, b""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant query's result vector (empty while nothing matches yet)."""
        status, body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        if status != 200:
            return []
        reply = json.loads(body)
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The value of a query that yields one series, None while it yields none."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def wait_for(self, promql: str, expected: float, timeout: float = 30) -> None:
        eventually(lambda: self.value(promql) == expected, timeout,
                   f"Prometheus to read {promql} == {expected} (last: {self.value(promql)}; log: "
                   f"{self.log.read_text()[-2000:]})", interval=0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """`prometheus(scrape_configs)` → a started, ready Prometheus; stopped after the test."""
    started: list[Prometheus] = []

    def start(scrape_configs: list[dict[str, Any]]) -> Prometheus:
        server = Prometheus(tmp_path / f"prometheus{len(started)}", scrape_configs)
        started.append(server)
        eventually(lambda: server.get("/-/ready")[0] == 200, 30, "Prometheus to be ready", interval=0.1)
        return server

    yield start
    for server in started:
        server.stop()


def work(conn: Connection, count: int) -> None:
    """Fetch and ACK `count` jobs of QUEUE as the client's worker side does."""
    for _ in range(count):
        job = conn.fetch([QUEUE])
        assert job is not None
        conn.reply("ACK", {"jid": job["jid"]})
        assert next(conn.get_message()) == "OK"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[tuple[ServerProcess, int]]:
    """faktory_py with a password, its web UI, and `/metrics` alone on a port of its own."""
    server = ServerProcess(tmp_path / "faktory_py", password=PASSWORD, web=True)
    metrics_port = free_port()
    (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (server.conf_dir / "conf.d" / "metrics.toml").write_text(
        f'[faktory_py.metrics]\nbinding = "127.0.0.1:{metrics_port}"\n')
    try:
        server.start()
        yield server, metrics_port
    finally:
        server.cleanup()


def test_prometheus_scrapes_processed_jobs_queue_size_and_a_command_quantile(srv, prometheus) -> None:
    srv, metrics_port = srv
    prom = prometheus([
        {"job_name": "faktory", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]},
        {"job_name": "faktory_ui", "basic_auth": {"username": "prometheus", "password": PASSWORD},
         "static_configs": [{"targets": [f"127.0.0.1:{srv.web_port}"]}]},
    ])
    prom.wait_for('up{job="faktory"}', 1)
    prom.wait_for('up{job="faktory_ui"}', 1)

    conn = Connection(srv.url, worker_id="prom-worker", labels=["python"], timeout=10)
    assert conn.connect(worker_id="prom-worker") is True
    try:
        with faktory.connection(faktory=srv.url) as client:
            for i in range(10):
                assert client.queue("Metered", args=[i], queue=QUEUE) is True
            work(conn, 4)
            prom.wait_for('faktory_jobs_processed_total{job="faktory"}', 4)
            prom.wait_for(f'faktory_queue_size{{job="faktory",queue="{QUEUE}"}}', 6)
            # a second round between two scrapes, so a rate() over them sees the PUSHes too
            for i in range(10, 15):
                assert client.queue("Metered", args=[i], queue=QUEUE) is True
            work(conn, 11)
        prom.wait_for('faktory_jobs_processed_total{job="faktory_ui"}', 15)
        prom.wait_for(f'faktory_queue_size{{job="faktory",queue="{QUEUE}"}}', 0)
        prom.wait_for('faktory_command_duration_seconds_count{job="faktory",verb="PUSH"}', 15)
        prom.wait_for('faktory_worker_processes{job="faktory",state="running"}', 1)
    finally:
        conn.disconnect()
    # the README's dashboard query: p99 PUSH service time over the last minute
    p99 = ('histogram_quantile(0.99, sum by (le) '
           '(rate(faktory_command_duration_seconds_bucket{job="faktory",verb="PUSH"}[1m])))')
    quantile = eventually(lambda: _finite(prom.value(p99)), 30, "a finite PUSH p99", interval=0.2)
    assert 0 < quantile <= 10
    median = prom.value('histogram_quantile(0.5, faktory_command_duration_seconds_bucket{job="faktory",'
                        'verb="ACK"})')
    assert median is not None and 0 < median <= 10


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
