"""A real `redis-server` for the op-log tests: Debian's binary (tests/run.sh installs it),
on a free loopback port with its own directory, `appendonly yes` and `noeviction` as the
op log requires, stopped by its PID.

Fixtures (registered in tests/conftest.py): `redis_server` (one per test module) and
`redis_store`, a `--store` URL with a namespace of its own per test, so tests sharing one
Redis never see each other's log. Without redis-server the tests skip, except under
CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coredis
import pytest
import trio

from faktory_py.config import parse_store
from faktory_py.server.ha.backend import open_redis_backend
from faktory_py.store import job_queue
from faktory_py.store.memory import MemoryStore
from faktory_py.store.redis.entries import Position, decode_entry
from faktory_py.tools import processes
from helpers.model_replay import snapshot_records

#: the op log's settings for test servers: a short lease keeps kill -9 restarts quick
TEST_REDIS_TOML = "[faktory_py.redis]\nlease_ttl_ms = 2000\nrenew_every_ms = 400\n"


class RedisServer(processes.RedisServer):
    """faktory_py.tools.processes.RedisServer, skipped when redis-server is missing (failed under CI)."""

    def start(self, timeout: float = 10.0) -> None:
        if shutil.which("redis-server") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed (tests/run.sh installs it)")
            pytest.skip("redis-server is not installed (tests/run.sh installs it)")
        super().start(timeout)

    def linked(self) -> bool:
        """A replica: its link to the master is up (the initial sync done)."""
        replication = self._ask(lambda client: client.info("replication"))
        return replication.get("master_link_status") == "up"

    def _ask(self, call: Any) -> Any:
        """`call(client)`'s result, with a coredis client of this server (str replies)."""
        async def ask() -> Any:
            async with coredis.Redis(port=self.port, decode_responses=True) as client:
                return await call(client)
        return trio.run(ask)


class RedisSentinel(RedisServer):
    """`redis-server --sentinel` (Debian's redis-server binary runs as a Sentinel with it; no
    redis-sentinel package needed) watching `master` as `service`, quorum 1, declaring it
    down after `down_after_ms` without an answer (Sentinel's default is 30 s)."""

    def __init__(self, base: Path, service: str, master: RedisServer, down_after_ms: int) -> None:
        super().__init__(base)
        (base / "sentinel.conf").write_text(  # Sentinel rewrites its file: one of its own
            f"sentinel monitor {service} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} 10000\n")

    def arguments(self) -> list[str]:
        return [str(self.dir / "sentinel.conf"), "--sentinel", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir)]

    def master(self, service: str) -> int:
        """The port of the master the Sentinel names for `service` now."""
        return int(self._ask(lambda client: client.sentinel_get_master_addr_by_name(service))[1])

    def replicas(self, service: str) -> int:
        """How many replicas of `service`'s master the Sentinel sees up."""
        found = self._ask(lambda client: client.sentinel_replicas(service))
        return sum(1 for replica in found if not (replica["is_sdown"] or replica["is_disconnected"]))


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_store(redis_server: RedisServer) -> str:
    """A `--store` URL on `redis_server` with a namespace no other test uses."""
    return f"{redis_server.url}?name={unique_name()}"


def redis_conf(conf_dir: Path) -> None:
    """Give a server process's config dir the test lease timings (TEST_REDIS_TOML)."""
    (conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (conf_dir / "conf.d" / "redis.toml").write_text(TEST_REDIS_TOML)


def advertise(conf_dir: Path, port: int) -> None:
    """Give a server process's config dir the test lease timings and `advertise` its
    command port, so a standby forwards its clients to it while it is the primary."""
    redis_conf(conf_dir)
    with open(conf_dir / "conf.d" / "redis.toml", "a") as toml:
        toml.write(f'advertise = "127.0.0.1:{port}"\n')


def job_state(store: MemoryStore) -> list[Any]:
    """`store`'s snapshot without the epoch marker (a takeover appends its own, so two
    nodes, or two starts, with the same jobs differ in that op alone), each queue's jobs as
    one list: how a snapshot packs them into runs depends on how the queue was built (one
    PUSH at a time, or a snapshot's runs loaded), not on what it holds."""
    return [_queues_unpacked([op for op in record if op["op"] != "epoch"]) for record in snapshot_records(store)]


def _queues_unpacked(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`ops` with each queue's consecutive `enqueue`/`enqueue_packed` ops as one `enqueue`."""
    merged: list[dict[str, Any]] = []
    for op in ops:
        if op["op"] not in ("enqueue", "enqueue_packed"):
            merged.append(op)
            continue
        raws = op["raws"] if op["op"] == "enqueue" else list(job_queue.unpack(op["data"], op["ends"]))
        last = merged[-1] if merged else None
        if last is not None and last["op"] == "enqueue" and last["queue"] == op["queue"]:
            last["raws"] = [*last["raws"], *raws]
        else:
            merged.append({"op": "enqueue", "queue": op["queue"], "raws": raws})
    return merged


def read_log(store_url: str) -> list[list[dict[str, Any]]]:
    """Every record of the op log at `store_url` (a `--store` URL), in order: what the
    primaries appended, for checkers that account for each op (trimmed entries are gone)."""
    async def read() -> list[list[dict[str, Any]]]:
        async with open_redis_backend(parse_store(store_url, {}), "reader", 1 << 30) as backend:
            client, keys = backend.oplog.client, backend.oplog.keys
            records, position = [], Position()
            for item in await client.xrange(keys.log):
                entry, position = decode_entry(item.identifier, dict(item.field_values), position)
                records.append(entry.ops)
            return records

    return trio.run(read)
