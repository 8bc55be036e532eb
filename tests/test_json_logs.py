"""`--log-format json`: every line the server process writes parses as one JSON object, also
while several connections push, fetch and fail jobs at once, and lines about a job carry its
`jid`, `jobtype` and `queue` (faktory_py/cli.py `configure_logging`, core.jobs.log_fields)."""

from __future__ import annotations

import json
import threading
from datetime import datetime

import pytest

from helpers.rawclient import new_jid
from helpers.serving import connect

CONNECTIONS = 8
JOBS_EACH = 100


def _fail_jobs(server, queue: str, errors: list[BaseException]) -> None:
    try:
        with connect(server) as client:
            for i in range(JOBS_EACH):
                assert client.push({"jid": new_jid(), "jobtype": "Flaky", "args": [i], "queue": queue}) == b"OK"
                job = client.fetch(queue)
                assert client.json_command("FAIL", {"jid": job["jid"], "errtype": "Boom",
                                                    "message": f"line\nbreak \"{i}\""}) == b"OK"
    except BaseException as exc:  # reported by the test's thread
        errors.append(exc)


def test_json_lines_parse_under_load_with_job_fields(server_factory) -> None:
    server = server_factory(args=("--log-format", "json", "-l", "debug"))
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_fail_jobs, args=(server, f"q{n}", errors)) for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert server.stop() == 0
    lines = server.log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), record
        assert datetime.fromisoformat(record["timestamp"]).utcoffset().total_seconds() == 0
    failed = [record for record in records if record["message"].startswith("job ") and "failed" in record["message"]]
    assert len(failed) == CONNECTIONS * JOBS_EACH
    for record in failed:
        assert record["level"] == "DEBUG" and record["logger"] == "faktory_py.manager"
        assert record["jobtype"] == "Flaky" and record["queue"].startswith("q") and record["jid"] in record["message"]
    assert any(record["message"].startswith("listening on") for record in records)


def test_text_stays_the_default(server_factory) -> None:
    server = server_factory()
    assert server.stop() == 0
    first = server.log.read_text().splitlines()[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)
    assert " I faktory_py." in first
