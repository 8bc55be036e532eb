"""What the command path costs per job without sockets: N jobs through `Dispatcher.handle`.

The measuring stick of issue 15's dispatcher work (bench/README.md, "Dispatcher cost"): the
server's own dispatcher, lifecycle, default features (as `server/app.py` builds them), a
real `MemoryStore` whose sink is the server's `DurableJournal` over a journal in a temporary
directory (so every commit is packed as it is when serving), and the server's fetch waiters.
Each verb runs N times in its own phase — N PUSHes of a job shaped like the Go client's (as
Faktory's load tool sends it), N FETCHes, N ACKs — then N whole jobs interleaved (PUSH, FETCH,
ACK per job, as R1 runs them). The journal is written between chunks of commands, outside the
timed regions (the I/O loop's batch write is not the dispatcher's cost).

    python3 -m bench.dispatch_cost [--jobs 20000] [--reps 5] [--profile FILE]

prints the best of `--reps` runs in CPU µs per command for each phase; `--profile` writes a
cProfile of one extra run (`python3 -m pstats FILE`) instead of timing.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import tempfile
import time
import uuid
from collections.abc import Callable

from faktory_py import wire
from faktory_py.commands.dispatch import Dispatcher, Session
from faktory_py.commands.features import register_feature_commands
from faktory_py.config import Timers
from faktory_py.core.info import ServerStats
from faktory_py.core.lifecycle import Manager
from faktory_py.core.workers import WorkerRegistry
from faktory_py.server.app import enterprise_features
from faktory_py.server.durability import DurableJournal
from faktory_py.server.waiters import QueueWaiters
from faktory_py.store.journal import Journal
from faktory_py.store.memory import MemoryStore
from faktory_py.wire.handshake import Hello

#: commands between two journal writes (the I/O loop writes once per batch of ready sockets)
CHUNK = 200
PHASES = ("PUSH", "FETCH", "ACK", "job")


class Clock:
    def now(self) -> float:
        return time.time()


class Bench:
    """One server's command path over a fresh journal in `directory`."""

    def __init__(self, directory: str) -> None:
        journal = Journal.open(directory, fsync="no")
        for _record in journal.replay():  # a fresh directory: this only opens it for appends
            pass
        self.durable = DurableJournal(journal, "no", 1 << 40)
        waiters = QueueWaiters()
        store = MemoryStore()
        features = enterprise_features(store)
        store.wire(self.durable.append, waiters.notify, lambda when: None)
        clock = Clock()
        self.dispatcher = Dispatcher(Manager(store, features=features), WorkerRegistry(Timers.heartbeat_timeout),
                                     clock, self.durable, waiters, ServerStats(started_at=clock.now()),
                                     Timers.fetch_timeout)
        register_feature_commands(self.dispatcher, features)
        self.producer = Session(conn_id=1)
        wid = uuid.uuid4().hex[:12]
        self.consumer = Session(conn_id=2, wid=wid)
        self.consumer.worker = self.dispatcher.workers.register(Hello(wid=wid, hostname="bench", pid=1), 2,
                                                                lambda: None, clock.now())

    def run(self, commands: list[tuple[Session, wire.Command]]) -> float:
        """CPU seconds spent in `handle` for `commands` (CPU time, not wall time: the machine is
        shared, and preemption would count against us); the journal is written between chunks."""
        handle, write, perf_counter = self.dispatcher.handle, self.durable.write, time.process_time
        spent = 0.0
        for start in range(0, len(commands), CHUNK):
            chunk = commands[start:start + CHUNK]
            began = perf_counter()
            for session, command in chunk:
                reply = handle(session, command)
                if reply.data is None or reply.data[:1] == b"-":
                    raise RuntimeError(f"{command.verb} answered {reply}")
            spent += perf_counter() - began
            write()
        return spent


def push_line(jid: str) -> str:
    """A job as the Go client encodes it (Faktory's load tool: `client.NewJob("SomeJob", 1, "string", 3)`)."""
    return json.dumps({"jid": jid, "queue": "default", "jobtype": "SomeJob", "args": [1, "string", 3],
                       "created_at": "2026-01-01T00:00:00.000000Z", "retry": 25}, separators=(",", ":"))


def one_run(jobs: int, directory: str, wrap: Callable[[Callable[[], None]], None] | None = None) -> dict[str, float]:
    """µs per command of each phase (see module doc)."""
    bench = Bench(directory)
    producer, consumer = bench.producer, bench.consumer
    jids = [uuid.uuid4().hex for _ in range(2 * jobs)]
    fetch = wire.Command("FETCH", "default")
    first, second = jids[:jobs], jids[jobs:]
    phases = {
        "PUSH": [(producer, wire.Command("PUSH", push_line(jid))) for jid in first],
        "FETCH": [(consumer, fetch)] * jobs,
        "ACK": [(consumer, wire.Command("ACK", json.dumps({"jid": jid}))) for jid in first],
        "job": [entry for jid in second for entry in ((producer, wire.Command("PUSH", push_line(jid))),
                                                      (consumer, fetch),
                                                      (consumer, wire.Command("ACK", json.dumps({"jid": jid}))))],
    }
    out: dict[str, float] = {}

    def body() -> None:
        for name in PHASES:
            out[name] = bench.run(phases[name]) * 1e6 / jobs

    try:
        if wrap is None:
            body()
        else:
            wrap(body)
    finally:
        bench.durable.journal.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of one run instead of timing")
    args = parser.parse_args(argv)
    if args.profile:
        with tempfile.TemporaryDirectory() as directory:
            profiler = cProfile.Profile()
            one_run(args.jobs, directory, lambda body: profiler.runcall(body))
            profiler.dump_stats(args.profile)
        return
    best: dict[str, float] = {}
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory() as directory:
            for name, cost in one_run(args.jobs, directory).items():
                best[name] = min(cost, best.get(name, cost))
    print(f"{args.jobs} jobs, best of {args.reps} (CPU µs per command; job = PUSH + FETCH + ACK)")
    for name in PHASES:
        print(f"  {name:<6} {best[name]:7.2f}")


if __name__ == "__main__":
    main()
