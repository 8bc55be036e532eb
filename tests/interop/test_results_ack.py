"""C-T9's compatibility boundary (protocol/spec.md §14.6, DEVIATIONS D2), against faktory_py and
the real Faktory 1.9.4: an ACK whose `result` is a string is `+OK` on both (Faktory ignores it,
we record it); a `result` of another JSON type is recorded here and refused by Faktory with
`invalid ACK <payload>` — so a worker that sends a JSON-encoded string works against both."""

from __future__ import annotations

import json

import pytest

from helpers.rawclient import ReplyError, new_jid


def test_ack_with_a_result(any_server) -> None:
    real = getattr(any_server, "is_real_faktory", False)
    with any_server.client() as conn:
        assert conn.handshake(wid="results-w") == b"OK"
        jids = [new_jid(), new_jid()]
        for jid in jids:
            assert conn.push({"jid": jid, "jobtype": "R", "args": []}) == b"OK"
        for jid in jids:
            assert conn.fetch("default")["jid"] == jid
        assert conn.json_command("ACK", {"jid": jids[0], "result": '{"n":3}'}) == b"OK"
        payload = {"jid": jids[1], "result": {"n": 3}}
        if real:
            line = json.dumps(payload, separators=(",", ":"))
            with pytest.raises(ReplyError) as err:
                conn.command(f"ACK {line}")
            assert str(err.value) == f"ERR invalid ACK {line}"
            return
        assert conn.json_command("ACK", payload) == b"OK"
        for jid, result in zip(jids, ['{"n":3}', {"n": 3}]):
            record = json.loads(conn.command(f"RESULT GET {jid}"))
            assert (record["outcome"], record["result"]) == ("success", result)
