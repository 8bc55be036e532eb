"""B-T13: hypothesis over random schedules (5 fields, 6 fields with seconds first, `@every`), time
zones, missed-tick policies, downtimes (restarts from the journal) and wall-clock steps, on the
server's semantics without I/O (tests/helpers/cron.py). Per entry, the ticks fired are strictly
increasing, no tick fires twice, and they are exactly the ticks a small model of protocol/spec.md
§12.3 expects. The model enumerates ticks with the same `Schedule` (cronsim), but decides
what fires on its own: while the server runs, every tick fires on time; after a downtime or a
forward step, `latest` fires the last tick if it is at most 60 s late or less than
`max_lateness` late, `skip` only if at most 60 s late, `all` the last `max_catch_up` ticks;
after a backward step nothing fires until time passes the last tick handled."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faktory_py.config import CronEntry
from faktory_py.features.cron.feature import ON_TIME
from helpers.cron import CronServer, cron_entries, utc

ZONES = ("UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata", "Australia/Lord_Howe")

five_fields = st.builds(
    lambda minute, hour, day: f"{minute} {hour} {day} * *",
    st.sampled_from(["*", "*/5", "*/7", "0", "30", "15,45", "0-10/3"]),
    st.sampled_from(["*", "*/2", "1", "2", "1-3", "*/5"]),
    st.sampled_from(["*", "*", "1", "L"]))
six_fields = st.builds(lambda seconds, minute: f"{seconds} {minute} * * * *",
                       st.sampled_from(["*/10", "*/15", "0", "5,35"]), st.sampled_from(["*", "*/2", "30"]))
every = st.sampled_from(["@every 10s", "@every 45s", "@every 1m30s", "@every 7m", "@every 1h", "@every 2h15m"])
nickname = st.sampled_from(["@hourly", "@daily"])


@st.composite
def entries(draw: st.DrawFn) -> dict:
    return {"schedule": draw(st.one_of(five_fields, six_fields, every, nickname)),
            "timezone": draw(st.sampled_from(ZONES)),
            "missed": draw(st.sampled_from(["latest", "skip", "all"])),
            "max_lateness": draw(st.sampled_from([0, 30, 600, 3600, 86400])),
            "max_catch_up": draw(st.sampled_from([1, 3, 100]))}


#: ("run", s): the server runs s seconds; ("down", s): it stops, and starts s seconds later on
#: its journal; ("step", s): the wall clock jumps by s (back when negative) while it runs
events = st.lists(st.one_of(
    st.tuples(st.just("run"), st.integers(1, 3 * 3600)),
    st.tuples(st.just("down"), st.integers(1, 3 * 86400)),
    st.tuples(st.just("step"), st.integers(-2 * 3600, 6 * 3600))), min_size=1, max_size=6)

#: 2026-01-01 … 2027-12-31, DST changes of every zone included
starts = st.integers(int(utc(2026, 1, 1)), int(utc(2027, 12, 31))).map(float)


@dataclass
class Model:
    """One entry as protocol/spec.md §12.3 says it fires."""

    entry: CronEntry
    #: every tick at or before this is handled
    done: float
    fired: list[float] = field(default_factory=list)

    def ticks(self, until: float) -> list[float]:
        found, tick = [], self.entry.schedule.next_after(self.done)
        while tick <= until:
            found.append(tick)
            tick = self.entry.schedule.next_after(tick)
        return found

    def run(self, until: float) -> None:
        """The server runs: each tick fires at its instant."""
        ticks = self.ticks(until)
        self.fired += ticks
        self.done = ticks[-1] if ticks else self.done

    def wake(self, now: float) -> None:
        """The timer wakes at `now` after a downtime or a clock step."""
        ticks = self.ticks(now)
        if not ticks:
            return
        late = now - ticks[-1]
        policy = self.entry.missed
        if policy == "all":
            self.fired += ticks[-self.entry.max_catch_up:]
        elif late <= ON_TIME or (policy == "latest" and late < self.entry.max_lateness):
            self.fired.append(ticks[-1])
        self.done = ticks[-1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries(), min_size=1, max_size=3), starts, events)
def test_fires_match_the_model(tables: list[dict], start: float, steps: list[tuple[str, int]]) -> None:
    config = cron_entries(*tables)
    server = CronServer(config, start)
    server.run_timer()
    models = [Model(entry, start) for entry in config.entries]
    now = start
    for kind, seconds in steps:
        now += seconds
        if kind == "run":
            server.advance(now)
            for model in models:
                model.run(now)
        elif kind == "down":
            server = server.restart(config, now)
            for model in models:
                model.wake(now)
        else:
            server.step_clock(now)
            for model in models:
                model.wake(now)
    for model in models:
        fired = server.fired(model.entry)
        assert all(a < b for a, b in zip(fired, fired[1:])), fired
        assert fired == model.fired
    pushed = [job["custom"]["_cron"] for job in server.pushed()]
    assert len({(mark["id"], mark["tick"]) for mark in pushed}) == len(pushed) == len(server.fired())
