"""Job tracking: Faktory Enterprise's `custom.track` and the TRACK command.

Why: a web page that started a long job wants to show how far along it is. A job pushed
with `custom.track = 1` gets a tracking record that the server moves through its
lifecycle, workers may add progress to with `TRACK SET`, and anyone may read with
`TRACK GET`. Jobs without the flag are not tracked ("by default jobs are not tracked").

Wire (protocol/spec.md §9.3, protocol/clients.md §8.3):

* `TRACK GET <jid>` ⇒ bulk `{"jid","state","updated_at"[,"percent"][,"desc"]}`;
  an unknown, untracked or forgotten jid ⇒ `{"jid":"…","state":"unknown","updated_at":""}`.
* `TRACK SET {"jid", "percent"?, "desc"?, "reserve_until"?}` ⇒ `+OK`. Percent and desc are
  merged into the record (absent or null leaves a value as it was) and survive later state
  changes; the state is left alone (an enqueued job stays `enqueued`; SET after the job
  finished is fine). `reserve_until` (RFC3339) extends the job's current reservation if it
  is being worked and the new time is later — it never shortens one — capped at 24 hours
  from now (the longest reservation Faktory allows).

States, as the server sees events: PUSH ⇒ `enqueued` (scheduled jobs too), FETCH ⇒
`working`, ACK ⇒ `success`, FAIL that will be retried (also a reservation that expired) ⇒
`failed`. A job that will not run again ⇒ `dead`: moved to the dead set, FAILed with
`retry: 0` (discarded), or dropped at FETCH because it had expired. A retry or scheduled job
entering its queue does not change the state (the next FETCH does). A SET for a jid without
a record creates one in state `unknown` holding the progress. Records are forgotten 30
minutes after their last update (ignored from then on, pruned lazily).

Error texts (faktory_py's; Enterprise's are not known): `invalid TRACK SET <arg>` (not a
JSON object), `TRACK SET needs a jid`, `percent must be an integer from 0 to 100: <json>`,
`desc must be a string: <json>`, `reserve_until must be an RFC3339 timestamp: <json>`,
`TRACK GET needs a jid`, `TRACK needs GET <jid> or SET <json>`.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice, takewhile
from typing import TYPE_CHECKING, Any

from .. import wire
from ..core import jobs
from ..core.hooks import Extension
from ..core.jobs import MAX_RESERVE_FOR
from ..errors import ClientError
from ..store.api import Job, Op, Reservation
from ..store.memory import MemoryStore
from ..store.sorted_set import SortedJobSet
from ..util.jsoncodec import compact_json
from ..util.timefmt import format_time, parse_time

if TYPE_CHECKING:
    from ..commands.dispatch import Dispatcher, Session

#: Tracking data is kept this long after its last update (Faktory Enterprise: 30 minutes).
TRACK_TTL = 30 * 60
STATES = ("unknown", "enqueued", "working", "success", "failed", "dead")
#: How many forgotten records one update prunes.
PRUNE_BATCH = 16


def tracked(job: Job) -> bool:
    """`custom.track` is 1 (also accepted: 1.0 and true, which compare equal to it)."""
    return (job.get("custom") or {}).get("track") == 1


class JobTracking(Extension):
    """Tracking records (jid → state, updated_at, progress) and the TRACK command.

    Records sit in a SortedJobSet scored by when they are forgotten, so stale ones are
    found for pruning without a scan. Every change is one `track` op carrying the whole
    new record, so replay needs no clock.
    """

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.records = SortedJobSet()
        self.dispatcher: Dispatcher | None = None
        store.op_handlers["track"] = self._apply_track
        store.op_handlers["track_forget"] = self._apply_forget
        store.snapshot_sources.append(self._snapshot)
        store.flush_hooks.append(self.records.clear)

    # --- state ----------------------------------------------------------------------

    def _apply_track(self, op: Op) -> None:
        record = op["record"]
        self.records.add(op["jid"], record["updated_at"] + TRACK_TTL, record)

    def _apply_forget(self, op: Op) -> None:
        """Forget a stale record, unless it was updated since the prune was decided."""
        found = self.records.get(op["jid"])
        if found is not None and found[1]["updated_at"] == op["updated_at"]:
            self.records.remove(op["jid"])

    def _snapshot(self) -> Iterator[Op]:
        records = list(self.records.items())
        return ({"op": "track", "jid": jid, "record": record} for _score, jid, record in records)

    # --- reading --------------------------------------------------------------------

    def record(self, jid: str, now: float) -> dict[str, Any] | None:
        """The live record of a jid (None if there is none or it was forgotten)."""
        found = self.records.get(jid)
        if found is None or found[0] <= now:
            return None
        return found[1]

    def progress(self, jid: str, now: float) -> dict[str, Any]:
        """TRACK GET's reply object."""
        record = self.record(jid, now)
        if record is None:
            return {"jid": jid, "state": "unknown", "updated_at": ""}
        out: dict[str, Any] = {"jid": jid, "state": record["state"],
                               "updated_at": format_time(record["updated_at"])}
        for key in ("percent", "desc"):
            if key in record:
                out[key] = record[key]
        return out

    def _prune(self, now: float) -> list[Op]:
        stale = islice(takewhile(lambda entry: entry[0] <= now, self.records.items()), PRUNE_BATCH)
        return [{"op": "track_forget", "jid": jid, "updated_at": record["updated_at"]}
                for _score, jid, record in stale]

    def _update(self, jid: str, now: float, state: str | None = None, **progress: Any) -> Op:
        record = dict(self.record(jid, now) or {"state": "unknown"})
        if state is not None:
            record["state"] = state
        record["updated_at"] = now
        record.update(progress)
        return {"op": "track", "jid": jid, "record": record}

    def _moved(self, job: Job, state: str, now: float) -> list[Op]:
        return [self._update(job["jid"], now, state)] if tracked(job) else []

    # --- lifecycle hooks ------------------------------------------------------------

    def on_push(self, job: Job, scheduled_for: float | None, wid: str, now: float) -> list[Op]:
        if not tracked(job):
            return []
        return self._prune(now) + [self._update(job["jid"], now, "enqueued")]

    def on_fetch(self, job: Job, wid: str, now: float) -> list[Op] | None:
        return self._moved(job, "working", now)

    def on_drop(self, job: Job, now: float) -> list[Op]:
        return self._moved(job, "dead", now)

    def on_ack(self, res: Reservation, now: float) -> list[Op]:
        if not tracked(res.job):
            return []
        return self._prune(now) + [self._update(res.job["jid"], now, "success")]

    def on_fail(self, res: Reservation, failed: Job, outcome: str, now: float) -> list[Op]:
        return self._moved(res.job, "failed" if outcome == "retry" else "dead", now)

    # --- the TRACK command ----------------------------------------------------------

    def register(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        dispatcher.register("TRACK", self.command)

    def command(self, session: Session, arg: str) -> bytes:
        assert self.dispatcher is not None
        sub, _, rest = arg.partition(" ")
        sub = sub.upper()
        now = self.dispatcher.clock.now()
        if sub == "GET":
            jid = rest.strip()
            if not jid:
                raise ClientError("TRACK GET needs a jid")
            return wire.bulk_json(self.progress(jid, now))
        if sub == "SET":
            self.store.commit(self.set_ops(rest, now))
            return wire.OK
        raise ClientError("TRACK needs GET <jid> or SET <json>")

    def set_ops(self, arg: str, now: float) -> list[Op]:
        """Validate a TRACK SET payload and turn it into ops (raises ClientError)."""
        if not arg.strip():
            raise ClientError("TRACK SET needs a jid")
        payload = jobs.decode_argument(arg, "invalid TRACK SET")
        if not isinstance(payload, dict):
            raise ClientError(f"invalid TRACK SET {arg}")
        jid = payload.get("jid")
        if not isinstance(jid, str) or not jid:
            raise ClientError("TRACK SET needs a jid")
        progress: dict[str, Any] = {}
        percent = payload.get("percent")
        if percent is not None:
            if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
                raise ClientError(f"percent must be an integer from 0 to 100: {compact_json(percent)}")
            progress["percent"] = percent
        desc = payload.get("desc")
        if desc is not None:
            if not isinstance(desc, str):
                raise ClientError(f"desc must be a string: {compact_json(desc)}")
            progress["desc"] = desc
        until = payload.get("reserve_until")
        extend: list[Op] = []
        if until is not None:
            try:
                if not isinstance(until, str):
                    raise ValueError
                when = parse_time(until)
            except ValueError:
                raise ClientError(f"reserve_until must be an RFC3339 timestamp: {compact_json(until)}") from None
            when = min(when, now + MAX_RESERVE_FOR)
            found = self.store.working.get(jid)
            if found is not None and when > found[1].expires_at:
                extend.append({"op": "extend", "jid": jid, "expires_at": when})
        return self._prune(now) + [self._update(jid, now, **progress)] + extend
