"""Batches over TCP against a real server process: reply bytes, both policies, restarts.

The policy comes from `conf.d/*.toml` (`[batches] policy = "strict" | "permissive"`,
`uncommitted_ttl`), written into the server's config directory before it starts. The
step-by-step protocol is pinned by protocol/cases/batch.ent.case and batch.ours.case; this
file covers what those cannot: configuration, restarts, the Faktory Enterprise flows that
upstream clients' tests assert (refused in strict, accepted in permissive), and that a
STATUS from another connection right after an ACK already sees its effect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.servers import ServerProcess
from helpers.rawclient import RawClient, ReplyError, new_jid

BID = re.compile(rb"b-[0-9a-f]{20}")


def configured(server_factory, toml: str | None, **kwargs: Any) -> ServerProcess:
    server = server_factory(start=False, **kwargs)
    if toml is not None:
        (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
        (server.conf_dir / "conf.d" / "batches.toml").write_text(toml)
    server.start()
    return server


def connect(server: ServerProcess, wid: str = "") -> RawClient:
    c = server.client()
    hello: dict[str, Any] = {"hostname": "box", "wid": wid, "pid": 1} if wid else {}
    assert c.handshake(**hello) == b"OK"
    return c


def raw(c: RawClient, line: str) -> bytes:
    """Send a command, return the whole raw reply (type byte and CRLFs included)."""
    c.send(line.encode() + b"\r\n")
    data = b""
    while True:
        data += c.recv_raw()
        if data.startswith(b"$") and not data.startswith(b"$-1"):
            header, _, rest = data.partition(b"\r\n")
            if len(rest) >= int(header[1:]) + 2:
                return data
        elif data.endswith(b"\r\n"):
            return data


def new_batch(c: RawClient, **payload: Any) -> str:
    payload.setdefault("success", {"jobtype": "Ok", "args": [], "queue": "cb"})
    reply = raw(c, "BATCH NEW " + json.dumps(payload))
    m = re.fullmatch(rb"\$22\r\n(b-[0-9a-f]{20})\r\n", reply)
    assert m, reply
    return m.group(1).decode()


def push(c: RawClient, bid: str, queue: str = "bq", **fields: Any) -> str:
    jid = new_jid()
    assert c.push({"jid": jid, "jobtype": "W", "args": [], "queue": queue, "custom": {"bid": bid},
                   **fields}) == b"OK"
    return jid


def status(c: RawClient, bid: str) -> dict[str, Any]:
    return json.loads(c.command(f"BATCH STATUS {bid}"))


def error(c: RawClient, line: str) -> str:
    with pytest.raises(ReplyError) as info:
        c.command(line)
    return str(info.value)


@pytest.fixture(scope="module")
def strict(module_server_factory) -> ServerProcess:
    return module_server_factory()


@pytest.fixture(scope="module")
def permissive(module_server_factory) -> ServerProcess:
    return configured(module_server_factory, '[batches]\npolicy = "permissive"\n')


@pytest.fixture
def producer(strict: ServerProcess) -> Iterator[RawClient]:
    with connect(strict) as c:
        yield c


def test_reply_shapes(producer: RawClient) -> None:
    c = producer
    bid = new_batch(c, bid="", description="shapes",
                    complete={"jobtype": "Done", "queue": "cb"})  # Go's "bid":"", pyfaktory's jid-less job
    jid = push(c, bid)
    body = raw(c, f"BATCH STATUS {bid}")
    header, _, text = body.partition(b"\r\n")
    assert header == b"$%d" % (len(text) - 2)
    assert list(json.loads(text)) == ["bid", "description", "created_at", "total", "pending",
                                      "failed", "complete_st", "success_st"]
    assert raw(c, f"BATCH OPEN {bid}") == b"$22\r\n" + bid.encode() + b"\r\n"
    assert raw(c, f"BATCH COMMIT {bid}") == b"+OK\r\n"
    assert raw(c, f"BATCH COMMIT {bid}") == b"+OK\r\n"
    assert raw(c, "BATCH STATUS b-x") == b"-ERR No such batch b-x\r\n"
    assert c.command(f"ACK {json.dumps({'jid': jid})}") == b"OK"  # not reserved: no effect
    assert status(c, bid)["pending"] == 1


def test_status_right_after_ack_from_another_connection(strict: ServerProcess, producer: RawClient) -> None:
    bid = new_batch(producer, complete={"jobtype": "Done", "queue": "cb-sync"})
    jids = [push(producer, bid, queue="sync") for _ in range(3)]
    assert producer.command(f"BATCH COMMIT {bid}") == b"OK"
    with connect(strict, wid="sync-worker") as worker, connect(strict) as watcher:
        for i, jid in enumerate(jids):
            assert worker.fetch("sync")["jid"] == jid
            assert worker.command(f'ACK {{"jid":"{jid}"}}') == b"OK"
            seen = status(watcher, bid)
            assert seen["pending"] == 2 - i
            assert seen["complete_st"] == ("1" if i == 2 else "")
        callback = worker.fetch("cb-sync")
        assert callback["jobtype"] == "Done" and callback["custom"] == {"_bid": bid}
        assert worker.command(f'ACK {{"jid":"{callback["jid"]}"}}') == b"OK"
        assert status(watcher, bid)["complete_st"] == "2"


def test_strict_refuses_outsiders_with_a_clear_error(strict: ServerProcess, producer: RawClient) -> None:
    bid = new_batch(producer)
    member = push(producer, bid, queue="strict")
    assert producer.command(f"BATCH COMMIT {bid}") == b"OK"
    rule = f"ERR Batch {bid} is committed: it can only be reopened or added to from within"
    assert error(producer, f"BATCH OPEN {bid}").startswith(rule)
    assert error(producer, "PUSH " + json.dumps(
        {"jid": new_jid(), "jobtype": "W", "args": [], "custom": {"bid": bid}})).startswith(rule)
    assert error(producer, "BATCH NEW " + json.dumps(
        {"parent_bid": bid, "success": {"jobtype": "S", "args": []}})).startswith(rule)
    assert status(producer, bid)["total"] == 1
    with connect(strict, wid="holder") as worker, connect(strict, wid="holder") as pool, \
            connect(strict, wid="stranger") as stranger:
        assert worker.fetch("strict")["jid"] == member
        assert pool.command(f"BATCH OPEN {bid}") == bid.encode()  # same process, other connection
        push(pool, bid, queue="strict")
        assert error(stranger, f"BATCH OPEN {bid}") == (
            f"{rule}, by the worker process working one of its jobs (or a child batch's), "
            "and worker stranger works none")
        assert pool.command(f"BATCH COMMIT {bid}") == b"OK"
    assert status(producer, bid)["total"] == 2


def _enterprise_reopen_flow(c: RawClient) -> tuple[str, str]:
    """What faktory's test/ent/batch_test.go and faktory-rs's enterprise tests do: reopen a
    committed batch from outside, push into it, give it a child, and re-commit."""
    bid = new_batch(c, complete={"jobtype": "Done", "queue": "pcb"})
    push(c, bid, queue="p")
    push(c, bid, queue="p")
    assert c.command(f"BATCH OPEN {bid}") == bid.encode()  # uncommitted: fine everywhere
    assert c.command(f"BATCH COMMIT {bid}") == b"OK"
    assert c.command(f"BATCH OPEN {bid}") == bid.encode()
    push(c, bid, queue="p")
    assert c.command(f"BATCH COMMIT {bid}") == b"OK"
    child = new_batch(c, parent_bid=bid, complete={"jobtype": "ChildDone", "queue": "pcb"})
    return bid, child


def test_permissive_reproduces_enterprise_reopening(permissive: ServerProcess) -> None:
    with connect(permissive) as c, connect(permissive, wid="pw") as worker:
        bid, child = _enterprise_reopen_flow(c)
        assert status(c, bid)["total"] == 3
        assert c.command(f"BATCH COMMIT {child}") == b"OK"  # empty: fires at once
        assert status(c, child)["complete_st"] == "1"
        # after the callback, more jobs are still accepted (and nothing fires twice)
        assert c.command(f"BATCH OPEN {child}") == child.encode()
        push(c, child, queue="p2")
        assert c.command(f"BATCH COMMIT {child}") == b"OK"
        seen = status(c, child)
        assert (seen["total"], seen["pending"], seen["complete_st"]) == (1, 1, "1")
        assert worker.fetch("pcb")["jobtype"] == "ChildDone"
        assert worker.fetch("pcb") is None


def test_strict_refuses_the_enterprise_reopen_flow(producer: RawClient) -> None:
    with pytest.raises(ReplyError, match=r"^ERR Batch b-[0-9a-f]{20} is committed: it can only be reopened"):
        _enterprise_reopen_flow(producer)


def test_batches_survive_a_crash(server_factory) -> None:
    server = server_factory()
    with connect(server) as c, connect(server, wid="crash-w") as worker:
        parent = new_batch(c, complete={"jobtype": "Done", "queue": "ccb"})
        child = new_batch(c, parent_bid=parent, success={"jobtype": "KidOk", "queue": "ccb"})
        kid_job = push(c, child, queue="cq")
        push(c, parent, queue="cq", retry=0)
        for bid in (child, parent):
            assert c.command(f"BATCH COMMIT {bid}") == b"OK"
        assert worker.fetch("cq")["jid"] == kid_job
        before = {bid: status(c, bid) for bid in (parent, child)}
    server.kill()
    server.start()
    with connect(server) as c, connect(server, wid="crash-w") as worker:
        assert {bid: status(c, bid) for bid in (parent, child)} == before
        # the reservation came back with the journal: worker crash-w still counts as within
        assert worker.command(f"BATCH OPEN {child}") == child.encode()
        with connect(server, wid="other-w") as other:
            assert error(other, f"BATCH OPEN {parent}").endswith("worker other-w works none")
        assert c.command(f"BATCH OPEN {parent}") == parent.encode()  # a job within is being worked
        assert worker.command(f'ACK {{"jid":"{kid_job}"}}') == b"OK"
        assert status(c, child)["success_st"] == "1"
        kid_ok = worker.fetch("ccb")
        assert kid_ok["jobtype"] == "KidOk"
        assert worker.command(f'ACK {{"jid":"{kid_ok["jid"]}"}}') == b"OK"
        failing = worker.fetch("cq")
        assert worker.command(json.dumps({"jid": failing["jid"], "errtype": "E", "message": "m"})
                              .join(["FAIL ", ""])) == b"OK"
        assert status(c, parent) == {**before[parent], "pending": 1, "failed": 1, "complete_st": "1"}


def test_members_that_never_run_let_complete_fire_and_the_callback_is_pushed_like_a_job(
        strict: ServerProcess, producer: RawClient) -> None:
    """Issue 13 item 4 through the whole server: a scheduled member discarded by MUTATE and a
    member removed with its queue count as failed; the complete callback then goes through
    the push hooks (tracked, its `expires_in` made an `expires_at`)."""
    c = producer
    bid = new_batch(c, complete={"jobtype": "Done", "queue": "gaps-cb", "custom": {"track": 1, "expires_in": 3600}})
    scheduled = push(c, bid, queue="gaps-later", at="2099-01-01T00:00:00Z")
    push(c, bid, queue="gaps-gone")
    assert c.command(f"BATCH COMMIT {bid}") == b"OK"
    assert c.command("QUEUE REMOVE gaps-gone") == b"OK"
    assert (status(c, bid)["failed"], status(c, bid)["complete_st"]) == (1, "")
    mutation = {"cmd": "discard", "target": "scheduled", "filter": {"jids": [scheduled]}}
    assert c.command("MUTATE " + json.dumps(mutation)) == b"OK"
    assert {k: status(c, bid)[k] for k in ("total", "pending", "failed", "complete_st")} == {
        "total": 2, "pending": 2, "failed": 2, "complete_st": "1"}
    with connect(strict, wid="gaps-w") as worker:
        done = worker.fetch("gaps-cb")
    assert done["jobtype"] == "Done" and "expires_in" not in done["custom"] and done["custom"]["expires_at"]
    assert json.loads(c.command(f"TRACK GET {done['jid']}"))["state"] == "working"


@pytest.mark.parametrize("toml, message", [
    ('[batches]\npolicy = "lax"\n', "[batches] policy must be one of strict, permissive, not 'lax'"),
    ("[batches]\nuncommitted_ttl = -5\n", "[batches] uncommitted_ttl must be a positive number"),
    ("[batches]\nretention = 0\n", "[batches] retention must be a positive number"),
])
def test_bad_configuration_stops_the_server(server_factory, toml: str, message: str) -> None:
    """Checked when the configuration is loaded: exit status 2, like every configuration error."""
    with pytest.raises(RuntimeError) as info:
        configured(server_factory, toml)
    assert "server exited with 2:" in str(info.value)
    assert message in str(info.value)
