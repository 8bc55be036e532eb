"""Fuzzing every command of a real server process, while a canary client works beside it.

One connection sends hypothesis-made requests — every command, with deep / wide /
huge-number / NaN / lone-surrogate JSON and bytes that are not UTF-8 (tests/helpers/json_fuzz.py) —
and must get a reply to each, never `-ERR internal error`. Meanwhile a canary on another
connection pushes, fetches and ACKs its own jobs and must never see a wrong answer. After
the run the log holds no traceback and the server restarts cleanly from its journal.

Bounded for the suite (a few seconds); `FUZZ_EXAMPLES=20000` makes a long run (README.md,
"Fuzzing"). Nothing here touches the canary's queue as a whole (no `*`, no FLUSH).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.servers import ServerProcess
from helpers.json_fuzz import TIMEOUT, corrupted, fuzz_settings, jobs, mostly, objects, string_lists, strings, values
from helpers.rawclient import ReplyError, new_jid
from helpers.serving import connect, restart

pytestmark = pytest.mark.timeout(TIMEOUT)

#: queue names that are neither the canary's nor `*`
NAMES = st.lists(st.one_of(st.sampled_from(("default", "q", "fuzzq", "a.b-c_d")),
                           st.text(st.characters(blacklist_characters=" *\r\n", codec="utf-8"), min_size=1,
                                   max_size=8).filter(lambda n: n != "canary")),
                 min_size=1, max_size=3).map(" ".join)
_STRING = mostly(strings, values)
_FIELDS = {
    "PUSH": jobs("fuzz-000000001", ('"2099-01-01T00:00:00Z"', '"2001-01-01T00:00:00Z"')),
    "PUSHB": mostly(st.lists(jobs("fuzz-000000002"), max_size=3).map(lambda j: "[" + ",".join(j) + "]"), values),
    "ACK": objects(jid=_STRING),
    "FAIL": objects(jid=_STRING, errtype=_STRING, message=_STRING, backtrace=mostly(string_lists, values)),
    "BEAT": objects(wid=_STRING, current_state=_STRING, rss_kb=values),
    "MUTATE": objects(cmd=st.sampled_from(('"kill"', '"requeue"', '"discard"')),
                      target=st.sampled_from(('"retries"', '"scheduled"', '"dead"')),
                      filter=objects(jids=mostly(string_lists, values), regexp=_STRING, jobtype=_STRING)),
    "BATCH NEW": objects(description=_STRING, parent_bid=_STRING,
                         success=objects(jobtype=st.just('"cb"'), args=values, custom=values),
                         complete=objects(jobtype=st.just('"cb"'), args=values)),
    "TRACK SET": objects(jid=_STRING, percent=values, desc=_STRING, reserve_until=values),
}
REQUESTS = st.one_of(
    *(st.tuples(st.just(verb), arg) for verb, arg in _FIELDS.items()),
    st.tuples(st.sampled_from(("QUEUE PAUSE", "QUEUE RESUME", "QUEUE REMOVE", "QUEUE LATENCY")), NAMES),
    st.tuples(st.sampled_from(("BATCH OPEN", "BATCH COMMIT", "BATCH STATUS", "TRACK GET")), strings),
    st.tuples(st.just("FETCH"), NAMES),
    st.tuples(st.just("INFO"), st.just("")),
).flatmap(lambda request: corrupted(request[1]).map(lambda arg: (request[0], arg)))


class Canary(threading.Thread):
    """Pushes, fetches and ACKs its own jobs on its own connection until stopped."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.rounds = 0
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            with connect(self.server) as client:
                while not self.stopping.is_set():
                    jid = new_jid()
                    assert client.push({"jid": jid, "jobtype": "canary", "args": [self.rounds],
                                        "queue": "canary"}) == b"OK"
                    fetched = client.fetch("canary")
                    assert fetched is not None and fetched["jid"] == jid, fetched
                    assert client.json_command("ACK", {"jid": jid}) == b"OK"
                    self.rounds += 1
        except BaseException as exc:  # reported by the test
            self.error = exc


@contextmanager
def canary(server: ServerProcess) -> Iterator[Canary]:
    bird = Canary(server)
    bird.start()
    try:
        yield bird
    finally:
        bird.stopping.set()
        bird.join(30)
    assert bird.error is None, f"the canary failed after {bird.rounds} rounds: {bird.error!r}"


def test_fuzzing_every_command_leaves_the_server_serving(server_factory) -> None:
    server = server_factory()
    with canary(server) as bird, connect(server) as fuzz:

        @fuzz_settings(400)
        @given(REQUESTS)
        def one_request(request: tuple[str, bytes]) -> None:
            verb, arg = request
            if verb == "FETCH":  # something to fetch, so no FETCH waits its 2 s
                assert fuzz.push({"jid": new_jid(), "jobtype": "fuzz", "args": [], "queue": "fuzzq"}) == b"OK"
                arg += b" fuzzq"
            fuzz.send(verb.encode() + (b" " + arg if arg else b"") + b"\r\n")
            try:
                reply = fuzz.reply()
            except ReplyError as error:
                assert "internal error" not in str(error), (verb, arg[:200])
                return
            if verb == "FETCH" and reply is not None:
                jid = json.loads(reply)["jid"]
                assert fuzz.json_command("ACK", {"jid": jid}) == b"OK"

        one_request()
        assert bird.rounds > 0 and bird.is_alive()
    assert "Traceback" not in server.log_text()
    restart(server)
