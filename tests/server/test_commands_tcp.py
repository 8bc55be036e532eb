"""Command behaviour over TCP, mirroring Faktory's own command tests (protocol/spec.md §3).

Every test talks to a real server process through RawClient; most get a fresh server so
INFO counts start from zero.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from helpers.servers import emptied_client as client  # noqa: F401  (fixture: wipes the server first)
from helpers.servers import module_server as server  # fixture: one server for the module
from helpers.polling import eventually, fetches_blocked
from helpers.rawclient import RawClient, ReplyError, new_jid

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


def job(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"jid": new_jid(), "jobtype": "Thing", "args": [1, "two"]}
    base.update(fields)
    return base


def push(c: RawClient, **fields: Any) -> str:
    payload = job(**fields)
    assert c.push(payload) == b"OK"
    return payload["jid"]


def iso(delta: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=delta)).isoformat().replace("+00:00", "Z")


def faktory(c: RawClient) -> dict[str, Any]:
    return c.info()["faktory"]


def worker(server, wid: str) -> RawClient:
    c = server.client()
    assert c.handshake(wid=wid, hostname="box", pid=4242, labels=["test"]) == b"OK"
    return c


def exact(c: RawClient, line: bytes, expected: bytes) -> None:
    c.send(line)
    assert c.recv_raw(len(expected)) == expected


# --- server_test.go TestServerStart ----------------------------------------------------

def test_server_start_sequence_with_bare_lf(server) -> None:
    with server.client() as c:
        hi = c.recv_raw(len(b'+HI {"v":2}\r\n'))
        assert hi == b'+HI {"v":2}\r\n'
        exact(c, b'HELLO {"wid":"78629a0f5f3f164f","hostname":"box","pid":1,"labels":["blue","seven"],"v":2}\n',
              b"+OK\r\n")
        exact(c, b"CMD foo\n", b"-ERR unknown command CMD\r\n")
        exact(c, b"QUEUE REMOVE frobnoz\n", b"+OK\r\n")
        exact(c, b'PUSH {"jid":"12345678901234567890abcd","jobtype":"thing","args":[]}\n', b"+OK\r\n")
        c.send(b"FETCH default some other\n")
        body = c.reply()
        assert b'"jid":"12345678901234567890abcd"' in body
        assert b'"retry":' in body
        exact(c, b'FAIL {"jid":"12345678901234567890abcd","message":"bad","errtype":"E","backtrace":["a","b"]}\n',
              b"+OK\r\n")
        exact(c, b"ACK\n", b"-ERR internal error\r\n")
        exact(c, b'ACK {"jid":"12345678901234567890abcd"}\n', b"+OK\r\n")
        c.send(b"INFO\n")
        info = json.loads(c.reply())
        assert len(info) == 4
        exact(c, b'BEAT {"wid":"78629a0f5f3f164f"}\n', b"+OK\r\n")
        exact(c, b"QUEUE REMOVE default\n", b"+OK\r\n")
        exact(c, b"FLUSH\n", b"+OK\r\n")
        c.send(b"END\n")
        assert c.recv_raw() == b""


def test_end_closes_without_reply(client: RawClient) -> None:
    client.send(b"END\r\nINFO\r\n")
    assert client.recv_raw() == b""


def test_end_with_argument_still_closes(client: RawClient) -> None:
    client.send(b"END now\r\n")
    assert client.recv_raw() == b""


# --- commands_test.go: QUEUE and PUSHB --------------------------------------------------

def test_queue_pause_resume_remove_replies(client: RawClient) -> None:
    push(client, queue="alpha")
    for line in ("QUEUE PAUSE *", "QUEUE RESUME *", "QUEUE PAUSE alpha beta", "QUEUE RESUME alpha beta",
                 "QUEUE pause alpha", "QUEUE Resume alpha", "QUEUE PAUSE nosuch", "QUEUE REMOVE nosuch",
                 "QUEUE REMOVE *"):
        assert client.command(line) == b"OK", line
    assert faktory(client)["queues"] == {}


def test_queue_latency_exact(client: RawClient) -> None:
    exact(client, b"QUEUE LATENCY default\r\n", b'$13\r\n{"default":0}\r\n')
    push(client)
    time.sleep(0.01)
    latencies = json.loads(client.command("QUEUE LATENCY default unknown"))
    assert list(latencies) == ["default", "unknown"]
    assert isinstance(latencies["default"], float) and 0 < latencies["default"] < 5
    assert latencies["unknown"] == 0
    assert re.fullmatch(rb'\{"default":0\.\d+,"unknown":0\}', client.command("QUEUE latency default unknown"))


def test_queue_latency_without_names(client: RawClient) -> None:
    assert json.loads(client.command("QUEUE LATENCY")) == {}


def test_pushb_all_good(client: RawClient) -> None:
    jobs = [job(jid=f"pushb-job-{i:06d}") for i in range(10)]
    exact(client, f"PUSHB {json.dumps(jobs, separators=(',', ':'))}\r\n".encode(), b"$2\r\n{}\r\n")
    assert faktory(client)["queues"]["default"] == 10
    fetched = [client.fetch("default")["jid"] for _ in range(10)]
    assert fetched == [j["jid"] for j in jobs]


def test_pushb_one_bad_jobtype(client: RawClient) -> None:
    jobs = [job(jid=f"pb{i:014d}") for i in range(10)]
    jobs[0]["jobtype"] = ""
    bad = jobs[0]["jid"]
    assert len(bad) == 16
    expected = b'$57\r\n{"' + bad.encode() + b'":"jobs must have a jobtype parameter"}\r\n'
    exact(client, f"PUSHB {json.dumps(jobs)}\r\n".encode(), expected)
    assert faktory(client)["queues"]["default"] == 9


def test_pushb_errors_keyed_by_jid(client: RawClient) -> None:
    jobs = [job(), job(jid="short"), job(args=None), job(reserve_for=90000), job(queue="c&c")]
    result = json.loads(client.command(f"PUSHB {json.dumps(jobs)}"))
    assert result == {
        "short": "jobs must have a reasonable jid parameter",
        jobs[2]["jid"]: "jobs must have an args parameter",
        jobs[3]["jid"]: "jobs cannot be reserved for more than one day",
        jobs[4]["jid"]: 'cannot get "c&c" queue: queue names must match \\A[a-zA-Z0-9._-]+\\z',
    }
    assert faktory(client)["total_enqueued"] == 1


def test_pushb_empty_array(client: RawClient) -> None:
    exact(client, b"PUSHB []\r\n", b"$2\r\n{}\r\n")


def test_queue_remove_drops_queue_and_jobs(client: RawClient) -> None:
    push(client, queue="doomed")
    push(client, queue="doomed")
    push(client, queue="kept")
    assert faktory(client)["queues"] == {"doomed": 2, "kept": 1}
    assert client.command("QUEUE REMOVE doomed") == b"OK"
    info = faktory(client)
    assert info["queues"] == {"kept": 1}
    assert info["total_queues"] == 1 and info["total_enqueued"] == 1
    assert client.command("FETCH doomed kept") is not None
    assert "doomed" not in faktory(client)["queues"]


def test_drained_queue_stays_listed(client: RawClient) -> None:
    jid = push(client, queue="drained")
    assert client.fetch("drained")["jid"] == jid
    assert faktory(client)["queues"] == {"drained": 0}


# --- manager_test.go: push and fetch -------------------------------------------------------

def test_push_sets_enqueued_at_and_defaults(client: RawClient) -> None:
    payload = {"jid": "defaults-0001", "jobtype": "Thing", "args": [], "priority": 5, "blargh": True}
    assert client.push(payload) == b"OK"
    fetched = client.fetch("default")
    assert fetched["jid"] == "defaults-0001"
    assert fetched["queue"] == "default"
    assert fetched["retry"] == 25
    assert RFC3339.fullmatch(fetched["enqueued_at"])
    assert RFC3339.fullmatch(fetched["created_at"])
    assert "priority" not in fetched and "blargh" not in fetched
    assert "at" not in fetched and "failure" not in fetched


def test_fetched_job_is_compact_and_ordered(client: RawClient) -> None:
    assert client.push({"jid": "order-00001", "jobtype": "Thing", "args": [123],
                        "created_at": "2024-01-01T00:00:00Z", "reserve_for": 600,
                        "custom": {"k": "v"}, "backtrace": 3, "retry": 3}) == b"OK"
    body = client.command("FETCH default")
    assert b" " not in body
    assert list(json.loads(body)) == ["retry", "custom", "jid", "queue", "jobtype", "created_at",
                                      "enqueued_at", "args", "reserve_for", "backtrace"]
    assert body.startswith(b'{"retry":3,"custom":{"k":"v"},"jid":"order-00001","queue":"default",'
                           b'"jobtype":"Thing","created_at":"2024-01-01T00:00:00Z","enqueued_at":"')


def test_future_at_is_scheduled_without_enqueued_at(client: RawClient) -> None:
    jid = push(client, at=iso(3600))
    info = faktory(client)
    assert info["sets"]["scheduled"] == 1
    assert info["tasks"]["Scheduled"]["size"] == 1
    assert info["total_enqueued"] == 0
    # requeue keeps the payload as stored (no enqueued_at refresh), so it shows the scheduled form
    assert client.json_command("MUTATE", {"cmd": "requeue", "target": "scheduled", "filter": {"jids": [jid]}}) == b"OK"
    fetched = client.fetch("default")
    assert fetched["jid"] == jid
    assert "enqueued_at" not in fetched
    assert fetched["at"]


def test_scheduled_job_becomes_fetchable_when_due(client: RawClient) -> None:
    jid = push(client, at=iso(1.0))
    assert faktory(client)["sets"]["scheduled"] == 1
    start = time.monotonic()
    fetched = None
    while fetched is None and time.monotonic() - start < 8:
        fetched = client.fetch("default")  # blocks up to 2 s each
    assert fetched is not None and fetched["jid"] == jid
    assert RFC3339.fullmatch(fetched["enqueued_at"])
    assert faktory(client)["sets"]["scheduled"] == 0


@pytest.mark.parametrize("at", ["2001-02-03T04:05:06Z", "2001-02-03T04:05:06.123456789+02:00", ""])
def test_past_or_empty_at_is_enqueued(client: RawClient, at: str) -> None:
    jid = push(client, at=at)
    info = faktory(client)
    assert info["sets"]["scheduled"] == 0 and info["queues"] == {"default": 1}
    fetched = client.fetch("default")
    assert fetched["jid"] == jid and RFC3339.fullmatch(fetched["enqueued_at"])
    if at:
        assert fetched["at"] == at
    else:
        assert "at" not in fetched


def test_fetch_order_across_queues_and_fifo(client: RawClient) -> None:
    low = [push(client, queue="low") for _ in range(2)]
    high = [push(client, queue="high") for _ in range(3)]
    order = [client.fetch("high", "low")["jid"] for _ in range(5)]
    assert order == high + low
    more = [push(client, queue="q.1-x_y") for _ in range(5)]
    assert [client.fetch("q.1-x_y")["jid"] for _ in range(5)] == more


def test_fetch_skips_missing_and_empty_queues(client: RawClient) -> None:
    jid = push(client, queue="third")
    assert client.fetch("nosuch", "empty", "third")["jid"] == jid


def test_blocking_fetch_wakes_on_push_from_other_connection(server, client: RawClient) -> None:
    """The PUSH reaches a FETCH already blocked (the server says so), which answers with it
    instead of timing out with $-1. (When, exactly: test_timers.py under MockClock.)"""
    jid = new_jid()
    client.send(b"FETCH first later\r\n")
    with server.client() as other:
        assert other.handshake() == b"OK"
        fetches_blocked(other.info, 1)
        assert other.push(job(jid=jid, queue="later")) == b"OK"
    fetched = client.reply()
    assert fetched is not None and json.loads(fetched)["jid"] == jid


def test_paused_queue_is_skipped_and_resume_restores(client: RawClient) -> None:
    paused = push(client, queue="paused")
    open_ = push(client, queue="open")
    assert client.command("QUEUE PAUSE paused") == b"OK"
    assert client.fetch("paused", "open")["jid"] == open_
    assert faktory(client)["queues"]["paused"] == 1
    start = time.monotonic()
    assert client.fetch("paused") is None
    assert time.monotonic() - start >= 1.5
    assert client.push(job(queue="paused")) == b"OK"  # pushing to a paused queue still works
    assert client.command("QUEUE RESUME paused") == b"OK"
    assert client.fetch("paused")["jid"] == paused


def test_pause_star_pauses_known_queues(client: RawClient) -> None:
    a = push(client, queue="a")
    push(client, queue="b")
    assert client.command("QUEUE PAUSE *") == b"OK"
    c = push(client, queue="c")  # created after the pause: not paused
    assert client.fetch("a", "b", "c")["jid"] == c
    assert client.command("QUEUE RESUME *") == b"OK"
    assert client.fetch("a", "b", "c")["jid"] == a


# --- working_test.go / retry_test.go --------------------------------------------------------

def test_ack_unknown_jid_is_ok_and_counts_nothing(client: RawClient) -> None:
    assert client.json_command("ACK", {"jid": new_jid()}) == b"OK"
    assert client.json_command("ACK", {"jid": "x"}) == b"OK"
    info = faktory(client)
    assert info["total_processed"] == 0 and info["total_failures"] == 0


def test_ack_counts_processed_once(client: RawClient) -> None:
    jid = push(client)
    client.fetch("default")
    assert faktory(client)["sets"]["working"] == 1
    assert faktory(client)["tasks"]["Busy"]["size"] == 1
    assert client.json_command("ACK", {"jid": jid}) == b"OK"
    assert client.json_command("ACK", {"jid": jid}) == b"OK"
    info = faktory(client)
    assert info["total_processed"] == 1 and info["total_failures"] == 0
    assert info["sets"]["working"] == 0


def fetch_and_fail(c: RawClient, queue: str = "default", **failure: Any) -> dict[str, Any]:
    fetched = c.fetch(queue)
    assert fetched is not None
    assert c.json_command("FAIL", {"jid": fetched["jid"], **failure}) == b"OK"
    return fetched


def test_retry_zero_is_dropped_but_counted(client: RawClient) -> None:
    push(client, retry=0)
    fetch_and_fail(client, errtype="E", message="m")
    info = faktory(client)
    assert info["sets"] == {"dead": 0, "retries": 0, "scheduled": 0, "working": 0}
    assert info["total_processed"] == 1 and info["total_failures"] == 1


def test_negative_retry_dies_on_first_failure(client: RawClient) -> None:
    jid = push(client, retry=-1)
    fetch_and_fail(client, errtype="E", message="m")
    info = faktory(client)
    assert info["sets"]["dead"] == 1 and info["sets"]["retries"] == 0
    assert info["tasks"]["Dead"]["size"] == 1
    assert client.json_command("MUTATE", {"cmd": "requeue", "target": "dead", "filter": {"jids": [jid]}}) == b"OK"
    failure = client.fetch("default")["failure"]
    assert failure["retry_count"] == 0 and failure["remaining"] == -1
    assert "next_at" not in failure


def test_retry_one_then_dead_with_failure_block(client: RawClient) -> None:
    jid = push(client, retry=1)
    before = time.time()
    fetch_and_fail(client, errtype="  RuntimeError ", message=" boom ")
    info = faktory(client)
    assert info["sets"]["retries"] == 1 and info["sets"]["dead"] == 0
    assert info["tasks"]["Retries"]["size"] == 1
    assert info["total_processed"] == 1 and info["total_failures"] == 1

    assert client.json_command("MUTATE", {"cmd": "requeue", "target": "retries", "filter": {"jids": [jid]}}) == b"OK"
    assert faktory(client)["sets"]["retries"] == 0
    retried = client.fetch("default")
    failure = retried["failure"]
    assert set(failure) == {"retry_count", "remaining", "failed_at", "next_at", "message", "errtype"}
    assert failure["retry_count"] == 0 and failure["remaining"] == 1
    assert failure["errtype"] == "RuntimeError" and failure["message"] == "boom"
    assert "backtrace" not in failure
    first_failed_at = failure["failed_at"]
    assert RFC3339.fullmatch(first_failed_at) and RFC3339.fullmatch(failure["next_at"])
    next_at = datetime.fromisoformat(failure["next_at"].replace("Z", "+00:00")).timestamp()
    assert before + 14 <= next_at <= time.time() + 45  # first retry: 15..44 s

    assert client.json_command("FAIL", {"jid": jid, "errtype": "Second", "message": "again",
                                        "backtrace": ["l1", "l2"]}) == b"OK"
    info = faktory(client)
    assert info["sets"]["retries"] == 0 and info["sets"]["dead"] == 1
    assert info["total_processed"] == 2 and info["total_failures"] == 2
    assert client.json_command("MUTATE", {"cmd": "requeue", "target": "dead", "filter": {"jids": [jid]}}) == b"OK"
    failure = client.fetch("default")["failure"]
    assert failure["retry_count"] == 1 and failure["remaining"] == 0
    assert failure["failed_at"] == first_failed_at
    assert failure["errtype"] == "Second" and failure["message"] == "again"
    assert failure["backtrace"] == ["l1", "l2"]


def test_fail_defaults_and_backtrace_truncation(client: RawClient) -> None:
    jid = push(client, retry=3)
    fetch_and_fail(client)  # no errtype, no message (cdrx)
    assert client.json_command("MUTATE", {"cmd": "requeue", "target": "retries", "filter": {}}) == b"OK"
    fetched = client.fetch("default")
    assert fetched["jid"] == jid
    assert fetched["failure"]["errtype"] == "unknown"
    assert fetched["failure"]["message"] == "unknown"
    assert "backtrace" not in fetched["failure"]
    assert client.json_command("FAIL", {"jid": jid, "errtype": "E" * 150, "message": "m" * 1500,
                                        "backtrace": [f"line {i}" for i in range(80)]}) == b"OK"
    assert client.json_command("MUTATE", {"cmd": "requeue", "target": "retries"}) == b"OK"
    failure = client.fetch("default")["failure"]
    assert failure["errtype"] == "E" * 100 and failure["message"] == "m" * 1000
    assert failure["backtrace"] == [f"line {i}" for i in range(50)]
    assert failure["retry_count"] == 1 and failure["remaining"] == 2


def test_fail_after_ack_is_not_found(client: RawClient) -> None:
    jid = push(client)
    client.fetch("default")
    assert client.json_command("ACK", {"jid": jid}) == b"OK"
    with pytest.raises(ReplyError, match=f"^ERR Job not found {jid}$"):
        client.json_command("FAIL", {"jid": jid})


def test_fail_json_with_spaces_and_null_backtrace(client: RawClient) -> None:
    push(client)
    fetched = client.fetch("default")
    line = f'FAIL {{"jid": "{fetched["jid"]}", "errtype": "E", "message": "m", "backtrace": null}}'
    assert client.command(line) == b"OK"
    assert faktory(client)["sets"]["retries"] == 1


# --- mutate_test.go ------------------------------------------------------------------------

def make_retries(c: RawClient, count: int, **fields: Any) -> list[str]:
    jids = [push(c, queue="mut", **fields) for _ in range(count)]
    for _ in jids:
        fetch_and_fail(c, "mut", errtype="E", message="m")
    return jids


def mutate(c: RawClient, **request: Any) -> Any:
    return c.json_command("MUTATE", request)


def test_mutate_clear_retries_and_dead(client: RawClient) -> None:
    make_retries(client, 3)
    assert faktory(client)["sets"]["retries"] == 3
    assert mutate(client, cmd="clear", target="retries") == b"OK"
    assert faktory(client)["sets"]["retries"] == 0
    make_retries(client, 2, retry=-1)
    assert faktory(client)["sets"]["dead"] == 2
    assert mutate(client, cmd="clear", target="dead") == b"OK"
    assert faktory(client)["sets"]["dead"] == 0


def test_mutate_discard_without_filter_clears(client: RawClient) -> None:
    make_retries(client, 2)
    assert mutate(client, cmd="discard", target="retries") == b"OK"
    assert faktory(client)["sets"]["retries"] == 0


def test_mutate_scheduled_counted_and_discarded_by_glob(client: RawClient) -> None:
    keep = push(client, at=iso(3600), args=["uid:1234"])
    gone = push(client, at=iso(3600), args=["uid:67123", "x"], jobtype="Purge")
    other = push(client, at=iso(3600), args=["uid:67123"], jobtype="Other")
    assert faktory(client)["sets"]["scheduled"] == 3
    assert mutate(client, cmd="discard", target="scheduled",
                  filter={"jobtype": "Purge", "regexp": "*uid:67123*"}) == b"OK"
    assert faktory(client)["sets"]["scheduled"] == 2
    assert mutate(client, cmd="requeue", target="scheduled", filter={}) == b"OK"
    remaining = {client.fetch("default")["jid"] for _ in range(2)}
    assert remaining == {keep, other} and gone not in remaining


def test_mutate_glob_matches_raw_payload(client: RawClient) -> None:
    fizz = push(client, at=iso(3600), args=["fizz"])
    push(client, at=iso(3600), args=["buzz"])
    assert mutate(client, cmd="kill", target="scheduled", filter={"regexp": r'*\"args\":\[\"fizz\"\]*'}) == b"OK"
    info = faktory(client)
    assert info["sets"]["scheduled"] == 1 and info["sets"]["dead"] == 1
    assert mutate(client, cmd="requeue", target="dead", filter={"jids": [fizz]}) == b"OK"
    assert client.fetch("default")["jid"] == fizz


def test_mutate_kill_by_jobtype_moves_to_dead(client: RawClient) -> None:
    make_retries(client, 2, jobtype="Killme")
    keep = make_retries(client, 1, jobtype="Keepme")
    assert mutate(client, cmd="kill", target="retries", filter={"jobtype": "Killme"}) == b"OK"
    info = faktory(client)
    assert info["sets"]["retries"] == 1 and info["sets"]["dead"] == 2
    assert mutate(client, cmd="requeue", target="retries", filter={"jobtype": "Keepme"}) == b"OK"
    assert client.fetch("mut")["jid"] == keep[0]


def test_mutate_kill_with_empty_target_is_error(client: RawClient) -> None:
    make_retries(client, 1)
    with pytest.raises(ReplyError, match="^ERR invalid target for mutation command$"):
        mutate(client, cmd="kill", target="", filter={"jobtype": "Thing"})
    assert faktory(client)["sets"]["retries"] == 1


def test_mutate_requeue_by_jid(client: RawClient) -> None:
    jids = make_retries(client, 3)
    assert mutate(client, cmd="requeue", target="retries", filter={"jids": [jids[1]]}) == b"OK"
    info = faktory(client)
    assert info["sets"]["retries"] == 2 and info["queues"]["mut"] == 1
    assert client.fetch("mut")["jid"] == jids[1]


def test_mutate_jids_override_jobtype_and_regexp(client: RawClient) -> None:
    jids = make_retries(client, 3, jobtype="A")
    assert mutate(client, cmd="discard", target="retries",
                  filter={"jids": [jids[0], jids[2]], "jobtype": "nomatch", "regexp": "*nomatch*"}) == b"OK"
    assert faktory(client)["sets"]["retries"] == 1
    assert mutate(client, cmd="requeue", target="retries") == b"OK"
    assert client.fetch("mut")["jid"] == jids[1]


def test_mutate_json_with_spaces_is_accepted(client: RawClient) -> None:
    make_retries(client, 1)
    assert client.command('MUTATE {"cmd": "discard", "target": "retries", "filter": {}}') == b"OK"
    assert faktory(client)["sets"]["retries"] == 0


def test_mutate_requeue_creates_queue(client: RawClient) -> None:
    make_retries(client, 1)
    assert client.command("QUEUE REMOVE mut") == b"OK"
    assert "mut" not in faktory(client)["queues"]
    assert mutate(client, cmd="requeue", target="retries", filter={}) == b"OK"
    assert faktory(client)["queues"] == {"mut": 1}


# --- INFO ---------------------------------------------------------------------------

INT_KEYS = {
    "faktory": ["total_failures", "total_processed", "total_enqueued", "total_queues", "total_expired"],
    "server": ["uptime", "connections", "command_count", "used_memory_mb", "fetches_waiting"],
}


def test_info_shape_and_types(server_factory) -> None:
    server = server_factory()
    client = server.client()
    assert client.handshake() == b"OK"
    push(client, queue="shape")
    body = client.command("INFO")
    info = json.loads(body)
    assert list(info) == ["now", "server_utc_time", "faktory", "server"]
    assert RFC3339.fullmatch(info["now"])
    assert re.fullmatch(r"\d\d:\d\d:\d\d UTC", info["server_utc_time"])
    for section, keys in INT_KEYS.items():
        for key in keys:
            value = info[section][key]
            assert type(value) is int and value >= 0, (section, key, value)
    f = info["faktory"]
    assert f["queues"] == {"shape": 1}
    assert set(f["sets"]) == {"dead", "retries", "scheduled", "working"}
    assert all(type(v) is int for v in f["sets"].values())
    assert set(f["tasks"]) == {"Busy", "Dead", "Retries", "Scheduled", "Workers"}
    for name in ("Busy", "Workers"):
        assert set(f["tasks"][name]) == {"reaped", "size"}
        assert all(type(v) is int for v in f["tasks"][name].values())
    for name in ("Dead", "Retries", "Scheduled"):
        task = f["tasks"][name]
        assert set(task) == {"cycles", "enqueued", "size", "wall_time_sec"}
        assert type(task["cycles"]) is int and type(task["enqueued"]) is int and type(task["size"]) is int
        assert isinstance(task["wall_time_sec"], (int, float))
    s = info["server"]
    assert s["description"] == "Faktory Enterprise"  # the Enterprise features are built in
    assert re.fullmatch(r"1\.(\d+)\.\d+", s["faktory_version"])
    assert int(s["faktory_version"].split(".")[1]) >= 8
    assert s["uptime"] > 0 and s["connections"] >= 1 and s["command_count"] >= 2


def test_info_counts_connections_and_commands(server_factory) -> None:
    server = server_factory()
    client = server.client()
    assert client.handshake() == b"OK"
    before = client.info()["server"]
    with server.client() as other:
        assert other.handshake() == b"OK"
        during = client.info()["server"]
        assert during["connections"] == before["connections"] + 1
        assert during["command_count"] > before["command_count"]


def test_info_workers_counts_distinct_wids(server_factory) -> None:
    server = server_factory()
    client = server.client()
    assert client.handshake() == b"OK"
    a1, a2, b = worker(server, "wid-a"), worker(server, "wid-a"), worker(server, "wid-b")
    try:
        open_before = client.info()["server"]["connections"]
        tasks = faktory(client)["tasks"]
        assert tasks["Workers"]["size"] == 2
        a1.close()
        # the server has handled the close (connections drops in the same step that
        # unregisters the connection from its wid), and wid-a lives on in a2
        eventually(lambda: client.info()["server"]["connections"] == open_before - 1, 5,
                   "the server to handle a1's close", interval=0.02)
        assert faktory(client)["tasks"]["Workers"]["size"] == 2
        b.close()
        eventually(lambda: faktory(client)["tasks"]["Workers"]["size"] == 1, 5, "wid-b to go away")
        assert a2.command('BEAT {"wid":"wid-a"}') == b"OK"
    finally:
        for c in (a1, a2, b):
            c.close()


def test_info_sets_are_synchronous(client: RawClient) -> None:
    push(client, at=iso(3600))
    assert faktory(client)["sets"]["scheduled"] == 1
    jid = push(client)
    assert faktory(client)["total_enqueued"] == 1
    client.fetch("default")
    assert faktory(client)["sets"]["working"] == 1
    assert client.json_command("FAIL", {"jid": jid}) == b"OK"
    f = faktory(client)
    assert f["sets"] == {"dead": 0, "retries": 1, "scheduled": 1, "working": 0}
    assert f["tasks"]["Retries"]["size"] == 1 and f["tasks"]["Busy"]["size"] == 0
    assert mutate(client, cmd="kill", target="retries", filter={"jids": [jid]}) == b"OK"
    f = faktory(client)
    assert f["sets"] == {"dead": 1, "retries": 0, "scheduled": 1, "working": 0}
    assert f["tasks"]["Dead"]["size"] == 1 and f["tasks"]["Scheduled"]["size"] == 1


def test_flush_wipes_data_but_keeps_queue_names(client: RawClient) -> None:
    push(client, queue="kept")
    push(client, at=iso(3600))
    make_retries(client, 1)
    assert client.command("FLUSH") == b"OK"
    f = faktory(client)
    assert f["sets"] == {"dead": 0, "retries": 0, "scheduled": 0, "working": 0}
    assert f["total_processed"] == 0 and f["total_failures"] == 0
    assert f["total_enqueued"] == 0
    assert f["queues"].get("kept") == 0


# --- BEAT and worker states ------------------------------------------------------------------

def test_beat_states(server) -> None:
    with worker(server, "beat-wid") as w:
        assert w.command('BEAT {"wid":"beat-wid","rss_kb":1234}') == b"OK"
        assert w.command('BEAT {"wid":"beat-wid","current_state":""}') == b"OK"
        assert w.command('BEAT {"wid":"beat-wid","current_state":"running"}') == b"OK"
        exact(w, b'BEAT {"wid":"beat-wid","current_state":"quiet"}\r\n', b'$17\r\n{"state":"quiet"}\r\n')
        exact(w, b'BEAT {"wid":"beat-wid"}\r\n', b'$17\r\n{"state":"quiet"}\r\n')
        exact(w, b'BEAT {"wid":"beat-wid","current_state":"running"}\r\n', b'$17\r\n{"state":"quiet"}\r\n')
        exact(w, b'BEAT {"wid":"beat-wid","current_state":"terminate"}\r\n', b'$21\r\n{"state":"terminate"}\r\n')
        exact(w, b'BEAT {"wid":"beat-wid","current_state":"quiet"}\r\n', b'$21\r\n{"state":"terminate"}\r\n')
        exact(w, b'BEAT {"wid":"beat-wid","current_state":""}\r\n', b'$21\r\n{"state":"terminate"}\r\n')


def test_beat_terminate_directly(server) -> None:
    with worker(server, "term-wid") as w:
        exact(w, b'BEAT {"wid":"term-wid","current_state":"terminate"}\r\n', b'$21\r\n{"state":"terminate"}\r\n')


def test_quiet_state_is_shared_by_connections_of_a_wid(server, client: RawClient) -> None:
    push(client)
    with worker(server, "shared-wid") as first, worker(server, "shared-wid") as second:
        exact(first, b'BEAT {"wid":"shared-wid","current_state":"quiet"}\r\n', b'$17\r\n{"state":"quiet"}\r\n')
        exact(second, b'BEAT {"wid":"shared-wid"}\r\n', b'$17\r\n{"state":"quiet"}\r\n')
        start = time.monotonic()
        second.send(b"FETCH default\r\n")
        assert second.recv_raw(5) == b"$-1\r\n"
        assert time.monotonic() - start >= 1.5
        assert faktory(client)["queues"]["default"] == 1
        # a producer connection (no wid) still fetches
        assert client.fetch("default") is not None


def test_beat_from_other_connection_for_registered_wid(server_factory) -> None:
    server = server_factory()
    client = server.client()
    assert client.handshake() == b"OK"
    with worker(server, "remote-wid"):
        assert client.command('BEAT {"wid":"remote-wid"}') == b"OK"
    eventually(lambda: faktory(client)["tasks"]["Workers"]["size"] == 0, 5, "remote-wid to go away")
    with pytest.raises(ReplyError, match="^ERR unknown worker remote-wid$"):
        client.command('BEAT {"wid":"remote-wid"}')


def test_worker_fetch_ack_round_trip(server, client: RawClient) -> None:
    jid = push(client, args=[{"b": 1, "a": [1, 2]}])
    with worker(server, "rt-wid") as w:
        fetched = w.fetch("critical", "default")
        assert fetched["jid"] == jid and fetched["args"] == [{"b": 1, "a": [1, 2]}]
        assert w.json_command("ACK", {"jid": jid}) == b"OK"
    assert faktory(client)["total_processed"] == 1


# --- concurrency -------------------------------------------------------------------------

def test_25_concurrent_blocking_fetches_get_one_job_each(server_factory) -> None:
    server = server_factory()
    client = server.client()
    assert client.handshake() == b"OK"
    count = 25
    conns = [worker(server, "pool-wid") for _ in range(count)]
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    sent = threading.Barrier(count + 1)

    def fetch(i: int) -> None:
        try:
            conns[i].send(b"FETCH pool\r\n")
            sent.wait()
            results[i] = conns[i].reply()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(count)]
    try:
        for t in threads:
            t.start()
        sent.wait()
        fetches_blocked(client.info, count)  # every FETCH waits in the server: PUSHB wakes them
        jobs = [job(queue="pool") for _ in range(count)]
        assert client.command(f"PUSHB {json.dumps(jobs)}") == b"{}"
        for t in threads:
            t.join(10)
        assert not errors
        assert all(r is not None for r in results), results
        got = [json.loads(r)["jid"] for r in results]
        assert sorted(got) == sorted(j["jid"] for j in jobs)
        f = faktory(client)
        assert f["sets"]["working"] == count and f["queues"]["pool"] == 0
        assert f["tasks"]["Workers"]["size"] == 1
    finally:
        for c in conns:
            c.close()


def test_concurrent_pushers_and_fetchers_lose_nothing(server, client: RawClient) -> None:
    per_thread, threads_n = 100, 4
    pushed: list[str] = []
    fetched: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            with server.client() as c:
                assert c.handshake() == b"OK"
                for _ in range(per_thread):
                    jid = push(c, queue="conc")
                    with lock:
                        pushed.append(jid)
        except BaseException as exc:
            errors.append(exc)

    def consumer() -> None:
        try:
            with server.client() as c:
                assert c.handshake(wid="conc-wid") == b"OK"
                while True:
                    got = c.fetch("conc")
                    if got is None:
                        return
                    assert c.json_command("ACK", {"jid": got["jid"]}) == b"OK"
                    with lock:
                        fetched.append(got["jid"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=producer) for _ in range(threads_n)]
    threads += [threading.Thread(target=consumer) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(fetched) == len(set(fetched)) == per_thread * threads_n
    assert set(fetched) == set(pushed)
    assert faktory(client)["total_processed"] == per_thread * threads_n
