"""C-T14, its Ruby part (protocol/spec.md §12.3, §14): `custom._after` and `custom._cron` survive the
faktory_worker_ruby gem's request shapes, and a released or fired job gains no top-level key.
Ruby is not installed here, so the gem is its golden transcript (protocol/cases/client-ruby.case,
as in test_throttles_ruby_transcript.py): the producer pushes with the gem's captured
`perform_async` PUSH line (its key order, compact JSON, bare `\\n`), only jid, queue, args and
custom changed; the worker sends the gem's captured HELLO, FETCH and ACK lines. The worker
FETCHes a dependent the ACK of its upstream released, and a job an every-second `[[cron]]` entry
fired, each keeping the job's own `custom` keys beside ours and only Faktory's job keys at the
top level — the same keys as a plain job pushed the same way."""

from __future__ import annotations

import json
import time
from typing import Any

from helpers.jobs import push_command
from helpers.rawclient import RawClient
from test_throttles_ruby_transcript import LINES, ack_line, captured_lines, fetch_line

#: the gem's PUSH of a job with `custom` (perform_async with custom attributes)
PUSH_TEMPLATE = next(line for line in captured_lines("producer2") if line.startswith(b"PUSH ") and b'"custom"' in line)
PRODUCER_HELLO = captured_lines("producer2")[0]
#: the top-level keys of a Faktory job (Faktory's job schema); ours go under `custom`
JOB_KEYS = {"jid", "queue", "jobtype", "args", "created_at", "enqueued_at", "at", "reserve_for", "retry",
            "backtrace", "failure", "custom"}
CRON = """
[[cron]]
  schedule = "* * * * * *"
  name = "ruby-cron"
  [cron.job]
    type = "RubyCron"
    queue = "ruby-cron"
    args = ["cron"]
"""


def push_line(jid: str, queue: str, args: list[Any], custom: dict[str, Any]) -> bytes:
    """The gem's PUSH line with these values in place of the captured ones (same key order, same
    compact JSON: test_the_template_reserializes_to_the_captured_bytes)."""
    job = json.loads(PUSH_TEMPLATE.removeprefix(b"PUSH "))
    job.update(jid=jid, queue=queue, args=args, custom=custom)
    return push_command(job) + b"\n"


def test_the_template_reserializes_to_the_captured_bytes() -> None:
    job = json.loads(PUSH_TEMPLATE.removeprefix(b"PUSH "))
    assert list(job) == ["retry", "queue", "jobtype", "args", "jid", "custom"]
    assert push_line(job["jid"], job["queue"], job["args"], job["custom"]) == PUSH_TEMPLATE
    assert PRODUCER_HELLO.startswith(b'HELLO {"wid":"",') and PRODUCER_HELLO.endswith(b"\n")


def ruby_connection(srv, hello: bytes) -> RawClient:
    conn = RawClient(srv.port)
    conn.greet()
    conn.send(hello)
    assert conn.reply() == b"OK"
    return conn


def fetch(worker: RawClient, queue: str, timeout: float = 10.0) -> dict[str, Any]:
    """The gem's FETCH until a job comes (each blocks up to 2 s on the server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.send(fetch_line(queue))
        body = worker.reply()
        if body is not None:
            return json.loads(body)
    raise AssertionError(f"no job in {queue} within {timeout} s")


def ack(worker: RawClient, jid: str) -> None:
    worker.send(ack_line(jid))
    assert worker.reply() == b"OK"


def test_after_and_cron_survive_the_gems_shapes_with_no_new_top_level_key(server_factory) -> None:
    srv = server_factory(start=False)
    (srv.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (srv.conf_dir / "conf.d" / "cron.toml").write_text(CRON)
    srv.start()
    up, down, plain = "ruby-up-0000000000000001", "ruby-down-00000000000001", "ruby-plain-0000000000001"
    with ruby_connection(srv, PRODUCER_HELLO) as producer, ruby_connection(srv, LINES["HELLO"]) as worker:
        for jid, custom in ((down, {"tenant": "acme", "after": [up]}), (up, {"tenant": "acme"}),
                            (plain, {"tenant": "acme"})):
            producer.send(push_line(jid, "ruby-deps", [jid], custom))
            assert producer.reply() == b"OK"
        got = []
        for _ in range(3):  # each ACK before the next FETCH, as the gem's processor does
            got.append(fetch(worker, "ruby-deps"))
            ack(worker, got[-1]["jid"])
        assert [job["jid"] for job in got] == [up, plain, down]
        released, control = got[2], got[1]
        assert released["custom"] == {"tenant": "acme", "after": [up], "_after": {up: {"outcome": "success"}}}
        assert set(released) == set(control) and set(control) <= JOB_KEYS

        fired = fetch(worker, "ruby-cron")
        assert (fired["jobtype"], fired["args"]) == ("RubyCron", ["cron"])
        assert set(fired["custom"]) == {"_cron"} and fired["custom"]["_cron"]["id"] == "ruby-cron"
        assert isinstance(fired["custom"]["_cron"]["tick"], str)
        assert set(fired) <= JOB_KEYS
        ack(worker, fired["jid"])
        producer.send(b"CRON STATUS\n")
        (entry,) = json.loads(producer.reply())
    assert entry["id"] == "ruby-cron" and entry["counts"]["fired"] >= 1
