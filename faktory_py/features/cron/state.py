"""What the server remembers of each cron entry, changed only by the feature's journaled ops
(protocol/spec.md §12.3), so a restart rebuilds it exactly and a tick is never fired twice.

Ops (journal form):

* `cron_start {id, fingerprint, after}`: an entry starts being scheduled (new, or a named entry
  whose schedule or job changed: it keeps its history, and `after` only moves forward);
* `cron_tick {id, tick, at, jid, outcome, missed}`: a scheduled tick was handled at `at`
  (`outcome` `fired`, `denied`, `skipped` or `error`, or `missed` when the tick itself was
  not fired), and `missed` older ticks before it were not; ticks up to `tick` are done;
* `cron_manual {id, at, jid}`: "enqueue now" (no tick is done by it);
* `cron_outcome {id, jid, outcome}`: how a fired job fared: `failed` (to be retried), or how it
  ended (`success`, `dead`, `discarded`, `expired`, `deleted`);
* `cron_forget {id}`: the entry was removed from the configuration;
* `cron_state {id, state}`: a snapshot's copy of an entry's whole state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...store.api import Op

#: fires a history page shows (and the state keeps) per entry
HISTORY = 25
#: counters per entry, and INFO's `faktory.cron` (protocol/spec.md §12.4)
COUNTS = ("fired", "missed", "denied", "skipped")


@dataclass
class EntryState:
    """One entry's journaled state."""

    fingerprint: str
    #: every tick at or before this instant is done (fired, denied, skipped or missed); it is
    #: never moved back, which is what keeps a tick from firing twice
    after: float
    #: the most recent tick that was handled by firing (not a missed one), and its job
    last_tick: float | None = None
    last_jid: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    #: the last HISTORY records, oldest first: {"tick", "at", "jid", "outcome"[, "missed"]}
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def encode(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "after": self.after, "last_tick": self.last_tick,
                "last_jid": self.last_jid, "counts": dict(self.counts), "history": [dict(r) for r in self.history]}

    @classmethod
    def decode(cls, data: dict[str, Any]) -> EntryState:
        return cls(data["fingerprint"], data["after"], data["last_tick"], data["last_jid"], dict(data["counts"]),
                   deque(data["history"], maxlen=HISTORY))


class CronState:
    """Entry id → EntryState, a `StateOwner` of the store (applied on live commits and replay
    alike; part of every snapshot; FLUSH wipes it)."""

    op_names = ("cron_start", "cron_tick", "cron_manual", "cron_outcome", "cron_forget", "cron_state")

    def __init__(self, next_tick: Callable[[str, float], float | None], on_flush: Callable[[], None]) -> None:
        #: (entry id, after) → its next tick, None for an entry no longer configured: what an
        #: applied op returns, so the due timer wakes for it
        self._next_tick = next_tick
        self._on_flush = on_flush
        self.entries: dict[str, EntryState] = {}

    def apply(self, op: Op) -> float | None:
        kind, entry_id = op["op"], op["id"]
        if kind == "cron_state":
            self.entries[entry_id] = EntryState.decode(op["state"])
        elif kind == "cron_start":
            state = self.entries.get(entry_id)
            if state is None:
                self.entries[entry_id] = EntryState(op["fingerprint"], op["after"])
            else:
                state.fingerprint, state.after = op["fingerprint"], max(state.after, op["after"])
        elif kind == "cron_forget":
            self.entries.pop(entry_id, None)
            return None
        elif (state := self.entries.get(entry_id)) is not None:
            _CHANGES[kind](state, op)
        state = self.entries.get(entry_id)
        return None if state is None else self._next_tick(entry_id, state.after)

    def snapshot(self) -> Iterator[Op]:
        copies = [(entry_id, state.encode()) for entry_id, state in self.entries.items()]
        return ({"op": "cron_state", "id": entry_id, "state": data} for entry_id, data in copies)

    def flush(self) -> None:
        """FLUSH: history, counts and `last_tick` go; every entry starts again from the next
        tick after the FLUSH (`on_flush` has the feature start them), never back-filling."""
        self.entries.clear()
        self._on_flush()


def _cron_tick(state: EntryState, op: Op) -> None:
    """A tick handled: done up to it; a fired job's record waits for its outcome (`pending`)."""
    state.after = max(state.after, op["tick"])
    state.counts["missed"] += op["missed"]
    outcome = op["outcome"]
    record = {"tick": op["tick"], "at": op["at"], "jid": op["jid"], "outcome": outcome}
    if op["missed"]:
        record["missed"] = op["missed"]
    if outcome == "missed":
        state.counts["missed"] += 1
    else:
        state.last_tick, state.last_jid = op["tick"], op["jid"]
        if outcome in state.counts:
            state.counts[outcome] += 1
        if outcome == "fired":
            record["outcome"] = "pending"
    state.history.append(record)


def _cron_manual(state: EntryState, op: Op) -> None:
    state.history.append({"tick": None, "at": op["at"], "jid": op["jid"], "outcome": "pending"})


def _cron_outcome(state: EntryState, op: Op) -> None:
    """How a fired job fared, on its record (none once it left the last HISTORY fires)."""
    for record in state.history:
        if record["jid"] == op["jid"]:
            record["outcome"] = op["outcome"]


#: the ops that change one entry's state, by tag
_CHANGES: dict[str, Callable[[EntryState, Op], None]] = {
    "cron_tick": _cron_tick, "cron_manual": _cron_manual, "cron_outcome": _cron_outcome}
