"""Checks that a server process still serves, shared by the poison-request and fuzz tests."""

from __future__ import annotations

from helpers.servers import ServerProcess
from helpers.rawclient import RawClient, new_jid


def connect(server: ServerProcess) -> RawClient:
    client = server.client()
    assert client.handshake() == b"OK"
    return client


def assert_serving(server: ServerProcess) -> None:
    """A fresh connection pushes, fetches and ACKs a job, and the log holds no traceback."""
    with connect(server) as client:
        jid = new_jid()
        assert client.push({"jid": jid, "jobtype": "canary", "args": [1], "queue": "canary"}) == b"OK"
        assert client.fetch("canary")["jid"] == jid
        assert client.json_command("ACK", {"jid": jid}) == b"OK"
    assert "Traceback" not in server.log_text()


def restart(server: ServerProcess) -> None:
    """A requested stop exits 0, and the server starts again from its journal."""
    assert server.stop() == 0, server.log_text()
    server.start()
    assert_serving(server)
