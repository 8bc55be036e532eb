"""A journal write that fails stops the server before anything more is acknowledged.

Memory already holds the ops of a write that failed, so the server must not answer
anyone again (a later reply could rely on them); it stops, and a restart replays the
consistent prefix the file holds.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import trio

from async_client import AsyncClient
from faktory_py.config import Config
from faktory_py.server import load_store, serve
from faktory_py.store.durability import JournalFailed


def job(jid: str) -> dict[str, object]:
    return {"jid": jid, "jobtype": "T", "args": [], "queue": "q"}


async def test_failed_write_answers_nobody_and_stops_the_server(tmp_path: Path) -> None:
    config = Config(binding="127.0.0.1:0", data_dir=tmp_path / "data", conf_dir=tmp_path / "conf", fsync="always")
    with trio.fail_after(30):
        with pytest.raises(BaseExceptionGroup) as stopped:  # serve() raised it inside our nursery
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve, config)
                first = await AsyncClient.connect(server.port)
                assert await first.push(job("kept-000000001")) == b"OK"
                other = await AsyncClient.connect(server.port)

                def disk_full(_record: object) -> int:
                    raise OSError(errno.ENOSPC, "No space left on device")

                server.durable.journal.append = disk_full
                await first.send('PUSH {"jid":"lost-000000001","jobtype":"T","args":[],"queue":"q"}')
                await first.wait_closed()  # no +OK: the connection closes unanswered
                await other.send("INFO")  # nor does anyone else get an answer
                await other.wait_closed()
    assert stopped.value.subgroup(JournalFailed) is not None, stopped.value

    store, journal = load_store(config)
    journal.close()
    assert [j["jid"] for j in store.queues["q"]] == ["kept-000000001"]
