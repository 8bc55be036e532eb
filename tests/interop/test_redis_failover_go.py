"""Redis failover under load with Sentinel and `min_replicas = 1` (issue 16): real Debian
`redis-server` processes — a master, two replicas and one Sentinel (`redis-server
--sentinel`) — and two faktory_py nodes on `--store redis+sentinel://…` (a primary and a
standby). The Go producer and faktory_worker_go workers of the takeover test work against
the primary while the Redis master is killed (`kill -9`) at a random moment; Sentinel
promotes a replica and the nodes' connections find it through the Sentinel: the standby
follows the log on the new master up to the primary's last entry.

Two replicas, not one: with `min_replicas = 1` a reply waits until a replica has the entry
(`WAIT 1`), and the promoted replica has no replica of its own until Sentinel repoints the
other one at it; with a single replica every reply would wait until the killed master came
back.

The lease (15 s here) outlives the failover (about 3 s with `down-after-milliseconds`
2000): the primary keeps its lease — renewals count only once a replica has them, so the
promoted replica holds the lease the primary relies on — and goes on with the same epoch;
replies wait meanwhile. The checker (helpers/ledger.py) then accounts for every jid in the
op log on the new master: every PUSH answered `+OK` is there, no ACKed job was handed out
again, batch callbacks and unique locks are intact.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.ledger import account_for_every_jid, check_unique_locks
from helpers.polling import eventually
from helpers.rawclient import RawClient, new_jid
from helpers.redis import RedisSentinel, RedisServer, unique_name
from helpers.servers import ServerProcess
from helpers.toolchain import Toolchain
from interop.test_client_go import go_env  # noqa: F401 (the fixture)
from interop.test_takeover_load_go import go_load
from server.test_redis_takeover import ha, web_get

SERVICE = "fkmaster"
LOAD_SECONDS = 12
#: the op log's settings: a lease that outlives the failover; min_replicas is 1 by default
#: with a Sentinel URL
REDIS_TOML = "[faktory_py.redis]\nlease_ttl_ms = 15000\nrenew_every_ms = 1000\nwait_timeout_ms = 250\n"
#: Sentinel's down-after-milliseconds: 1000 let a busy machine's slow PING reply depose the
#: replica just promoted too (a second failover, whose new master has no replica for
#: seconds: the primary then rightly stops at its deadline, nothing acknowledged lost)
DOWN_AFTER_MS = 2000
#: the kill moment's seed, printed with the times, so a failing run can be repeated
SEED = int(os.environ.get("FAKTORY_HA_SEED", str(random.randrange(1 << 32))))


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisSentinel]]:
    """The Redis master and a Sentinel that knows it and both its replicas."""
    master = RedisServer(tmp_path / "master")
    replicas = [RedisServer(tmp_path / f"replica{n}", "--replicaof", "127.0.0.1", str(master.port))
                for n in range(2)]
    watcher = RedisSentinel(tmp_path / "sentinel", SERVICE, master, DOWN_AFTER_MS)
    try:
        for server in (master, *replicas, watcher):
            server.start()
        eventually(lambda: all(replica.linked() for replica in replicas), 30, "both replicas to sync")
        eventually(lambda: watcher.replicas(SERVICE) == 2, 30, "the Sentinel to see both replicas")
        yield master, watcher
    finally:
        for server in (watcher, *replicas, master):
            server.stop()


def index(node: ServerProcess) -> int | None:
    """`faktory.ha.index` on `node`'s web UI; None while it does not answer (a busy machine)."""
    answer = web_get(node, "/stats")
    return json.loads(answer[1])["faktory"]["ha"]["index"] if answer is not None and answer[0] == 200 else None


@pytest.mark.timeout(240)
def test_go_clients_lose_nothing_when_the_redis_master_is_killed(
        sentinel, go_env: Toolchain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    binary = go_env.require()
    master, watcher = sentinel
    store = f"redis+sentinel://127.0.0.1:{watcher.port}/{SERVICE}?name={unique_name()}"
    nodes = [ServerProcess(tmp_path / f"node{n}", args=("--store", store), web=True) for n in range(2)]
    try:
        for node in nodes:
            (node.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
            (node.conf_dir / "conf.d" / "redis.toml").write_text(f'{REDIS_TOML}advertise = "127.0.0.1:{node.port}"\n')
            node.start()
        primary, standby = nodes
        before = ha(primary)
        assert before["role"] == "primary"
        ledger = tmp_path / "ledger"
        with go_load(binary, primary.url, ledger, LOAD_SECONDS) as go:
            time.sleep(random.Random(SEED).uniform(2.0, 5.0))  # a random moment of the load
            assert master.proc is not None
            master.proc.kill()
            killed = time.monotonic()
            eventually(lambda: watcher.master(SERVICE) != master.port, 30, "Sentinel to promote a replica")
            promoted = time.monotonic() - killed
            with RawClient(primary.port) as c:  # replies wait through the failover, then go on
                assert c.handshake() == b"OK"
                assert c.push({"jid": new_jid(), "jobtype": "After", "args": [], "queue": "after"}) == b"OK"
            resumed = time.monotonic() - killed
            output, _ = go.communicate(timeout=LOAD_SECONDS + 90)
        assert go.returncode == 0, output[-5000:]
        print(f"\nFAKTORY_HA_SEED={SEED}: kill -9 of the Redis master; Sentinel named the new master after "
              f"{promoted:.2f} s, a PUSH through the primary was answered +OK {resumed:.2f} s after the kill")

        after = ha(primary)  # the same primary, the same lease: no takeover was needed
        assert (after["role"], after["node_id"], after["epoch"]) == ("primary", before["node_id"], before["epoch"])
        books = account_for_every_jid(ledger, store)
        check_unique_locks(primary.port, books)
        print(books.summary())
        # the standby followed the log through the failover too, up to the primary's last entry
        eventually(lambda: index(standby) == index(primary) is not None, 20, "the standby to catch up")
        assert ha(standby)["role"] == "standby"
        for node in nodes:
            assert "Traceback" not in node.log_text()
    finally:
        for node in nodes:
            node.cleanup()
