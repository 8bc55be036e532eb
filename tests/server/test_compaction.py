"""Journal compaction: the journal is rewritten from live state while the server keeps serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from faktory_py.config import Config
from faktory_py.server.app import load_store, serve
from faktory_py.store.api import JOB_SETS
from faktory_py.store.memory import MemoryStore


def summary(store: MemoryStore) -> dict[str, Any]:
    """Everything a store holds, in comparable form."""
    stats = store.statistics()
    return {
        "queues": {name: list(store.queued(name)) for name in store.queue_names()},
        "paused": sorted(stats.paused),
        "sets": {name: list(store.set_entries(name)) for name in JOB_SETS},
        "working": list(store.reservations()),
        "counters": (stats.processed, stats.failures, store.daily_counts()),
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
            # Compactions may all have run while the jobs above were pushed; go on with jobs that
            # leave nothing behind until two more have run: the second of them started after all
            # of the above, so the snapshot covers that history and the last segment only a tail.
            later = server.durable.compactions + 2
            i = 0
            while server.durable.compactions < later:
                now = clock.now()
                manager.push({"jid": f"filler-{i:08d}", "jobtype": "T", "args": [], "queue": "filler"}, now)
                job, _ = manager.fetch(["filler"], "", now)
                manager.ack(job["jid"], now)
                i += 1
                if i % 50 == 0:
                    server.durable.write()
                    await trio.sleep(0.001)
            expected = summary(manager.store)
            server.durable.write()  # what is still pending reaches the file at the stop: count it
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
