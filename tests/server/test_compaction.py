"""Journal compaction: the journal is rewritten from live state while the server keeps serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from faktory_py.config import Config
from faktory_py.server.app import load_store, serve
from faktory_py.store.memory import MemoryStore


def summary(store: MemoryStore) -> dict[str, Any]:
    """Everything a store holds, in comparable form."""
    return {
        "queues": {name: list(jobs) for name, jobs in store.queues.items()},
        "paused": sorted(store.paused),
        "sets": {name: list(s.items()) for name, s in store.sets.items()},
        "working": list(store.working.items()),
        "counters": (store.processed, store.failures, store.history),
    }


async def test_compaction_keeps_state_and_drops_old_segments(tmp_path: Path) -> None:
    config = Config(binding="127.0.0.1:0", data_dir=tmp_path / "data", conf_dir=tmp_path / "conf",
                    compact_min_bytes=50_000)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, config)
            manager, clock = server.dispatcher.manager, server.dispatcher.clock
            for i in range(3000):
                now = clock.now()
                queue = "q%d" % (i % 3)
                manager.push({"jid": f"job-{i:08d}", "jobtype": "T", "args": [i, "x" * 20], "queue": queue}, now)
                if i % 2:
                    job, _ = manager.fetch([queue], "", now)
                    if i % 4 == 1:
                        manager.ack(job["jid"], now)
                    else:
                        manager.fail(job["jid"], "E", "boom", [], now)
                if i % 500 == 0:
                    server.durable.write()  # as a reply's send would
                    await trio.sleep(0)  # let the compaction task run while we go on
            manager.pause(["q1"])
            while server.durable.compactions < 2:
                await trio.sleep(0.01)
            expected = summary(manager.store)
            appended = server.durable.written
            server.shutdown()
    data = config.data_dir
    assert (data / "snapshot.fj").exists()
    segments = sorted(data.glob("journal.*.fj"))
    assert 1 <= len(segments) <= 2
    # The compacted journal is much smaller than the history it replaced.
    total = sum(p.stat().st_size for p in [data / "snapshot.fj", *segments])
    assert total < appended * 0.6
    store, journal = load_store(config)
    journal.close()
    assert summary(store) == expected
    assert len(expected["working"]) == 0 and len(expected["sets"]["retries"]) == 750
