"""Takeover under load with real Go clients (issue 16): a Go-client producer and a
faktory_worker_go Manager (tests/interop/clients/go/s15_takeover_load_test.go) work against
three faktory_py nodes on one op log in Redis, connected to node 0's address (a standby that
forwards, or the primary), while the primary is killed (`kill -9`) at random moments
FAKTORY_HA_KILLS times (default 4; the issue's 30 by hand: `FAKTORY_HA_KILLS=30`); each
killed node is started again at once and competes for the lease with the two others once
it has loaded the log (it may win). Each takeover is timed from the kill to the first
INFO a new primary answers (printed with `-s`) and bounded by the lease TTL plus SLACK.

The checker (helpers/ledger.py) reads the whole op log from Redis afterwards and accounts
for every jid: every PUSH the producer saw `+OK` for is in the log; no job is reserved again
after an ACK ended its reservation; every job the workers ran had been pushed; every batch
committed whose jobs all succeeded enqueued its success callback exactly once; the unique
locks of five jobs pushed before the kills (into a queue nobody works) still refuse a
duplicate, and those of unique jobs that succeeded are released.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from faktory_py.tools.client import ReplyError
from helpers.ledger import account_for_every_jid, check_unique_locks
from helpers.polling import eventually
from helpers.rawclient import RawClient, new_jid
from helpers.redis import advertise
from helpers.servers import ServerProcess
from helpers.toolchain import Toolchain
from interop.test_client_go import GO_DIR, TAKEOVER_LOAD, go_env  # noqa: F401 (the fixture)

KILLS = int(os.environ.get("FAKTORY_HA_KILLS", "4"))
LEASE_TTL = 2.0  # helpers.redis.TEST_REDIS_TOML's lease_ttl_ms
SLACK = 3.0  # what a takeover may take beyond the lease TTL under a loaded machine
#: the kill moments' seed, printed with the times, so a failing run can be repeated
SEED = int(os.environ.get("FAKTORY_HA_SEED", str(random.randrange(1 << 32))))


HELD = range(5)  # unique jobs in `held`, which no worker fetches


def held_job(n: int) -> dict[str, object]:
    return {"jid": new_jid(), "jobtype": "Held", "args": [n], "queue": "held", "custom": {"unique_for": 3600}}


@contextmanager
def go_load(binary: str, url: str, ledger: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """The Go producer and faktory_worker_go workers (TAKEOVER_LOAD) working against `url`
    for `seconds`, writing `ledger` (helpers/ledger.py reads it); killed if still running
    when the block ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKTORY_")}
    env |= {"FAKTORY_URL": url, "FAKTORY_LEDGER": str(ledger), "FAKTORY_LOAD_SECONDS": str(int(seconds))}
    go = subprocess.Popen([binary, f"-test.run=^{TAKEOVER_LOAD}$", "-test.v", f"-test.timeout={seconds + 60:.0f}s"],
                          cwd=GO_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
    try:
        yield go
    finally:
        if go.poll() is None:
            os.killpg(go.pid, signal.SIGKILL)
            go.communicate()


@pytest.fixture
def cluster(tmp_path: Path, redis_store: str) -> Iterator[list[ServerProcess]]:
    nodes = [ServerProcess(tmp_path / f"node{n}", args=("--store", redis_store)) for n in range(3)]
    for node in nodes:
        advertise(node.conf_dir, node.port)
    yield nodes
    for node in nodes:
        node.cleanup()


def primary(via: ServerProcess) -> tuple[int, int] | None:
    """(port, epoch) of the primary `via` serves or forwards to; None while there is none."""
    try:
        with RawClient(via.port) as c:
            c.sock.settimeout(1.0)
            assert c.handshake() == b"OK"
            ha = c.info()["faktory"]["ha"]
    except (OSError, ReplyError, EOFError):
        return None
    return (int(ha["node_id"].rsplit(":", 1)[1]), ha["epoch"]) if ha["role"] == "primary" else None


def test_go_clients_survive_repeated_kill_9_of_the_primary(cluster, redis_store, go_env: Toolchain,
                                                            tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    binary = go_env.require()
    first, *standbys = cluster
    first.start()
    for node in standbys:
        node.start()  # greets once it forwards to `first`
    with RawClient(first.port) as c:  # unique jobs that nobody works: their locks must outlive every takeover
        assert c.handshake() == b"OK"
        assert all(c.push(held_job(n)) == b"OK" for n in HELD)
    by_port = {node.port: node for node in cluster}
    ledger = tmp_path / "ledger"
    seconds = 4 + KILLS * (LEASE_TTL + SLACK)
    moments = random.Random(SEED)
    times = []
    with go_load(binary, first.url, ledger, seconds) as go:
        time.sleep(1.0)  # load first
        for _ in range(KILLS):
            time.sleep(moments.uniform(0.2, 1.0))  # a random moment of the load
            serving = primary(first) or primary(standbys[0])
            assert serving is not None
            port, epoch = serving
            victim = by_port[port]
            victim.kill()
            killed = time.monotonic()
            victim.spawn()  # back as a standby once it has loaded the log
            others = [node for node in cluster if node is not victim]
            while True:  # a node of a later epoch serves (the victim, back quickly, may win)
                serving = next(filter(None, (primary(node) for node in others)), None)
                if serving is not None and serving[1] > epoch:
                    break
                assert time.monotonic() - killed < LEASE_TTL + SLACK + 10, "no takeover"
                time.sleep(0.05)
            times.append(time.monotonic() - killed)
        output, _ = go.communicate(timeout=seconds + 90)
    assert go.returncode == 0, output[-5000:]

    times.sort()
    print(f"\nFAKTORY_HA_SEED={SEED}: takeover after kill -9 (lease TTL {LEASE_TTL} s), {len(times)} kills: "
          f"min {times[0]:.2f} s, "
          f"median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s; all: "
          + ", ".join(f"{t:.2f}" for t in times))
    assert times[-1] < LEASE_TTL + SLACK

    books = account_for_every_jid(ledger, redis_store)
    # the unique locks: held by the jobs that wait in `held`, released by those that succeeded
    port, _ = eventually(lambda: next(filter(None, (primary(node) for node in cluster)), None), 20, "a primary")
    with RawClient(port) as c:
        assert c.handshake() == b"OK"
        for n in HELD:
            with pytest.raises(ReplyError, match="NOTUNIQUE"):
                c.push(held_job(n))
    check_unique_locks(port, books)
    print(books.summary())
    for node in cluster:
        assert "Traceback" not in node.log_text()
