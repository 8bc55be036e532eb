"""Reproductions of issue 10's poison requests, through the real CLI process.

Each request once stopped the server (some for every restart after it, too): nesting deeper
than the encoders or msgpack's unpacker take, integers beyond 64 bits reaching the journal,
deep JSON answered `-ERR internal error` with a traceback, and (found since) a client's
`failure` block that FAIL could not update. Now each is refused with the
command's own error at the edge (protocol/spec.md §4.4), or accepted and stored so that it
replays; afterwards the server still serves, logs no traceback and restarts cleanly.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from helpers.polling import eventually
from helpers.rawclient import RawClient, ReplyError, new_jid
from helpers.serving import assert_serving, connect, restart

pytestmark = pytest.mark.timeout(120)

BIG_39 = "1" + "0" * 38  # beyond uint64, a float64 (1e38)
BIG_311 = "1" + "0" * 310  # beyond float64


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_line(args: str, **fields: object) -> tuple[str, str]:
    """(jid, `PUSH …` line) for a job whose args are the JSON text `args`."""
    jid = new_jid()
    extra = "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in fields.items())
    return jid, f'PUSH {{"jid":"{jid}","jobtype":"poison","args":{args}{extra}}}'


def refused(client: RawClient, line: str) -> str:
    with pytest.raises(ReplyError) as refusal:
        client.command(line)
    return str(refusal.value)


def test_deep_args_scheduled_soon_are_refused_and_the_timer_keeps_running(server_factory) -> None:
    server = server_factory()
    due = time.time() + 2
    with connect(server) as client:
        _jid, line = job_line("[" * 1000 + "]" * 1000, at=rfc3339(due))
        assert refused(client, line) == "ERR invalid JSON: nesting depth 1001 exceeds the limit of 128"
        # a job due at the same moment is enqueued by the timer (which once died here)
        jid, line = job_line("[1]", at=rfc3339(due), queue="soon")
        assert client.command(line) == b"OK"
        assert eventually(lambda: client.fetch("soon"), 10, "the scheduled job to be enqueued")["jid"] == jid
    assert_serving(server)
    restart(server)


def test_args_deeper_than_the_journal_replays_are_refused(server_factory) -> None:
    server = server_factory()
    with connect(server) as client:
        _jid, line = job_line("[" * 1022 + "]" * 1022, at="2099-01-01T00:00:00Z")
        assert refused(client, line).startswith("ERR invalid JSON: nesting depth 1023 exceeds")
        assert client.command("INFO")
    restart(server)


def test_a_batch_callback_with_a_39_digit_integer_is_stored_and_replays(server_factory) -> None:
    server = server_factory()
    with connect(server) as client:
        bid = client.command(f'BATCH NEW {{"success":{{"jobtype":"cb","args":[{BIG_39}]}}}}').decode()
        assert client.command(f"BATCH STATUS {bid}")
    restart(server)
    with connect(server) as client:
        assert json.loads(client.command(f"BATCH STATUS {bid}"))["bid"] == bid


@pytest.mark.parametrize("fields", [{"at": "2099-01-01T00:00:00Z"}, {}, {"reserve_for": 60}],
                         ids=["scheduled", "fetch-fail", "reserved"])
def test_a_311_digit_integer_is_refused(server_factory, fields: dict[str, object]) -> None:
    server = server_factory()
    with connect(server) as client:
        _jid, line = job_line(f"[{BIG_311}]", **fields)
        assert refused(client, line) == (
            "ERR invalid JSON: cannot unmarshal number 10000000000000000000…(311 digits) into a float64")
        assert client.fetch("default") is None  # nothing was stored to fetch, fail or expire
    restart(server)


def test_a_scheduled_39_digit_integer_becomes_a_float_and_replays(server_factory) -> None:
    """Through the standard library's decoder (a lone surrogate makes orjson refuse the text),
    which once kept the integer exact in the scheduled set, where the journal could not pack it."""
    server = server_factory()
    with connect(server) as client:
        jid, line = job_line(f'["\\ud800",{BIG_39}]', at="2099-01-01T00:00:00Z")
        assert client.command(line) == b"OK"
    restart(server)
    with connect(server) as client:
        assert client.json_command("MUTATE", {"cmd": "requeue", "target": "scheduled"}) == b"OK"
        fetched = client.fetch("default")
        assert fetched["jid"] == jid and fetched["args"] == ["\ufffd", 1e38]
        assert client.json_command("FAIL", {"jid": jid, "errtype": "E", "message": "m"}) == b"OK"
    restart(server)
    with connect(server) as client:
        assert client.json_command("MUTATE", {"cmd": "requeue", "target": "retries"}) == b"OK"
        assert client.fetch("default")["args"] == ["\ufffd", 1e38]


def test_deep_arguments_get_each_commands_own_error(server_factory) -> None:
    deep = "[" * 100_000
    server = server_factory()
    with connect(server) as client:
        for verb, error in [("ACK", f"ERR invalid ACK {deep}"), ("FAIL", f"ERR invalid FAIL {deep}"),
                            ("BEAT", f"ERR invalid BEAT {deep}"),
                            ("BATCH NEW", f"ERR invalid BATCH NEW {deep}"),
                            ("TRACK SET", f"ERR invalid TRACK SET {deep}"),
                            ("MUTATE", "ERR nesting depth 100000 exceeds the limit of 128"),
                            ("PUSH", "ERR invalid JSON: nesting depth 100000 exceeds the limit of 128"),
                            ("PUSHB", "ERR invalid JSON: nesting depth 100000 exceeds the limit of 128")]:
            assert refused(client, f"{verb} {deep}") == error, verb
    assert_serving(server)
    restart(server)


@pytest.mark.parametrize("failure, error", [
    ({"retry_count": 2**64 - 1}, "number 18446744073709551615 into Go struct field Job.failure.retry_count of type int"),
    ({"remaining": "x"}, "string into Go struct field Job.failure.remaining of type int"),
    ({"backtrace": [1]}, "number into Go struct field Job.failure.backtrace of type string"),
], ids=["overflowing-count", "string-count", "number-in-backtrace"])
def test_a_failure_block_that_fail_or_expiry_cannot_update_is_refused(
        server_factory, failure: dict[str, object], error: str) -> None:
    """FAIL and reservation expiry compute with a client's failure block (`retry_count + 1`):
    a count of 2⁶⁴−1 once became an integer the journal could not pack, a string a TypeError."""
    server = server_factory()
    with connect(server) as client:
        _jid, line = job_line("[]", failure=failure, reserve_for=60)
        assert refused(client, line) == f"ERR invalid JSON: json: cannot unmarshal {error}"
        jid, line = job_line("[]", failure={"retry_count": 2**63 - 1, "remaining": None}, reserve_for=60)
        assert client.command(line) == b"OK"  # the largest Go int, and null (absent) are fine
        assert client.fetch("default")["jid"] == jid
        assert client.json_command("FAIL", {"jid": jid, "errtype": "E", "message": "m"}) == b"OK"
    restart(server)
