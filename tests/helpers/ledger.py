"""The checker of the load tests under kill -9: the Go load client's ledger
(tests/interop/clients/go/s15_takeover_load_test.go) against the op log, read after the kills.
Shared by the HA tests (issue 16: kill -9 of faktory_py primaries, of the Redis master), which
read the stream in Redis, and the `fsync always` test (issue 15: kill -9 of a server on the
local journal), which reads the journal (`account_for_records`); all give the same guarantees.

`account_for_every_jid` checks that every PUSH the producer saw `+OK` for is in the log, that
no job is reserved again after an ACK ended its reservation, that every job the workers ran
had been pushed, and that every batch committed whose jobs all succeeded enqueued its
success callback exactly once (a batch with a job not yet done, none).
`check_unique_locks` checks on the primary that the locks of unique jobs that succeeded are
released. Jobs whose PUSH failed (outcome unknown to the client) are not counted either way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faktory_py.store.job_queue import decode as decode_queued
from helpers.rawclient import RawClient, new_jid
from helpers.redis import read_log


@dataclass
class Accounting:
    """What the ledger and the log say, for the summary line and further checks."""

    pushed: set[str]
    ran: Counter[str]
    batches: list[list[str]]
    enqueued: Counter[str] = field(default_factory=Counter)
    #: jid → args of the jobs pushed with unique_for
    unique: dict[str, list[object]] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)

    def summary(self) -> str:
        ran = self.ran
        return (f"{len(self.pushed)} pushed (+OK), {len(self.enqueued)} enqueued, {len(self.acked)} ACKed, "
                f"{sum(ran.values())} runs of {len(ran)} jobs ({sum(n > 1 for n in ran.values())} run twice: "
                f"ACK or FETCH reply lost in a failure), {len(self.batches)} batches, "
                f"{len(set(self.unique) & self.acked)} unique jobs succeeded")


def account_for_every_jid(ledger: Path, store_url: str) -> Accounting:
    """Check the ledger against the op log at `store_url` (module docstring)."""
    return account_for_records(ledger, read_log(store_url))


def account_for_records(ledger: Path, records: Iterable[list[dict[str, Any]]]) -> Accounting:
    """Check the ledger against the op log's `records` (a list of ops each, in order: the
    Redis stream's entries or the local journal's records)."""
    lines = [line.split() for line in ledger.read_text().splitlines()]
    books = Accounting(pushed={jid for what, *jids in lines if what == "PUSHED" for jid in jids},
                       ran=Counter(jid for what, *jids in lines if what == "RAN" for jid in jids),
                       batches=[jids for what, *jids in lines if what == "BATCH"])
    assert len(books.pushed) > 100 and books.ran and books.batches
    reserved_after_ack = []
    for record in records:
        for op in record:
            if op["op"] == "enqueue":
                for job in map(decode_queued, op["raws"]):
                    books.enqueued[job["jid"]] += 1
                    if "unique_for" in job.get("custom", {}):
                        books.unique[job["jid"]] = job["args"]
            elif op["op"] == "reserve" and op["jid"] in books.acked:
                reserved_after_ack.append(op["jid"])
            elif op["op"] == "done" and not op["failed"]:
                books.acked.add(op["jid"])
    missing = books.pushed - set(books.enqueued)
    assert not missing, f"acknowledged PUSHes missing from the log: {sorted(missing)[:10]}"
    assert not reserved_after_ack, f"ACKed jobs handed out again: {reserved_after_ack[:10]}"
    assert set(books.ran) <= set(books.enqueued)
    for bid, callback, *members in books.batches:
        assert books.enqueued[callback] == (1 if set(members) <= books.acked else 0), (bid, callback, members)
    return books


def check_unique_locks(port: int, books: Accounting) -> None:
    """On the primary at `port`: the unique locks of jobs that succeeded are released (a job
    with the same args and `unique_for` is accepted again)."""
    with RawClient(port) as c:
        assert c.handshake() == b"OK"
        for jid in sorted(set(books.unique) & books.acked)[:50]:
            again = {"jid": new_jid(), "jobtype": "Load", "args": books.unique[jid], "queue": "after",
                     "custom": {"unique_for": 3600}}
            assert c.push(again) == b"OK"
