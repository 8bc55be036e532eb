"""A primary paused past its lease (SIGSTOP) while another node took the lease over: resumed,
it answers nothing more — not even a command already waiting in its socket — and exits 1;
the other node has everything the paused one acknowledged and nothing it did not.
Real processes on a real redis-server."""

from __future__ import annotations

import json
import signal

import pytest

from helpers.rawclient import RawClient
from helpers.redis import redis_conf
from helpers.servers import ServerProcess


def node(server_factory, redis_store: str) -> ServerProcess:  # type: ignore[no-untyped-def]
    server = server_factory(args=("--store", redis_store), start=False)
    redis_conf(server.conf_dir)
    server.start()
    return server


def job(jid: str) -> dict[str, object]:
    return {"jid": jid, "jobtype": "T", "args": [], "queue": "fenced"}


def test_a_paused_primary_acknowledges_nothing_after_the_lease_moved(server_factory, redis_store) -> None:  # type: ignore[no-untyped-def]
    old = node(server_factory, redis_store)
    client = old.client()
    assert client.handshake() == b"OK"
    assert client.push(job("before-0001")) == b"OK"
    assert old.proc is not None
    old.proc.send_signal(signal.SIGSTOP)
    try:
        new = node(server_factory, redis_store)  # starts once the paused node's lease expired
        client.send(f"PUSH {json.dumps(job('after-00001'))}\r\n".encode())  # waits in the socket
    finally:
        old.proc.send_signal(signal.SIGCONT)
    with pytest.raises((ConnectionError, OSError)):
        client.reply()  # closed without a reply
    assert old.proc.wait(15) == 1
    assert "FENCED" in old.log_text()
    with RawClient(new.port) as c:
        assert c.handshake() == b"OK"
        assert c.info()["faktory"]["queues"] == {"fenced": 1}
        assert c.fetch("fenced")["jid"] == "before-0001"  # type: ignore[index]

