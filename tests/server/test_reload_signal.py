"""SIGHUP to a real server process (faktory_py/cli.py `_run`) reloads the configuration
(protocol/spec.md §11.6) instead of ending the process: a valid conf.d puts its throttles in
force at once, an invalid one is logged and changes nothing, and a changed setting that is not
reloadable is logged as waiting for a restart. The reload's rules are
tests/features/test_throttles_reload.py's."""

from __future__ import annotations

import json
import signal

import pytest

from helpers.polling import eventually
from helpers.rawclient import RawClient


def write_conf(server, text: str) -> None:
    conf_d = server.conf_dir / "conf.d"
    conf_d.mkdir(exist_ok=True)
    (conf_d / "reload.toml").write_text(text)


def concurrency(client: RawClient) -> int | None:
    return json.loads(client.command("THROTTLE STATUS"))["q"]["concurrency"]


@pytest.mark.timeout(120)
def test_sighup_reloads_the_throttles_and_the_server_keeps_running(server_factory) -> None:
    server = server_factory(start=False)
    write_conf(server, "[throttles]\nq = { concurrency = 4, timeout = 60 }\n")
    server.start()
    client = RawClient(server.port)
    assert client.handshake() == b"OK"
    assert concurrency(client) == 4

    write_conf(server, "[throttles]\nq = { concurrency = 2, timeout = 60 }\n")
    server.proc.send_signal(signal.SIGHUP)
    eventually(lambda: concurrency(client) == 2, 10, "the reloaded limit in THROTTLE STATUS")
    assert server.proc.poll() is None

    write_conf(server, "[throttles]\nq = { concurrency = 3 }\n")  # no timeout: invalid
    server.proc.send_signal(signal.SIGHUP)
    eventually(lambda: "configuration reload rejected" in server.log_text(), 10, "the rejection logged")
    assert "config: throttles.q: timeout is required" in server.log_text()
    assert concurrency(client) == 2 and server.proc.poll() is None
    rejected = json.loads(client.command("THROTTLE STATUS"))["q"]["reload_error"]
    assert rejected == "config: throttles.q: timeout is required"

    write_conf(server, "[throttles]\nq = { concurrency = 3, timeout = 60 }\n[faktory_py]\nmax_line = 4096\n")
    server.proc.send_signal(signal.SIGHUP)
    eventually(lambda: concurrency(client) == 3, 10, "the third limit in THROTTLE STATUS")
    assert "max_line changed; only [throttles] and [[cron]] are reloaded" in server.log_text()
    assert client.command("PUSH " + json.dumps({"jid": "reload-1", "jobtype": "T", "args": [], "queue": "q"})) == b"OK"
    client.close()
    assert server.stop() == 0  # SIGTERM still stops it gracefully
