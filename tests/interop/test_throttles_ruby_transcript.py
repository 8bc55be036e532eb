"""A-T15, its Ruby part (protocol/spec.md §11.4): a faktory_worker_ruby process with 10 threads
works 200 jobs through `gated` (`concurrency = 3`). Ruby is not installed here, so the worker is
its golden transcript (protocol/cases/client-ruby.case): each thread opens its own connection and
sends the gem's captured HELLO, FETCH and ACK bytes — bare `\\n` terminators, one process `wid`
shared by every thread, as the gem's connection pool does — with only the queue list and the
jid changed. The server's journal, replayed after a clean stop, shows every job reserved once
and never more than 3 at once."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from helpers.rawclient import RawClient
from helpers.throttles import configure_throttles, peak_reserved, work_in_threads

CASE = Path(__file__).resolve().parents[2] / "protocol" / "cases" / "client-ruby.case"


def captured_lines(connection: str) -> list[bytes]:
    """The captured lines the gem sent on the connections named `connection`, as bytes on the wire."""
    lines: list[bytes] = []
    on_it = False
    for line in CASE.read_text().splitlines():
        if line.startswith("--- connection "):
            on_it = line == f"--- connection {connection}"
        elif on_it and line.startswith("C: "):
            lines.append(line[3:].replace("\\r", "\r").replace("\\n", "\n").encode())
    return lines


def captured_worker_lines() -> dict[str, bytes]:
    """The worker connection's captured HELLO, FETCH and ACK lines (the first of each verb)."""
    lines: dict[str, bytes] = {}
    for line in captured_lines("worker"):
        lines.setdefault(line.split(b" ", 1)[0].decode(), line)
    return lines


LINES = captured_worker_lines()


def fetch_line(queue: str) -> bytes:
    return re.sub(rb"^FETCH [^\n]*", b"FETCH " + queue.encode(), LINES["FETCH"])


def ack_line(jid: str) -> bytes:
    return re.sub(rb'"jid":"[^"]*"', f'"jid":"{jid}"'.encode(), LINES["ACK"])


def test_the_captured_lines_are_the_gems() -> None:
    assert LINES["HELLO"].startswith(b'HELLO {"wid":"a5cd3ea793428344"') and LINES["HELLO"].endswith(b"}\n")
    assert fetch_line("gated") == b"FETCH gated\n"
    assert ack_line("x" * 24) == b'ACK {"jid":"' + b"x" * 24 + b'"}\n'


def test_ruby_worker_threads_through_concurrency_3(server_factory) -> None:
    srv = server_factory(start=False)
    configure_throttles(srv)
    srv.start()
    with RawClient(srv.port) as producer:
        assert producer.handshake() == b"OK"
        for i in range(200):
            job = {"jid": uuid.uuid4().hex[:24], "jobtype": "Gated", "args": [i], "queue": "gated"}
            assert producer.push(job) == b"OK"

    class Worker:
        def __init__(self) -> None:
            self.conn = RawClient(srv.port)
            self.conn.greet()
            self.conn.send(LINES["HELLO"])
            assert self.conn.reply() == b"OK"

        def fetch(self) -> str | None:
            self.conn.send(fetch_line("gated"))
            body = self.conn.reply()
            return None if body is None else json.loads(body)["jid"]

        def ack(self, jid: str) -> None:
            self.conn.send(ack_line(jid))
            assert self.conn.reply() == b"OK"

        def close(self) -> None:
            self.conn.close()

    worked = work_in_threads(Worker)
    assert len(worked) == 200 and set(worked.values()) == {1}
    assert srv.stop() == 0
    assert peak_reserved(srv.data_dir, "gated") == (3, 200)
