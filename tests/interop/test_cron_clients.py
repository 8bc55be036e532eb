"""B-T11, its Python part: the real worker loops of pyfaktory (`Consumer.run()`) and of the
`faktory` client (`Worker.run()`), each in a process of its own, receive and ACK the jobs an
every-second `[[cron]]` entry fires on a server process (protocol/spec.md §12.3): the jobs run
with the entry's args, nothing fails, and the server's history records each ACK as `success`.
The payload has no new top-level key (`custom._cron` only), which both clients accept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from faktory_py.store.journal import Journal
from helpers.polling import eventually
from helpers.rawclient import RawClient

CRON = """
[[cron]]
  schedule = "* * * * * *"
  name = "every-second"
  [cron.job]
    type = "record"
    queue = "cron"
    args = [7, "x"]
"""

PRELUDE = textwrap.dedent("""
    import sys

    url, out = sys.argv[1:]

    def record(*args):
        with open(out, "a") as f:
            f.write(repr(list(args)) + "\\n")
""")
WORKERS = {
    "pyfaktory": PRELUDE + textwrap.dedent("""
        from pyfaktory import Client, Consumer

        client = Client(faktory_url=url, role="consumer", worker_id="pyf-cron", beat_period=5, timeout=10)
        client.connect()
        consumer = Consumer(client=client, queues=["cron"], concurrency=1, priority="strict")
        consumer.register("record", record)
        consumer.run()
    """),
    "faktory": PRELUDE + textwrap.dedent("""
        from faktory import Worker

        worker = Worker(faktory=url, queues=["cron"], concurrency=1)
        worker.register("record", record)
        worker.run()
    """),
}


def info(port: int) -> dict:
    with RawClient(port) as client:
        assert client.handshake() == b"OK"
        return client.info()["faktory"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", sorted(WORKERS))
def test_real_workers_run_cron_jobs(client: str, server_factory, tmp_path: Path) -> None:
    server = server_factory(start=False)
    (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (server.conf_dir / "conf.d" / "cron.toml").write_text(CRON)
    server.start()
    script, out, log = tmp_path / "worker.py", tmp_path / "ran.txt", tmp_path / "worker.log"
    script.write_text(WORKERS[client])
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKTORY_")}
    with open(log, "wb") as output:
        worker = subprocess.Popen([sys.executable, str(script), server.url, str(out)], env=env, stdout=output,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        eventually(lambda: info(server.port)["total_processed"] >= 3, 30,
                   f"{client} to run 3 cron jobs", interval=0.2)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    stats = info(server.port)
    assert stats["total_failures"] == 0, log.read_text()
    assert stats["cron"]["fired"] >= stats["total_processed"] >= 3
    assert out.read_text().splitlines()[:3] == ["[7, 'x']"] * 3
    assert server.stop() == 0
    with Journal.open(server.data_dir) as journal:
        outcomes = [op["outcome"] for record in journal.replay() for op in record if op["op"] == "cron_outcome"]
    assert outcomes.count("success") >= 3 and set(outcomes) == {"success"}
