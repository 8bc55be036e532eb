"""Cron as a feature: `[[cron]]` entries fire jobs through the PUSH path, each tick exactly once
across restarts and clock changes (protocol/spec.md §12).

Everything is derived from two things: the configured entries and each entry's journaled
`after` (every tick at or before it is done). The due timer asks `next_due` (the earliest
tick after some entry's `after`) and calls `run_due(now)`, which handles one entry's ticks
in (`after`, now] per call, in one commit: the job's PUSH ops and the `cron_tick` op that
moves `after` (a crash leaves both or neither). The timer comes straight back while
something is due, so each fire is its own commit and sees the effects of the previous one
(a unique lock, a throttled queue). A tick is never fired twice because `after` never moves
back: a clock that steps back, or a wall time repeated at a DST change, finds no tick after
it until time passes it again.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from ...core.hooks import Ended, JobPusher, Outcome
from ...core.registry import Feature, WebPage
from ...errors import ClientError, NotUnique
from ...store.api import AnyOp, Job, Op, Reservation, Store
from ...util.schedule import Schedule
from ...util.timefmt import format_time
from .state import COUNTS, CronState, EntryState

log = logging.getLogger("faktory_py.cron")

#: a tick this late (a busy server, a journal catching up) still counts as on time: it fires
#: whatever the `missed` policy; the web UI flags an entry whose next tick is later than this
ON_TIME = 60.0
#: what a fired job's `custom` carries (an underscore key: reserved for the server)
CRON_KEY = "_cron"


class Entry(Protocol):
    """A configured `[[cron]]` entry as the feature reads it (`config.CronEntry`)."""

    id: str
    schedule: Schedule
    job: str
    fingerprint: str
    name: str | None
    missed: str
    max_lateness: float
    max_catch_up: int
    overlap: str
    source: str


class NoSuchEntry(LookupError):
    """An "enqueue now" named an entry that is not configured."""



class Cron:
    """The configured entries and their journaled state (one per server)."""

    def __init__(self, store: Store, entries: Iterable[Entry], warnings: Sequence[str] = ()) -> None:
        self.store = store
        self.entries: dict[str, Entry] = {entry.id: entry for entry in entries}
        self.warnings = tuple(warnings)
        #: why the last configuration reload was rejected (None after a good one): the Cron
        #: tab shows it, the old entries going on firing meanwhile
        self.reload_error: str | None = None
        #: the PUSH path (the `Manager`, given through `use_pusher`): it runs the other features'
        #: hooks, so a fire is unique-checked, expired, tracked, throttled like any job
        self.pusher: JobPusher | None = None
        #: wakes the due timer (the server sets it), after a FLUSH restarted every entry
        self.wake: Callable[[float], None] = lambda when: None
        self.state = CronState(self._next_tick, self._flushed)
        self._next: dict[str, float] = {}
        store.register_state(self.state)

    def feature(self) -> Feature:
        """How it plugs in: a timer, the hooks that record how fired jobs fare (a FAIL to be
        retried, and every way a job ends; only while entries exist, so a server without cron
        pays nothing on ACK), INFO fields, the Cron tab (listed while entries exist or a
        reload was rejected) and the CRON command."""
        live = self if self.entries else None
        return Feature("cron", self, timed=self, finish=live, end=live, info=self, pushes=self,
                       pages=(WebPage("cron", "Cron", listed=self.tab_shown),), commands=("CRON",))

    @property
    def tab_shown(self) -> bool:
        """The Cron tab is there while entries exist or the last reload was rejected (its
        error must be seen)."""
        return bool(self.entries) or self.reload_error is not None

    def reconfigure(self, entries: Iterable[Entry], warnings: Sequence[str]) -> Feature:
        """Put a reloaded configuration's entries in force; the next `run_due` journals what
        changed (protocol/spec.md §12.3: new entries start now, removed ones are forgotten, a
        named entry that changed keeps its history). Returns the feature's new record."""
        self.entries = {entry.id: entry for entry in entries}
        self.warnings = tuple(warnings)
        self._next.clear()
        return self.feature()

    # --- timing -----------------------------------------------------------------------

    def _flushed(self) -> None:
        """FLUSH wiped the state: every entry starts again at the timer's next run (now)."""
        self._next.clear()
        self.wake(0.0)

    def _next_tick(self, entry_id: str, after: float) -> float | None:
        """The first tick of `entry_id` after `after` (cached; None when not configured)."""
        entry = self.entries.get(entry_id)
        if entry is None:
            self._next.pop(entry_id, None)
            return None
        self._next[entry_id] = tick = entry.schedule.next_after(after)
        return tick

    def next_tick(self, entry_id: str) -> float | None:
        """When `entry_id` next fires (None before its state exists)."""
        cached = self._next.get(entry_id)
        if cached is not None:
            return cached
        state = self.state.entries.get(entry_id)
        return None if state is None else self._next_tick(entry_id, state.after)

    def _unreconciled(self) -> bool:
        """Do the entries and their state disagree (boot, reload, FLUSH)?"""
        states = self.state.entries
        return (states.keys() != self.entries.keys()
                or any(states[i].fingerprint != e.fingerprint for i, e in self.entries.items()))

    def next_due(self) -> float | None:
        if self._unreconciled():
            return 0.0
        ticks = [tick for entry_id in self.entries if (tick := self.next_tick(entry_id)) is not None]
        return min(ticks, default=None)

    def run_due(self, now: float) -> list[AnyOp]:
        """First bring the state in line with the entries (one commit), then handle the
        ticks of the entry due first, one entry per call."""
        if self._unreconciled():
            return self._reconcile(now)
        due = [(tick, entry_id) for entry_id in self.entries
               if (tick := self.next_tick(entry_id)) is not None and tick <= now]
        if not due:
            return []
        _tick, entry_id = min(due)
        return self._handle(self.entries[entry_id], self.state.entries[entry_id], now)

    def _reconcile(self, now: float) -> list[AnyOp]:
        ops: list[AnyOp] = [{"op": "cron_forget", "id": entry_id}
                            for entry_id in self.state.entries if entry_id not in self.entries]
        for entry_id, entry in self.entries.items():
            state = self.state.entries.get(entry_id)
            if state is None or state.fingerprint != entry.fingerprint:
                ops.append({"op": "cron_start", "id": entry_id, "fingerprint": entry.fingerprint, "after": now})
        return ops

    def _handle(self, entry: Entry, state: EntryState, now: float) -> list[AnyOp]:
        """The ticks of `entry` in (`after`, now] under its `missed` policy: with `all`, the
        oldest still to fire (at most `max_catch_up` of them fire, the older ones are missed);
        else the latest, which fires when on time, or (`latest`) less than `max_lateness`
        late, and the older ones are missed."""
        keep = entry.max_catch_up if entry.missed == "all" else 1
        count, recent = entry.schedule.due(state.after, now, keep)
        if not recent:
            return []
        if entry.missed == "all":
            tick, missed, fires = recent[0], count - len(recent), True
        else:
            tick, missed = recent[-1], count - 1
            late = now - tick
            fires = late <= ON_TIME or (entry.missed == "latest" and late < entry.max_lateness)
        if not fires:
            return [self._tick_op(entry, tick, now, None, "missed", missed)]
        if entry.overlap == "skip" and state.last_jid is not None and self._live(state.last_jid, entry):
            return [self._tick_op(entry, tick, now, None, "skipped", missed)]
        return self._fire(entry, now, lambda jid, outcome: self._tick_op(entry, tick, now, jid, outcome, missed),
                          {"id": entry.id, "tick": format_time(tick)})

    @staticmethod
    def _tick_op(entry: Entry, tick: float, now: float, jid: str | None, outcome: str, missed: int) -> Op:
        return {"op": "cron_tick", "id": entry.id, "tick": tick, "at": now, "jid": jid, "outcome": outcome,
                "missed": missed}

    def _job(self, entry: Entry, now: float, mark: dict[str, Any]) -> Job:
        """A fresh job from `entry`'s template (the canonical entry is never changed),
        created now, with `custom._cron` = `mark`."""
        job = json.loads(entry.job)
        job["jid"] = secrets.token_hex(12)
        job["created_at"] = format_time(now)
        job["custom"] = {**job.get("custom", {}), CRON_KEY: mark}
        return job

    def use_pusher(self, pusher: JobPusher) -> None:
        self.pusher = pusher

    def _push(self, job: Job, now: float) -> list[AnyOp]:
        assert self.pusher is not None, "the Manager gives its pusher"
        return self.pusher.push_ops(job, now)

    def _fire(self, entry: Entry, now: float, record: Callable[[str | None, str], Op],
              mark: dict[str, Any]) -> list[AnyOp]:
        """The PUSH of a fresh job built from `entry`'s template, and `record(jid, outcome)`.
        A refused PUSH is recorded, never retried: NOTUNIQUE as `denied`, anything else as
        `error` (logged), so no tick can stall the timer."""
        job = self._job(entry, now, mark)
        try:
            return [*self._push(job, now), record(job["jid"], "fired")]
        except NotUnique:
            return [record(None, "denied")]
        except ClientError as exc:
            log.error("cron entry %s: its job was refused: %s", entry.id, exc.line)
        except Exception:
            log.exception("cron entry %s: its job could not be pushed", entry.id)
        return [record(None, "error")]

    def _live(self, jid: str, entry: Entry) -> bool:
        """Is `jid` still queued, scheduled, reserved or waiting for a retry (`overlap =
        "skip"`)? A scan of the entry's queue at worst, once per tick of such an entry."""
        store = self.store
        if store.reservation(jid) is not None or any(store.set_entry(s, jid) for s in ("scheduled", "retries")):
            return True
        queue = json.loads(entry.job)["queue"]
        return any(job["jid"] == jid for job in store.queued(queue))

    def enqueue_now(self, entry_id: str, now: float) -> list[AnyOp]:
        """"Enqueue now" (the web UI): one PUSH of the entry's job, recorded in its history,
        no tick done (the schedule is untouched). Raises NoSuchEntry, or the PUSH's
        ClientError (NOTUNIQUE …)."""
        entry = self.entries.get(entry_id)
        if entry is None or entry_id not in self.state.entries:
            raise NoSuchEntry(entry_id)
        job = self._job(entry, now, {"id": entry_id, "tick": None})
        return [*self._push(job, now), {"op": "cron_manual", "id": entry_id, "at": now, "jid": job["jid"]}]

    # --- how fired jobs end -----------------------------------------------------------

    def _outcome(self, job: Job, outcome: str) -> list[Op]:
        mark = (job.get("custom") or {}).get(CRON_KEY)
        if not isinstance(mark, dict) or mark.get("id") not in self.state.entries:
            return []
        return [{"op": "cron_outcome", "id": mark["id"], "jid": job["jid"], "outcome": outcome}]

    def on_ack(self, res: Reservation, now: float) -> list[Op]:
        return []  # its end (`success`) comes through on_end

    def on_fail(self, res: Reservation, failed: Job, outcome: Outcome, now: float) -> list[Op]:
        """`failed`: FAILed and waiting for a retry (not an end: on_end reports the others)."""
        return self._outcome(res.job, "failed") if outcome is Outcome.RETRY else []

    def on_end(self, ended: Sequence[Ended], now: float) -> list[Op]:
        """`success`, `dead`, `discarded`, `expired` or `deleted`: how a fired job left."""
        return [op for end in ended for op in self._outcome(end.job, end.ending.value)]

    # --- reading ----------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        totals = dict.fromkeys(COUNTS, 0)
        for entry_id in self.entries:
            state = self.state.entries.get(entry_id)
            if state is not None:
                for key in COUNTS:
                    totals[key] += state.counts[key]
        return totals

    def info_fields(self) -> dict[str, Any]:
        """`cron` in INFO's `faktory` block, only when entries exist."""
        if not self.entries:
            return {}
        return {"cron": {"entries": len(self.entries), **self.totals()}}

    def overdue(self, entry_id: str, now: float) -> bool:
        """Is the entry's next tick more than ON_TIME in the past (a timer that stopped)?"""
        tick = self.next_tick(entry_id)
        return tick is not None and now - tick > ON_TIME

    def describe(self, entry_id: str, now: float) -> dict[str, Any]:
        """One entry as CRON STATUS shows it (protocol/spec.md §12.4)."""
        entry = self.entries[entry_id]
        state = self.state.entries.get(entry_id)
        next_at = self.next_tick(entry_id)
        described: dict[str, Any] = {"id": entry_id}
        if entry.name is not None:
            described["name"] = entry.name
        described.update({
            "schedule": entry.schedule.expression, "timezone": entry.schedule.timezone, "job": json.loads(entry.job),
            "missed_policy": entry.missed, "overlap": entry.overlap, "source": entry.source,
            "next_at": None if next_at is None else format_time(next_at),
            "last_tick": None if state is None or state.last_tick is None else format_time(state.last_tick),
            "last_jid": None if state is None else state.last_jid,
            "counts": dict.fromkeys(COUNTS, 0) if state is None else dict(state.counts),
            "overdue": self.overdue(entry_id, now)})
        return described

    def status(self, now: float) -> list[dict[str, Any]]:
        return [self.describe(entry_id, now) for entry_id in self.entries]

    def history(self, entry_id: str) -> list[dict[str, Any]]:
        """The entry's last fires, newest first, times in RFC 3339."""
        state = self.state.entries.get(entry_id)
        if state is None:
            return []
        return [{**record, "tick": None if record["tick"] is None else format_time(record["tick"]),
                 "at": format_time(record["at"])} for record in reversed(state.history)]
