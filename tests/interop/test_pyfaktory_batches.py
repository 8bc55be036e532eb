"""Conformance matrix, Python column, S7 (batches): ``pyfaktory`` 0.2.13 against faktory_py.

pyfaktory has BATCH NEW / OPEN / COMMIT (``Producer.batch_*``) and a private
``Client._batch_status``; NEW and STATUS hand back the raw reply text (``$<n>\\r\\n<body>``,
stripped), which the caller parses. Its callbacks are ``TargetJob {jobtype, args, queue}``
without a jid, so the server must assign one. Every PUSH carries ``"at": ""``.

These run against faktory_py only (the open-source Faktory has no batches; the cdrx client
has no BATCH at all): the default (strict) server, and one configured
``[batches] policy = "permissive"``, where what pyfaktory users of Faktory Enterprise do —
reopen a committed batch from a producer and push into it — must work, while strict refuses
it with the clear error and only lets the worker process working one of the batch's jobs
reopen it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from pyfaktory import Client, Job, Producer
from pyfaktory.models import Batch, TargetJob
from pyfaktory.util.enums import State
from pyfaktory.util.exceptions import FaktroyWorkProtocolError

from helpers.rawclient import new_jid

#: pyfaktory's heartbeat thread may race a disconnect (see tests/interop/test_real_python_clients.py).
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Exception in thread .*\(_heartbeat\)[\s\S]*Client state is State\.(DISCONNECTED|END) "
    r"while ._beat. is only valid in the states:pytest.PytestUnhandledThreadExceptionWarning")

CLIENT_TIMEOUT = 10


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def connect(stack: ExitStack, url: str, role: str = "producer", wid: str | None = None) -> Client:
    client = Client(faktory_url=url, role=role, worker_id=wid or "pyf-" + new_jid()[:12],
                    beat_period=5, timeout=CLIENT_TIMEOUT)
    stack.callback(close, client)
    assert client.connect() is True
    return client


def close(client: Client) -> None:
    if client.state in (State.IDENTIFIED, State.QUIET, State.TERMINATING):
        client.disconnect()
    elif client.state != State.DISCONNECTED:
        client.sock.close()
        client.state = State.DISCONNECTED


def bulk_body(reply: str) -> str:
    """pyfaktory returns a bulk reply as its raw text: `$<n>\\r\\n<body>` (stripped)."""
    header, _, body = reply.partition("\r\n")
    assert header.startswith("$") and int(header[1:]) == len(body.encode()), reply
    return body


def batch_new(producer: Producer, **fields: Any) -> str:
    fields.setdefault("parent_bid", None)
    fields.setdefault("description", None)
    fields.setdefault("success", None)
    fields.setdefault("complete", None)
    bid = bulk_body(producer.batch_new(Batch(**fields)))
    assert bid.startswith("b-") and len(bid) == 22, bid
    return bid


def status(client: Client, bid: str) -> dict[str, Any]:
    return json.loads(bulk_body(client._batch_status(bid)))


def push(producer: Producer, bid: str, queue: str) -> str:
    job = Job(jobtype="PyfBatchJob", args=[1], queue=queue, custom={"bid": bid})
    assert producer.push(job) is True
    return job.jid


def configured_server(server_factory, policy: str | None):
    server = server_factory(start=False)
    if policy is not None:
        (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
        (server.conf_dir / "conf.d" / "batches.toml").write_text(f'[batches]\npolicy = "{policy}"\n')
    server.start()
    return server


def test_pyfaktory_batch_lifecycle(server_factory, stack: ExitStack) -> None:
    srv = server_factory()
    client = connect(stack, srv.url)
    producer = Producer(client=client)
    worker = connect(stack, srv.url, role="both", wid="pyf-batch-worker")
    bid = batch_new(producer, description="pyfaktory batch",
                    complete=TargetJob(jobtype="PyfDone", args=["done"], queue="pyf-cb"),
                    success=TargetJob(jobtype="PyfOk", args=[], queue="pyf-cb"))
    jids = [push(producer, bid, "pyf-b") for _ in range(3)]
    st = status(client, bid)
    assert (st["bid"], st["description"], st["total"], st["pending"], st["failed"]) == (
        bid, "pyfaktory batch", 3, 3, 0)
    assert (st["complete_st"], st["success_st"]) == ("", "")
    assert "parent_bid" not in st
    assert producer.batch_open(bid) is True  # uncommitted: anyone may open it

    for jid in jids:
        job = worker._fetch(["pyf-b"])
        assert job["jid"] == jid and job["custom"] == {"bid": bid}
        assert worker._ack(jid) is True
    assert status(client, bid)["complete_st"] == ""  # not committed yet
    assert producer.batch_commit(bid) is True
    assert (status(client, bid)["complete_st"], status(client, bid)["success_st"]) == ("1", "")

    done = worker._fetch(["pyf-cb"])
    assert done["jobtype"] == "PyfDone" and done["args"] == ["done"]
    assert len(done["jid"]) == 24  # pyfaktory sent none: the server assigned one
    assert done["custom"] == {"_bid": bid}
    assert worker._ack(done["jid"]) is True
    assert (status(client, bid)["complete_st"], status(client, bid)["success_st"]) == ("2", "1")
    ok = worker._fetch(["pyf-cb"])
    assert ok["jobtype"] == "PyfOk"
    assert worker._ack(ok["jid"]) is True
    assert status(client, bid)["success_st"] == "2"

    with pytest.raises(FaktroyWorkProtocolError, match="No such batch b-nope"):
        producer.batch_open("b-nope")
    with pytest.raises(FaktroyWorkProtocolError, match="No such batch b-nope"):
        client._batch_status("b-nope")


def test_pyfaktory_nested_batches(server_factory, stack: ExitStack) -> None:
    srv = server_factory()
    client = connect(stack, srv.url)
    producer = Producer(client=client)
    worker = connect(stack, srv.url, role="both", wid="pyf-nested-worker")
    parent = batch_new(producer, success=TargetJob(jobtype="ParentOk", args=[], queue="pyf-ncb"))
    child = batch_new(producer, parent_bid=parent, success=TargetJob(jobtype="ChildOk", args=[], queue="pyf-ncb"))
    push(producer, parent, "pyf-n")
    push(producer, child, "pyf-n")
    push(producer, child, "pyf-n")
    for bid in (child, parent):
        assert producer.batch_commit(bid) is True
    assert (status(client, parent)["total"], status(client, child)["total"]) == (1, 2)
    assert status(client, child)["parent_bid"] == parent
    for _ in range(3):
        assert worker._ack(worker._fetch(["pyf-n"])["jid"]) is True
    first = worker._fetch(["pyf-ncb"])
    assert first["jobtype"] == "ChildOk"
    assert status(client, parent)["success_st"] == ""
    assert worker._ack(first["jid"]) is True
    assert worker._fetch(["pyf-ncb"])["jobtype"] == "ParentOk"


@pytest.mark.parametrize("policy", ["strict", "permissive"])
def test_pyfaktory_reopen_from_outside(server_factory, stack: ExitStack, policy: str) -> None:
    """A producer reopens a committed batch and pushes into it (Enterprise allows it)."""
    srv = configured_server(server_factory, None if policy == "strict" else policy)
    client = connect(stack, srv.url)
    producer = Producer(client=client)
    bid = batch_new(producer, success=TargetJob(jobtype="Ok", args=[], queue="pyf-rcb"))
    member = push(producer, bid, "pyf-r")
    assert producer.batch_commit(bid) is True
    if policy == "permissive":
        assert producer.batch_open(bid) is True
        push(producer, bid, "pyf-r")
        assert producer.batch_commit(bid) is True
        assert status(client, bid)["total"] == 2
        return
    rule = f"Batch {bid} is committed: it can only be reopened or added to from within"
    with pytest.raises(FaktroyWorkProtocolError, match=rule):
        producer.batch_open(bid)
    with pytest.raises(FaktroyWorkProtocolError, match=rule):
        push(producer, bid, "pyf-r")
    assert status(client, bid)["total"] == 1
    # from within: the worker process working the member, on another of its connections
    worker = connect(stack, srv.url, role="both", wid="pyf-within")
    assert worker._fetch(["pyf-r"])["jid"] == member
    pool = connect(stack, srv.url, role="both", wid="pyf-within")
    assert Producer(client=pool).batch_open(bid) is True
    push(Producer(client=pool), bid, "pyf-r")
    assert Producer(client=pool).batch_commit(bid) is True
    stranger = connect(stack, srv.url, role="both", wid="pyf-stranger")
    with pytest.raises(FaktroyWorkProtocolError, match="and worker pyf-stranger works none"):
        Producer(client=stranger).batch_open(bid)
    assert status(client, bid)["total"] == 2
