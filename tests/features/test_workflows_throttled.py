"""Dependent jobs through a `concurrency = 1` throttle, unpartitioned and partitioned by
`custom.tenant` (protocol/spec.md §11.8, §14): A-T13 and C-T8, the Oban Pro 1.3.1 regression
transposed. Workers with synchronous ACKs run a 3-step chain, a 10 → 1 fan-in and, per tenant
for two tenants, a diamond a → {b, c} → d, on an in-process server whose MockClock never moves
(so no FETCH ever times out: with work left and no worker holding a job, the test fails at once).

Whenever every task has settled, after each push and each ACK:
* L1: no waiting FETCH has a job in its queue it may take (test_throttles_liveness.py's check),
  and INFO `server.fetches_waiting` counts exactly the FETCHes the workers have outstanding;
* held jobs never count in THROTTLE STATUS `waiting`, in total or per partition: with L1 every
  queued job waits on a full partition, so `waiting` is exactly the queued jobs, by tenant;
* S1: at most one reservation per partition;
and every job runs once, only after all of its dependencies were ACKed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from helpers.async_client import AsyncClient
from test_throttles_liveness import Fetcher, stuck

from faktory_py.config import Config, Throttle, ThrottlesConfig
from faktory_py.server.app import Server, serve

#: name → (tenant, dependencies); pushed dependents first, so each is held when pushed
CHAIN = {"c3": ("x", ("c2",)), "c2": ("x", ("c1",)), "c1": ("x", ())}
FAN_IN = {"sink": ("y", tuple(f"f{i}" for i in range(10))),
          **{f"f{i}": ("xy"[i % 2], ()) for i in range(10)}}
DIAMONDS = {f"{step}-{tenant}": (tenant, tuple(f"{dep}-{tenant}" for dep in deps))
            for tenant in "xy"
            for step, deps in (("d", ("b", "c")), ("b", ("a",)), ("c", ("a",)), ("a", ()))}
WIDS = ("A", "B", "C")


def jid(name: str) -> str:
    return f"jid-{name:0>6}"


def job(name: str, tenant: str, after: tuple[str, ...]) -> dict[str, Any]:
    custom: dict[str, Any] = {"tenant": tenant}
    if after:
        custom["after"] = [jid(dep) for dep in after]
    return {"jid": jid(name), "jobtype": "Step", "args": [name], "queue": "lim", "custom": custom}


def tenant_of(job: dict[str, Any]) -> str:
    return job["custom"]["tenant"]


async def check_step(server: Server, producer: AsyncClient, fetchers: list[Fetcher], partitioned: bool) -> None:
    """L1, `waiting` = the queued jobs (never the held ones), S1 — once every task settled."""
    await trio.testing.wait_all_tasks_blocked()
    assert stuck(server, fetchers) == []
    store = server.dispatcher.manager.store
    queued = list(store.queued("lim"))
    reserved = Counter(tenant_of(res.job) if partitioned else None for res in store.reservations())
    assert all(n <= 1 for n in reserved.values()), reserved
    status = json.loads(await producer.command("THROTTLE STATUS lim"))["lim"]
    document = await producer.info()
    # the FETCHes the test believes blocked are the server's (INFO server.fetches_waiting, ours)
    assert document["server"]["fetches_waiting"] == sum(1 for f in fetchers if f.queues is not None)
    info = document["faktory"]
    assert status["waiting"] == len(queued) == info["queues"].get("lim", 0)
    assert info["throttles"]["lim"]["waiting"] == len(queued)
    by_partition = {json.dumps(p["key"]): p["waiting"] for p in status["by_partition"] if p["waiting"]}
    queued_by = Counter(json.dumps([tenant_of(job)] if partitioned else None) for job in queued)
    assert by_partition == dict(queued_by)


@pytest.mark.parametrize("workload", [CHAIN, FAN_IN, DIAMONDS], ids=["chain", "fan-in", "diamonds"])
@pytest.mark.parametrize("partitioned", [False, True], ids=["one-partition", "by-tenant"])
async def test_dependent_jobs_through_a_concurrency_one_throttle_complete(
        tmp_path: Path, mock_clock: trio.testing.MockClock, workload: dict[str, Any], partitioned: bool) -> None:
    throttle = Throttle("lim", timeout=60, concurrency=1, partition=("custom.tenant",) if partitioned else ())
    config = Config(binding="127.0.0.1:0", data_dir=tmp_path / "data", conf_dir=tmp_path / "conf",
                    fsync="no", throttles=ThrottlesConfig((throttle,)))
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(serve, config)
        producer = await AsyncClient.connect(server.port)
        fetchers = [Fetcher(await AsyncClient.connect(server.port, wid=wid), wid) for wid in WIDS]
        for fetcher in fetchers:
            nursery.start_soon(fetcher.run_fetch, ("lim",))
        for name, (tenant, after) in workload.items():
            assert await producer.push(job(name, tenant, after)) == b"OK"
            await check_step(server, producer, fetchers, partitioned)
        dependents = sum(1 for _tenant, after in workload.values() if after)
        assert (await producer.info())["faktory"]["workflows"]["held"] == dependents
        acked: list[str] = []
        while len(acked) < len(workload):
            holding = [f for f in fetchers if f.held]
            assert holding, f"no job reserved, yet {set(workload) - set(acked)} never ran"
            fetcher = holding[0]
            got = fetcher.held.pop()
            name = got.removeprefix("jid-").lstrip("0")
            assert name not in acked and set(workload[name][1]) <= set(acked)
            assert await fetcher.client.json_command("ACK", {"jid": got}) == b"OK"
            acked.append(name)
            await check_step(server, producer, fetchers, partitioned)  # the others' FETCHes take the slot
            nursery.start_soon(fetcher.run_fetch, ("lim",))
            await check_step(server, producer, fetchers, partitioned)
        info = (await producer.info())["faktory"]
        assert info["workflows"]["held"] == 0 and info["queues"]["lim"] == 0
        assert info["throttles"]["lim"]["in_use"] == 0
        server.shutdown()
        nursery.cancel_scope.cancel()
