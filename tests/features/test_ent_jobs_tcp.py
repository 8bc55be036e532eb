"""Unique jobs, expiring jobs and job tracking over TCP (protocol/spec.md §9).

Black-box: a real server process and RawClient, exact reply bytes where clients compare
them (`-NOTUNIQUE Job not unique`, the PUSHB map, TRACK GET's JSON), real waiting where
timing is the point (unique_for, scheduled TTL, expiry) with margins of at least 0.5 s.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from helpers.servers import ServerProcess
from helpers.servers import emptied_client as client  # noqa: F401  (fixture: wipes the server first)
from helpers.servers import module_server as server  # fixture: one server for the module
from helpers.jobs import job, push_command
from helpers.rawclient import RawClient, ReplyError, new_jid

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
NOT_UNIQUE = b"-NOTUNIQUE Job not unique\r\n"


@pytest.fixture
def worker(server: ServerProcess) -> Iterator[RawClient]:
    with server.client() as c:
        assert c.handshake(wid=new_jid(), hostname="h", pid=1) == b"OK"
        yield c


def iso(delta: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=delta)).isoformat().replace("+00:00", "Z")


def raw_push(c: RawClient, payload: dict[str, Any]) -> bytes:
    """PUSH and return the raw reply line (so error bytes can be compared exactly)."""
    c.send(push_command(payload) + b"\r\n")
    return c.recv_raw()


def track(c: RawClient, jid: str) -> dict[str, Any]:
    return json.loads(c.command(f"TRACK GET {jid}"))


# --- unique jobs ------------------------------------------------------------------------


def test_duplicate_is_refused_with_notunique(client: RawClient) -> None:
    first = job(args=[1, {"a": 1, "b": 2}], custom={"unique_for": 60})
    assert client.push(first) == b"OK"
    # same jobtype, args (map keys in another order) and queue: a duplicate
    dup = job(args=[1, {"b": 2, "a": 1}], custom={"unique_for": 60})
    assert raw_push(client, dup) == NOT_UNIQUE
    with pytest.raises(ReplyError, match="^NOTUNIQUE Job not unique$"):
        client.push(dup)
    # other args, other queue, other jobtype: not duplicates
    assert client.push(job(args=[2], custom={"unique_for": 60})) == b"OK"
    assert client.push(job(args=[1, {"a": 1, "b": 2}], queue="other", custom={"unique_for": 60})) == b"OK"
    assert client.push(job(args=[1, {"a": 1, "b": 2}], jobtype="Other", custom={"unique_for": 60})) == b"OK"
    # no unique_for: bypasses the lock
    assert client.push(job(args=[1, {"a": 1, "b": 2}])) == b"OK"
    # the owner pushing its own jid again is not a conflict
    assert client.push(first) == b"OK"
    assert client.info()["faktory"]["queues"] == {"default": 5, "other": 1}


def test_pushb_reports_notunique_in_its_map(client: RawClient) -> None:
    a = job(args=["b"], custom={"unique_for": 60})
    dup = job(args=["b"], custom={"unique_for": 60})
    other = job(args=["c"], custom={"unique_for": 60})
    reply = client.json_command("PUSHB", [a, dup, other])
    assert reply == json.dumps({dup["jid"]: "NOTUNIQUE Job not unique"}, separators=(",", ":")).encode()
    assert client.info()["faktory"]["queues"]["default"] == 2


@pytest.mark.parametrize(("custom", "message"), [
    ({"unique_for": "600"}, 'unique_for must be a positive number of seconds: "600"'),
    ({"unique_for": 0}, "unique_for must be a positive number of seconds: 0"),
    ({"unique_for": -5}, "unique_for must be a positive number of seconds: -5"),
    ({"unique_for": [60]}, "unique_for must be a positive number of seconds: [60]"),
    ({"unique_for": 60, "unique_until": "finish"}, 'unique_until must be "success" or "start": "finish"'),
    ({"unique_for": 60, "unique_until": 1}, 'unique_until must be "success" or "start": 1'),
    ({"expires_at": "tomorrow"}, 'expires_at must be an RFC3339 timestamp: "tomorrow"'),
    ({"expires_at": 1700000000}, "expires_at must be an RFC3339 timestamp: 1700000000"),
    ({"expires_in": "1h"}, 'expires_in must be a number of seconds: "1h"'),
])
def test_invalid_enterprise_values(client: RawClient, custom: dict[str, Any], message: str) -> None:
    assert raw_push(client, job(custom=custom)) == f"-ERR {message}\r\n".encode()
    assert client.info()["faktory"]["total_enqueued"] == 0


def test_unique_until_start_releases_at_fetch(client: RawClient, worker: RawClient) -> None:
    custom = {"unique_for": 60, "unique_until": "start"}
    first = job(args=["s"], queue="u1", custom=custom)
    assert client.push(first) == b"OK"
    assert raw_push(client, job(args=["s"], queue="u1", custom=custom)) == NOT_UNIQUE
    assert worker.fetch("u1")["jid"] == first["jid"]
    assert client.push(job(args=["s"], queue="u1", custom=custom)) == b"OK"


def test_unique_until_success_holds_through_retry_and_releases_at_ack(client: RawClient, worker: RawClient) -> None:
    first = job(args=["r"], queue="u2", custom={"unique_for": 60}, retry=1)
    assert client.push(first) == b"OK"
    assert worker.fetch("u2")["jid"] == first["jid"]
    assert raw_push(client, job(args=["r"], queue="u2", custom={"unique_for": 60})) == NOT_UNIQUE
    assert worker.json_command("FAIL", {"jid": first["jid"], "errtype": "E", "message": "m"}) == b"OK"
    assert client.info()["faktory"]["sets"]["retries"] == 1
    assert raw_push(client, job(args=["r"], queue="u2", custom={"unique_for": 60})) == NOT_UNIQUE  # kept while retrying
    assert client.json_command("MUTATE", {"cmd": "requeue", "target": "retries"}) == b"OK"
    assert worker.fetch("u2")["jid"] == first["jid"]  # its own lock does not stop it
    assert worker.json_command("ACK", {"jid": first["jid"]}) == b"OK"
    assert client.push(job(args=["r"], queue="u2", custom={"unique_for": 60})) == b"OK"


def test_dead_job_releases_its_lock(client: RawClient, worker: RawClient) -> None:
    first = job(args=["d"], queue="u3", custom={"unique_for": 60}, retry=-1)
    assert client.push(first) == b"OK"
    assert worker.fetch("u3")["jid"] == first["jid"]
    assert worker.json_command("FAIL", {"jid": first["jid"], "errtype": "E", "message": "m"}) == b"OK"
    assert client.info()["faktory"]["sets"]["dead"] == 1
    assert client.push(job(args=["d"], queue="u3", custom={"unique_for": 60})) == b"OK"


def test_flush_clears_locks(client: RawClient) -> None:
    assert client.push(job(args=["f"], custom={"unique_for": 60})) == b"OK"
    assert client.command("FLUSH") == b"OK"
    assert client.push(job(args=["f"], custom={"unique_for": 60})) == b"OK"


# --- expiring jobs ----------------------------------------------------------------------


def test_expired_jobs_are_skipped_and_counted(client: RawClient, worker: RawClient) -> None:
    """(When a job expires, and the TTLs of unique locks: tests/server/test_timers.py, under MockClock.)"""
    past = job(args=["old"], queue="e1", custom={"expires_at": "2001-02-03T04:05:06Z"})
    past_nano = job(args=["old2"], queue="e1", custom={"expires_at": "2001-02-03T04:05:06.123456789Z"})
    later = job(args=["later"], queue="e1", custom={"expires_at": iso(3600)})
    plain = job(args=["plain"], queue="e1")
    for payload in (past, past_nano, later, plain):
        assert client.push(payload) == b"OK"
    assert client.info()["faktory"]["queues"]["e1"] == 4  # expiry is only checked at FETCH
    got = worker.fetch("e1")
    assert got["jid"] == later["jid"] and got["custom"] == {"expires_at": later["custom"]["expires_at"]}
    assert worker.fetch("e1")["jid"] == plain["jid"]
    info = client.info()["faktory"]
    assert info["queues"]["e1"] == 0
    assert info["total_expired"] == 2 and type(info["total_expired"]) is int


def test_expires_in_becomes_expires_at(client: RawClient, worker: RawClient) -> None:
    payload = job(queue="e2", custom={"expires_in": 600, "keep": "me"})
    before = time.time()
    assert client.push(payload) == b"OK"
    got = worker.fetch("e2")
    assert set(got["custom"]) == {"keep", "expires_at"}
    assert RFC3339.fullmatch(got["custom"]["expires_at"])
    expires = datetime.fromisoformat(got["custom"]["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + 599 <= expires <= time.time() + 601


# --- tracking ---------------------------------------------------------------------------


def test_track_get_unknown_exact_bytes(client: RawClient) -> None:
    client.send(b"TRACK GET nosuchjob123\r\n")
    body = b'{"jid":"nosuchjob123","state":"unknown","updated_at":""}'
    assert client.recv_raw() == b"$%d\r\n%s\r\n" % (len(body), body)


def test_untracked_job_is_unknown(client: RawClient) -> None:
    payload = job()
    assert client.push(payload) == b"OK"
    assert track(client, payload["jid"]) == {"jid": payload["jid"], "state": "unknown", "updated_at": ""}


def test_track_lifecycle_and_progress(client: RawClient, worker: RawClient) -> None:
    payload = job(queue="t1", custom={"track": 1}, reserve_for=60)
    jid = payload["jid"]
    assert client.push(payload) == b"OK"
    progress = track(client, jid)
    assert list(progress) == ["jid", "state", "updated_at"]
    assert progress["state"] == "enqueued" and RFC3339.fullmatch(progress["updated_at"])
    # SET on an enqueued job: +OK, state stays enqueued
    assert client.json_command("TRACK SET", {"jid": jid, "percent": 10, "desc": "queued"}) == b"OK"
    assert track(client, jid) | {"updated_at": ""} == {
        "jid": jid, "state": "enqueued", "updated_at": "", "percent": 10, "desc": "queued"}
    assert worker.fetch("t1")["jid"] == jid
    assert track(client, jid)["state"] == "working"
    # desc may be null (left as it was); reserve_until extends the reservation
    assert worker.json_command("TRACK SET", {"jid": jid, "percent": 33, "desc": None,
                                             "reserve_until": iso(3600)}) == b"OK"
    progress = track(client, jid)
    assert (progress["state"], progress["percent"], progress["desc"]) == ("working", 33, "queued")
    assert worker.json_command("ACK", {"jid": jid}) == b"OK"
    progress = track(client, jid)
    assert (progress["state"], progress["percent"], progress["desc"]) == ("success", 33, "queued")
    # SET after the job finished is accepted
    assert client.json_command("TRACK SET", {"jid": jid, "percent": 100, "desc": "done"}) == b"OK"
    progress = track(client, jid)
    assert (progress["state"], progress["percent"], progress["desc"]) == ("success", 100, "done")


def test_track_failed_and_dead(client: RawClient, worker: RawClient) -> None:
    retried = job(queue="t2", custom={"track": 1}, retry=2)
    killed = job(queue="t2", custom={"track": 1}, retry=-1)
    for payload in (retried, killed):
        assert client.push(payload) == b"OK"
        assert worker.fetch("t2")["jid"] == payload["jid"]
        assert worker.json_command("FAIL", {"jid": payload["jid"], "errtype": "E", "message": "m"}) == b"OK"
    assert track(client, retried["jid"])["state"] == "failed"
    assert track(client, killed["jid"])["state"] == "dead"


def test_expired_tracked_job_is_dead(client: RawClient, worker: RawClient) -> None:
    gone = job(queue="t3", custom={"track": 1, "expires_at": "2001-01-01T00:00:00Z"})
    plain = job(queue="t3")
    assert client.push(gone) == b"OK" and client.push(plain) == b"OK"
    assert worker.fetch("t3")["jid"] == plain["jid"]
    assert track(client, gone["jid"])["state"] == "dead"


def test_info_says_enterprise(client: RawClient) -> None:
    assert client.info()["server"]["description"] == "Faktory Enterprise"


# --- durability -------------------------------------------------------------------------


def test_state_survives_restart(server_factory) -> None:
    srv = server_factory()
    with srv.client() as c:
        assert c.handshake() == b"OK"
        locked = job(args=["keep"], custom={"unique_for": 3600, "track": 1})
        assert c.push(locked) == b"OK"
        assert c.json_command("TRACK SET", {"jid": locked["jid"], "percent": 5}) == b"OK"
        assert c.push(job(custom={"expires_at": "2001-01-01T00:00:00Z"})) == b"OK"
        assert c.push(job(queue="other")) == b"OK"
    with srv.client() as w:
        assert w.handshake(wid=new_jid()) == b"OK"
        assert w.fetch("other")
    with srv.client() as w:  # the expired job sits behind `locked`: drain `default` once
        assert w.handshake(wid=new_jid()) == b"OK"
        assert w.fetch("default")["jid"] == locked["jid"]
        assert w.command("FETCH default") is None  # drops the expired job (after the 2 s wait)
    assert srv.stop() == 0
    srv.start()
    with srv.client() as c:
        assert c.handshake() == b"OK"
        assert raw_push(c, job(args=["keep"], custom={"unique_for": 3600})) == NOT_UNIQUE
        progress = track(c, locked["jid"])
        assert (progress["state"], progress["percent"]) == ("working", 5)
        assert c.info()["faktory"]["total_expired"] == 1
