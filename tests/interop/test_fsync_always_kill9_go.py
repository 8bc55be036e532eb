"""kill -9 under `fsync always` with real Go clients (issue 15): the Go-client producer and
the faktory_worker_go Manager of the takeover test (tests/interop/clients/go/
s15_takeover_load_test.go) work against one faktory_py on its local journal while it is killed
(`kill -9`) at random moments and started again on the same port; both clients reconnect by
themselves.

FETCH replies do not wait for the fsync there (protocol/spec.md §7), only acknowledgements
do. The checker (helpers/ledger.py) reads the journal afterwards and accounts for every jid:
every PUSH the producer saw `+OK` for is in it, no job is reserved again after an ACK ended
its reservation, every job the workers ran had been pushed, every batch whose jobs all
succeeded enqueued its callback exactly once. Then the server, started on that journal,
still holds every job pushed `+OK` and not ACKed: in its queue, or reserved — a job fetched
before a kill whose ACK did not get through (one fetched by a raw client before the first
kill, always; the workers' now and then) is still reserved after the restart (the
reservation was written before its FETCH was answered), so FAIL finds it, and it runs again
once its reservation expires or, as here, once FAIL's retry comes due.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from faktory_py.store.journal import Journal
from helpers.ledger import account_for_records
from helpers.rawclient import RawClient
from helpers.servers import ServerProcess
from helpers.toolchain import Toolchain
from interop.test_client_go import go_env  # noqa: F401 (the fixture)
from interop.test_takeover_load_go import go_load

KILLS = 3
QUEUE = "takeover"  # the Go load's queue


def test_go_clients_lose_nothing_acknowledged_across_kill_9_under_fsync_always(
        server_factory, go_env: Toolchain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    binary = go_env.require()
    server: ServerProcess = server_factory(args=("--fsync", "always"))
    with RawClient(server.port) as c:  # a job fetched before the kills and never ACKed
        assert c.handshake(wid="crashing-worker") == b"OK"
        assert c.push({"jid": "inflight-1", "jobtype": "Held", "args": [], "queue": "inflight"}) == b"OK"
        assert c.fetch("inflight")["jid"] == "inflight-1"
    ledger = tmp_path / "ledger"
    seed = random.randrange(1 << 32)
    moments = random.Random(seed)
    with go_load(binary, server.url, ledger, 4 + KILLS) as go:
        time.sleep(1.0)  # load first
        for _ in range(KILLS):
            time.sleep(moments.uniform(0.3, 1.0))
            server.kill()
            server.start()  # same port and data directory; the clients dial again
        output, _ = go.communicate(timeout=120)
    assert go.returncode == 0, f"seed {seed}:\n{output[-5000:]}"
    server.kill()  # not a clean stop: that would compact the journal the checker reads

    with Journal.open(server.data_dir, fsync="always") as journal:
        records = list(journal.replay())
    books = account_for_records(ledger, records)

    server.start()
    with RawClient(server.port) as c:
        assert c.handshake(wid="checker") == b"OK"
        queued = c.info()["faktory"]["queues"].get(QUEUE, 0)
        c.send(f"FETCH {QUEUE}\r\n".encode() * queued)
        in_queue = {json.loads(c.reply())["jid"] for _ in range(queued)}
        assert c.fetch("inflight") is None  # reserved still: not handed out again while its worker may run it
        reserved = set()
        for jid in ["inflight-1", *sorted(books.pushed - books.acked - in_queue)]:
            assert c.json_command("FAIL", {"jid": jid, "errtype": "Crash", "message": "killed"}) == b"OK", \
                f"seed {seed}: {jid} pushed +OK, not ACKed, neither queued nor reserved"
            reserved.add(jid)
    print(f"\nseed {seed}: {books.summary()}; after the last kill {len(in_queue)} queued, "
          f"{len(reserved) - 1} reserved (fetched before a kill, ACK lost)")
    assert "Traceback" not in server.log_text()
