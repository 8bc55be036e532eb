"""The throttles configuration the client harnesses run against (protocol/spec.md §11): one entry
of each kind — `concurrency`, `worker`, `rate` — so every client's INFO parsing meets every shape
of `faktory.throttles`, plus an unknown key, which the server logs and ignores; a named limit
partitioned by tenant (§11.9) and a yearly `[[cron]]` entry (§12), so that INFO carries
`faktory.limits` and `faktory.cron` too, and, once `hold_a_job` pushed a job that waits on a jid
never pushed (§14), `faktory.workflows` with one held job (A-T14: every client parses all of
it); and `gated`, `concurrency = 3`, which real workers run through (A-T15), with
`peak_reserved` to read from the server's journal how many of its jobs were ever reserved at once."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from faktory_py.store.journal import Journal
from helpers.rawclient import RawClient

CLIENT_THROTTLES = """
[throttles]
bulk = { concurrency = 2, timeout = 60 }
"image-processing" = { worker = 1, timeout = 30, colour = "red" }
api = { rate = { limit = 100, period = 60 }, timeout = 60 }
gated = { concurrency = 3, timeout = 60 }

[faktory_py.limits.tenants]
jobtypes = ["TenantJob"]
concurrency = 1
partition = ["custom.tenant"]

[[cron]]
  schedule = "@yearly"
  name = "yearly-report"
  [cron.job]
    type = "YearlyReport"
    queue = "reports"
"""
#: the job `hold_a_job` pushes: a TenantJob of `bulk` held until a jid no one pushes succeeds
HELD_JOB = {"jid": "held-a-t14-job", "jobtype": "TenantJob", "args": [], "queue": "bulk",
            "custom": {"tenant": "acme", "after": ["never-pushed-jid"]}}


def configure_throttles(server) -> None:
    """Writes CLIENT_THROTTLES into a not-yet-started server's conf.d."""
    (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (server.conf_dir / "conf.d" / "throttles.toml").write_text(CLIENT_THROTTLES)


def hold_a_job(server) -> None:
    """Pushes HELD_JOB into a started server: INFO then counts it in `faktory.workflows.held`,
    and never in `faktory.queues.bulk` nor in a throttle's or limit's `waiting`."""
    with RawClient(server.port) as conn:
        assert conn.handshake() == b"OK"
        assert conn.push(HELD_JOB) == b"OK"
        faktory = json.loads(conn.command("INFO"))["faktory"]
    assert faktory["workflows"]["held"] == 1 and faktory["queues"].get("bulk", 0) == 0


def peak_reserved(data_dir: Path, queue: str) -> tuple[int, int]:
    """(the most jobs of `queue` reserved at once, how many were reserved in all), replayed from a
    stopped server's journal: its records are the server's state changes in the order they
    happened, so this is the server's own count, not a sample. A `reserve` op starts a
    reservation, a `done` op (ACK, FAIL, expiry) or a `release` op (MUTATE working) ends it."""
    reserved: set[str] = set()
    peak = total = 0
    with Journal.open(data_dir) as journal:
        for record in journal.replay():
            for op in record:
                if op["op"] == "reserve" and op["queue"] == queue:
                    reserved.add(op["jid"])
                    total += 1
                    peak = max(peak, len(reserved))
                elif op["op"] in ("done", "release"):
                    reserved.discard(op["jid"])
    return peak, total


class GatedWorker(Protocol):
    """One worker thread's connection, as `work_in_threads` drives it."""

    def fetch(self) -> str | None:
        """FETCH `gated`: the job's jid, None when the 2 s block ran out."""

    def ack(self, jid: str) -> None: ...

    def close(self) -> None: ...


def work_in_threads(connect: Callable[[], GatedWorker], jobs: int = 200, threads: int = 10) -> Counter[str]:
    """A-T15's worker process: `threads` threads, each on its own connection from `connect`,
    FETCH `gated` and ACK (after 5 ms of "work", so the slots fill) until `jobs` jobs were worked
    or a minute passed. Returns how often each jid was worked; a thread's error is raised."""
    worked: Counter[str] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def work() -> None:
        try:
            worker = connect()
        except BaseException as exc:  # noqa: BLE001 -- reported by the test thread
            errors.append(exc)
            return
        try:
            while sum(worked.values()) < jobs and time.monotonic() < deadline:
                jid = worker.fetch()
                if jid is None:
                    continue
                time.sleep(0.005)
                with lock:
                    worked[jid] += 1
                worker.ack(jid)
        except BaseException as exc:  # noqa: BLE001 -- reported by the test thread
            errors.append(exc)
        finally:
            worker.close()

    running = [threading.Thread(target=work) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    if errors:
        raise errors[0]
    return worked
