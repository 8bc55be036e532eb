"""C-T11 with real processes: a chain a → b → c and a fan-in x, y → z, the server killed with
SIGKILL (fsync "always") right after every command's +OK and restarted on its journal: no held
job is lost, none is released early, and the jobs come out in dependency order
(protocol/spec.md §14.3, §14.8)."""

from __future__ import annotations

from typing import Any

from helpers.rawclient import RawClient
from helpers.servers import ServerProcess


def job(name: str, *after: str) -> dict[str, Any]:
    custom = {"custom": {"after": [f"wf-{a}" * 2 for a in after]}} if after else {}
    return {"jid": f"wf-{name}" * 2, "jobtype": "Step", "args": [name], **custom}


def connect(server: ServerProcess) -> RawClient:
    client = server.client()
    assert client.handshake(wid="sigkill-w") == b"OK"
    return client


def test_sigkill_after_every_step_keeps_held_jobs_and_their_order(server_factory) -> None:
    server = server_factory(args=("--fsync", "always"))
    steps: list[tuple[str, Any, int, int]] = [
        # (what, argument, held afterwards, queued afterwards)
        ("push", job("c", "b"), 1, 0), ("push", job("b", "a"), 2, 0), ("push", job("z", "x", "y"), 3, 0),
        ("push", job("a"), 3, 1), ("push", job("x"), 3, 2), ("push", job("y"), 3, 3),
        ("run", "a", 2, 3), ("run", "x", 2, 2), ("run", "y", 1, 2), ("run", "b", 0, 2), ("run", "z", 0, 1),
        ("run", "c", 0, 0),
    ]
    for what, arg, held, queued in steps:
        with connect(server) as client:
            if what == "push":
                assert client.push(arg) == b"OK"
            else:
                fetched = client.fetch("default")
                assert fetched is not None and fetched["jid"] == f"wf-{arg}" * 2, (arg, fetched)
                assert client.json_command("ACK", {"jid": fetched["jid"]}) == b"OK"
        server.kill()
        server.start()
        with connect(server) as client:
            info = client.info()["faktory"]
            assert info["workflows"]["held"] == held, (what, arg, info["workflows"])
            assert info["queues"].get("default", 0) == queued, (what, arg, info["queues"])
