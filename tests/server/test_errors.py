"""Every error line of protocol/spec.md §3 that the OSS server emits, over TCP.

Each case sends one raw line on an identified connection and compares the exact reply
bytes; afterwards the same connection must still answer INFO (an error never ends a
session, except the handshake ones tested in test_handshake_tcp.py). Then the error
hierarchy (faktory_py/errors.py), and what a bug in a command's code answers.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import trio

# One server for the whole module (these cases only read, or push nothing valid);
# conftest's `client` connects to it.
from helpers.servers import module_server as server  # noqa: F401  (fixture)
from helpers.async_client import AsyncClient
from faktory_py.config import Config
from faktory_py.core.lifecycle import Manager
from faktory_py.errors import (ClientError, ConfigError, FaktoryPyError, NoSuchBatch, NoSuchJob,
                               NotUnique)
from faktory_py.features.batches.feature import Batches
from faktory_py.server.app import serve
from faktory_py.server.durability import JournalFailed
from faktory_py.store.journal import DataDirectoryInUse, JournalCorrupt
from faktory_py.wire import ProtocolError
from faktory_py.wire.handshake import HandshakeFailed
from helpers.jobs import job, push_command
from helpers.rawclient import RawClient, ReplyError, new_jid

QUEUE_RULE = r"queue names must match \A[a-zA-Z0-9._-]+\z"


def push_line(**fields: object) -> bytes:
    """`PUSH <job>` for `job(**fields)`, as compact JSON."""
    return push_command(job(**fields))


def case_id(line: bytes) -> str:
    """A case's test id: its line's start, with the random jid left out (pytest-xdist's
    workers must collect the same ids)."""
    return re.sub(r'"jid":"[0-9a-f]{24}"', '"jid":…', line.decode())[:50]


def still_serves(client: RawClient) -> None:
    info = client.info()
    assert set(info) == {"now", "server_utc_time", "faktory", "server"}


def exchange(client: RawClient, line: bytes) -> bytes:
    """Send one line (CRLF added) and return exactly one reply line."""
    client.send(line + b"\r\n")
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = client.recv_raw()
        assert chunk, f"connection closed after {line!r}; got {data!r}"
        data += chunk
    return data


# (line sent, exact reply expected)
EXACT = [
    # verbs
    (b"CMD foo", b"-ERR unknown command CMD\r\n"),
    (b"FROBNICATE", b"-ERR unknown command FROBNICATE\r\n"),
    (b'push {"jid":"12345678901","jobtype":"x","args":[]}', b"-ERR unknown command push\r\n"),
    (b"info", b"-ERR unknown command info\r\n"),
    # commands missing their argument: Faktory panics and answers "internal error"
    (b"ACK", b"-ERR internal error\r\n"),
    (b"PUSH", b"-ERR internal error\r\n"),
    (b"PUSHB", b"-ERR internal error\r\n"),
    (b"FAIL", b"-ERR internal error\r\n"),
    (b"BEAT", b"-ERR internal error\r\n"),
    (b"QUEUE", b"-ERR internal error\r\n"),
    (b"QUEUE PAUSE", b"-ERR internal error\r\n"),
    (b"QUEUE RESUME", b"-ERR internal error\r\n"),
    (b"QUEUE REMOVE", b"-ERR internal error\r\n"),
    # PUSH validation
    (push_line(jid='short'), b"-ERR jobs must have a reasonable jid parameter\r\n"),
    (push_line(jid='1234567'), b"-ERR jobs must have a reasonable jid parameter\r\n"),
    (push_line(jid=''), b"-ERR jobs must have a reasonable jid parameter\r\n"),
    (push_line(jid=...), b"-ERR jobs must have a reasonable jid parameter\r\n"),
    (push_line(jobtype=''), b"-ERR jobs must have a jobtype parameter\r\n"),
    (push_line(jobtype=...), b"-ERR jobs must have a jobtype parameter\r\n"),
    (push_line(args=...), b"-ERR jobs must have an args parameter\r\n"),
    (push_line(args=None), b"-ERR jobs must have an args parameter\r\n"),
    (push_line(reserve_for=86401),
     b"-ERR jobs cannot be reserved for more than one day\r\n"),
    (push_line(queue='default?page=1'),
     b'-ERR cannot get "default?page=1" queue: ' + QUEUE_RULE.encode() + b"\r\n"),
    (push_line(queue='c&c'),
     b'-ERR cannot get "c&c" queue: ' + QUEUE_RULE.encode() + b"\r\n"),
    (push_line(queue='user@example.com'),
     b'-ERR cannot get "user@example.com" queue: ' + QUEUE_RULE.encode() + b"\r\n"),
    (push_line(queue='priority|high'),
     b'-ERR cannot get "priority|high" queue: ' + QUEUE_RULE.encode() + b"\r\n"),
    # FETCH
    (b"FETCH", b"-ERR must call fetch with at least one queue\r\n"),
    (b"FETCH ", b"-ERR must call fetch with at least one queue\r\n"),
    # ACK
    (b'ACK {"jid":1}', b'-ERR invalid ACK {"jid":1}\r\n'),
    (b"ACK []", b"-ERR invalid ACK []\r\n"),
    (b"ACK {}", b"-ERR invalid ACK {}\r\n"),
    (b'ACK {"id":"12345678"}', b'-ERR invalid ACK {"id":"12345678"}\r\n'),
    (b"ACK nope", b"-ERR invalid ACK nope\r\n"),
    # FAIL
    (b"FAIL nope", b"-ERR invalid FAIL nope\r\n"),
    (b"FAIL []", b"-ERR invalid FAIL []\r\n"),
    (b'FAIL {"jid":12345678}', b'-ERR invalid FAIL {"jid":12345678}\r\n'),
    (b"FAIL {}", b"-ERR missing JID\r\n"),
    (b'FAIL {"jid":""}', b"-ERR missing JID\r\n"),
    (b'FAIL {"jid":"abcdefgh12345","message":"boom"}', b"-ERR Job not found abcdefgh12345\r\n"),
    # BEAT
    (b"BEAT nope", b"-ERR invalid BEAT nope\r\n"),
    (b'BEAT {"wid":7}', b'-ERR invalid BEAT {"wid":7}\r\n'),
    (b'BEAT {"wid":"no-such-worker"}', b"-ERR unknown worker no-such-worker\r\n"),
    # QUEUE
    (b"QUEUE UNPAUSE *", b"-ERR no such QUEUE subcommand: UNPAUSE\r\n"),
    (b"QUEUE frob default", b"-ERR no such QUEUE subcommand: FROB\r\n"),
    (b"QUEUE LATENCY *", b"-ERR QUEUE LATENCY does not support wildcards\r\n"),
    (b"QUEUE latency *", b"-ERR QUEUE LATENCY does not support wildcards\r\n"),
    # MUTATE
    (b"MUTATE", b"-ERR invalid format\r\n"),
    (b'MUTATE {"cmd":"clear","target":"queues"}', b"-ERR invalid target for mutation command\r\n"),
    (b'MUTATE {"cmd":"kill","target":""}', b"-ERR invalid target for mutation command\r\n"),
    (b'MUTATE {"cmd":"kill"}', b"-ERR invalid target for mutation command\r\n"),
    (b'MUTATE {"cmd":"frobnicate","target":"retries"}', b"-ERR unknown mutate operation\r\n"),
    # BATCH (built in; faktory_py's own texts, see faktory_py/features/batches/feature.py)
    (b"BATCH NEW {}", b"-ERR BATCH NEW needs a success or complete callback job\r\n"),
    (b"BATCH NEW", b"-ERR BATCH NEW needs a JSON object\r\n"),
    (b"BATCH STATUS b-123", b"-ERR No such batch b-123\r\n"),
    (b"BATCH OPEN b-123", b"-ERR No such batch b-123\r\n"),
    (b"BATCH COMMIT b-123", b"-ERR No such batch b-123\r\n"),
    (b"BATCH STATUS", b"-ERR BATCH STATUS needs a bid\r\n"),
    (b"BATCH", b"-ERR BATCH needs NEW, OPEN, COMMIT or STATUS\r\n"),
    (b"BATCH FROB b-123", b"-ERR no such BATCH subcommand: FROB\r\n"),
    # TRACK (built in; faktory_py's own texts, see faktory_py/features/tracking.py)
    (b"TRACK", b"-ERR TRACK needs GET <jid> or SET <json>\r\n"),
    (b"TRACK FROB x", b"-ERR TRACK needs GET <jid> or SET <json>\r\n"),
    (b"TRACK GET", b"-ERR TRACK GET needs a jid\r\n"),
    (b"TRACK SET", b"-ERR TRACK SET needs a jid\r\n"),
    (b"TRACK SET [1]", b"-ERR invalid TRACK SET [1]\r\n"),
    (b"TRACK SET {}", b"-ERR TRACK SET needs a jid\r\n"),
    (b'TRACK SET {"jid":"12345678","percent":101}', b"-ERR percent must be an integer from 0 to 100: 101\r\n"),
    (b'TRACK SET {"jid":"12345678","percent":"5"}', b'-ERR percent must be an integer from 0 to 100: "5"\r\n'),
    (b'TRACK SET {"jid":"12345678","desc":5}', b"-ERR desc must be a string: 5\r\n"),
    (b'TRACK SET {"jid":"12345678","reserve_until":"soon"}',
     b'-ERR reserve_until must be an RFC3339 timestamp: "soon"\r\n'),
]


@pytest.mark.parametrize(("line", "reply"), EXACT, ids=[case_id(line) for line, _ in EXACT])
def test_exact_error_reply(client: RawClient, line: bytes, reply: bytes) -> None:
    assert exchange(client, line) == reply
    still_serves(client)


# (line sent, expected prefix of the reply line)
PREFIXED = [
    (b"PUSH {", b"-ERR invalid JSON: "),
    (b"PUSH not json", b"-ERR invalid JSON: "),
    (b'PUSH {"jid":"12345678901","jobtype":"x","args":[]', b"-ERR invalid JSON: "),
    (b"PUSH []", b"-ERR invalid JSON: "),
    (b'PUSH "a string"', b"-ERR invalid JSON: "),
    (b"PUSHB {", b"-ERR invalid JSON: "),
    (b"PUSHB {}", b"-ERR invalid JSON: "),
    (push_line(retry=2.5), b"-ERR invalid JSON: "),
    (push_line(jid=123456789), b"-ERR invalid JSON: "),
    (push_line(args='notalist'), b"-ERR invalid JSON: "),
    (push_line(custom=[]), b"-ERR invalid JSON: "),
    (push_line(reserve_for='60'), b"-ERR invalid JSON: "),
    (push_line(at='yesterday'), b"-ERR invalid timestamp for 'at': \"yesterday\": "),
    (push_line(at='2030-01-01 10:00:00'),
     b"-ERR invalid timestamp for 'at': \"2030-01-01 10:00:00\": "),
    (push_line(at='2030-01-01t10:00:00Z'),
     b"-ERR invalid timestamp for 'at': \"2030-01-01t10:00:00Z\": "),
    (b"MUTATE {", b"-ERR "),
    (b"MUTATE nope", b"-ERR "),
]


@pytest.mark.parametrize(("line", "prefix"), PREFIXED, ids=[case_id(line) for line, _ in PREFIXED])
def test_prefixed_error_reply(client: RawClient, line: bytes, prefix: bytes) -> None:
    reply = exchange(client, line)
    assert reply.startswith(prefix), reply
    assert reply.endswith(b"\r\n") and reply.count(b"\r\n") == 1, reply
    still_serves(client)


def test_type_error_texts_name_the_field(client: RawClient) -> None:
    with pytest.raises(ReplyError) as retry:
        client.push(job(retry=2.5))
    assert "retry" in str(retry.value)
    with pytest.raises(ReplyError) as jid:
        client.push(job(jid=123456789))
    assert "jid" in str(jid.value)


def test_nothing_is_stored_by_rejected_pushes(server_factory) -> None:
    with server_factory().client() as client:
        assert client.handshake() == b"OK"
        for fields in ({"jid": "short"}, {"jobtype": ""}, {"args": None}, {"reserve_for": 86401},
                       {"at": "nope"}, {"queue": "c&c"}, {"retry": 2.5}):
            with pytest.raises(ReplyError):
                client.push(job(**fields))
        info = client.info()["faktory"]
    assert info["total_enqueued"] == 0
    assert info["sets"] == {"dead": 0, "retries": 0, "scheduled": 0, "working": 0}
    assert "c&c" not in info["queues"]


def test_reserve_for_one_day_is_accepted(client: RawClient) -> None:
    assert client.push(job(reserve_for=86400)) == b"OK"


def test_bad_queue_name_in_scheduled_push_is_rejected_too(client: RawClient) -> None:
    with pytest.raises(ReplyError, match=r"cannot get \"a b\" queue"):
        client.push(job(queue="a b", at="2099-01-01T00:00:00Z"))


def test_pushb_item_errors_are_a_map_not_an_error(client: RawClient) -> None:
    good, short = job(), job(jid="short")
    client.send(f"PUSHB {json.dumps([good, short], separators=(',', ':'))}\r\n".encode())
    body = client.reply()
    assert json.loads(body) == {"short": "jobs must have a reasonable jid parameter"}
    still_serves(client)


def test_fail_unknown_jid_via_reply_error(client: RawClient) -> None:
    jid = new_jid()
    with pytest.raises(ReplyError) as exc:
        client.json_command("FAIL", {"jid": jid, "errtype": "E", "message": "m"})
    assert str(exc.value) == f"ERR Job not found {jid}"


def test_many_errors_in_a_row_keep_the_session(client: RawClient) -> None:
    for line, reply in EXACT:
        assert exchange(client, line) == reply, line
    assert client.push(job()) == b"OK"
    fetched = client.fetch("default")
    assert fetched is not None
    assert client.json_command("ACK", {"jid": fetched["jid"]}) == b"OK"


# --- one hierarchy; anything else is our bug -------------------------------------------

def test_every_error_raised_on_purpose_has_one_root() -> None:
    for error in (ClientError, ConfigError, ProtocolError, HandshakeFailed, JournalCorrupt,
                  DataDirectoryInUse, JournalFailed):
        assert issubclass(error, FaktoryPyError), error
    conditions = [NotUnique(), NoSuchJob("abcdefgh1234"), NoSuchBatch("b-1")]
    assert all(isinstance(error, ClientError) for error in conditions)
    assert [(error.code, str(error), error.line) for error in conditions] == [
        ("NOTUNIQUE", "Job not unique", "NOTUNIQUE Job not unique"),
        ("ERR", "Job not found abcdefgh1234", "Job not found abcdefgh1234"),
        ("ERR", "No such batch b-1", "No such batch b-1"),
    ]


@pytest.mark.parametrize(("line", "owner", "method"), [
    ("QUEUE LATENCY default", Manager, "latency"),  # a built-in command
    ("BATCH STATUS b-1", Batches, "status"),  # a feature's command
])
async def test_a_bug_is_logged_and_answered_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    line: str, owner: type, method: str,
) -> None:
    def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in our code")

    monkeypatch.setattr(owner, method, bug)
    config = Config(binding="127.0.0.1:0", data_dir=tmp_path / "data", conf_dir=tmp_path / "conf", fsync="no")
    with caplog.at_level(logging.ERROR, logger="faktory_py"):
        async with trio.open_nursery() as nursery:
            running = await nursery.start(serve, config)
            client = await AsyncClient.connect(running.port)
            with pytest.raises(ReplyError) as refused:
                await client.command(line)
            assert str(refused.value) == "ERR internal error"
            info = await client.info()  # the connection keeps serving
            assert set(info) == {"now", "server_utc_time", "faktory", "server"}
            await client.aclose()
            running.shutdown()
    [logged] = [record for record in caplog.records if record.exc_info is not None]
    assert logged.exc_info is not None and str(logged.exc_info[1]) == "a bug in our code"
    assert line.split(" ")[0] in logged.getMessage()
