"""B-T3 on a real server process: `kill -9` right after a fire's journal write (the moment the
journal file grows), and at other moments, while an every-second entry with `missed = "all"`
fires; after each restart the missed ticks fire. In the end every tick from the first to the
last has exactly one job: none twice, none lost (protocol/spec.md §12.3)."""

from __future__ import annotations

import time

import pytest

from helpers.polling import eventually
from helpers.rawclient import RawClient
from helpers.servers import ServerProcess
from faktory_py.util.timefmt import parse_time

EVERY_SECOND = """
[[cron]]
  schedule = "* * * * * *"
  name = "second"
  missed = "all"
  [cron.job]
    type = "Second"
    queue = "cron"
"""


def write_cron(server: ServerProcess, text: str) -> None:
    conf_d = server.conf_dir / "conf.d"
    conf_d.mkdir(exist_ok=True)
    (conf_d / "cron.toml").write_text(text)


def fired(server: ServerProcess) -> int:
    with RawClient(server.port) as client:
        assert client.handshake() == b"OK"
        return client.info()["faktory"].get("cron", {}).get("fired", 0)


def journal_size(server: ServerProcess) -> int:
    return sum(path.stat().st_size for path in server.data_dir.glob("journal.*.fj"))


def kill_when_the_journal_grows(server: ServerProcess) -> None:
    """SIGKILL the moment the journal file grows (an idle server writes nothing else: the
    fire's record was just written, its effects not yet seen by anyone)."""
    size = journal_size(server)
    deadline = time.monotonic() + 10
    while journal_size(server) == size:
        assert time.monotonic() < deadline, "no fire within 10 s"
    server.kill()


@pytest.mark.timeout(120)
def test_kill_9_around_fires_leaves_each_tick_exactly_once(server_factory) -> None:
    server = server_factory(start=False)
    write_cron(server, EVERY_SECOND)
    server.start()
    for round_ in range(4):
        target = fired(server) + 2
        eventually(lambda: fired(server) >= target, 10, "two more fires")
        if round_ % 2 == 0:
            kill_when_the_journal_grows(server)
        else:
            server.kill()
        server.start()
    eventually(lambda: fired(server) >= 12, 15, "fires after the last restart")
    write_cron(server, "")  # no more entries: nothing fires while the queue is drained
    server.kill()
    server.start()
    with RawClient(server.port) as client:
        assert client.handshake() == b"OK"
        size = client.info()["faktory"]["queues"]["cron"]
        ticks = []
        for _ in range(size):
            job = client.fetch("cron")
            ticks.append(parse_time(job["custom"]["_cron"]["tick"]))
        assert client.info()["faktory"]["queues"]["cron"] == 0
    assert len(ticks) == len(set(ticks)), "a tick fired twice"
    assert ticks == sorted(ticks)
    assert ticks == [ticks[0] + i for i in range(len(ticks))], "a tick was lost"
    assert len(ticks) >= 12
