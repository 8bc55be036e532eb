"""Job tracking: Faktory Enterprise's `custom.track`, and what the TRACK command reads and
changes (its arguments are parsed in commands/track.py).

Why: a web page that started a long job wants to show how far along it is. A job pushed
with `custom.track = 1` gets a tracking record that the server moves through its
lifecycle, workers may add progress to with `TRACK SET`, and anyone may read with
`TRACK GET`. Jobs without the flag are not tracked ("by default jobs are not tracked").

Wire (protocol/spec.md §9.3, protocol/clients.md §8.3):

* `TRACK GET <jid>` ⇒ bulk `{"jid","state","updated_at"[,"percent"][,"desc"]}`;
  an unknown, untracked or forgotten jid ⇒ `{"jid":"…","state":"unknown","updated_at":""}`.
* `TRACK SET {"jid", "percent"?, "desc"?, "reserve_until"?, "result"?}` ⇒ `+OK`. A `result`
  (any JSON) is what the job's ACK records if it carries none (protocol/spec.md §14.6). Percent and desc are
  merged into the record (absent or null leaves a value as it was) and survive later state
  changes; the state is left alone (an enqueued job stays `enqueued`; SET after the job
  finished is fine). `reserve_until` (RFC3339) extends the job's current reservation if it
  is being worked and the new time is later — it never shortens one — capped at 24 hours
  from now (the longest reservation Faktory allows).

States, as the server sees events: PUSH ⇒ `enqueued` (scheduled jobs too), FETCH ⇒
`working`, ACK ⇒ `success`, FAIL that will be retried (also a reservation that expired) ⇒
`failed`. A job that will not run again ⇒ `dead`: moved to the dead set, FAILed with
`retry: 0` (discarded), dropped at FETCH because it had expired, deleted (MUTATE, QUEUE REMOVE,
the web UI), or killed while held because a dependency failed (protocol/spec.md §14.4). A retry or scheduled job
entering its queue does not change the state (the next FETCH does). A SET for a jid without
a record creates one in state `unknown` holding the progress. Records are forgotten 30
minutes after their last update (ignored from then on, pruned lazily).

Error texts (faktory_py's; Enterprise's are not known): `invalid TRACK SET <arg>` (not a
JSON object), `TRACK SET needs a jid`, `percent must be an integer from 0 to 100: <json>`,
`desc must be a string: <json>`, `reserve_until must be an RFC3339 timestamp: <json>`,
`TRACK GET needs a jid`, `TRACK needs GET <jid> or SET <json>`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice, takewhile
from typing import Any

from ..core.hooks import Ended, Ending, Outcome
from ..core.jobs import MAX_RESERVE_FOR
from ..core.registry import Feature
from ..errors import ClientError
from ..store.api import AnyOp, Extend, Job, Op, Reservation, SortedJobSet, Store
from ..util import jsoncodec
from ..util.timefmt import format_time

#: Tracking data is kept this long after its last update (Faktory Enterprise: 30 minutes).
TRACK_TTL = 30 * 60
STATES = ("unknown", "enqueued", "working", "success", "failed", "dead")
#: How many forgotten records one update prunes.
PRUNE_BATCH = 16


def tracked(job: Job) -> bool:
    """`custom.track` is 1 (also accepted: 1.0 and true, which compare equal to it)."""
    return (job.get("custom") or {}).get("track") == 1


def checked_result(result: Any, max_bytes: int) -> Any:
    """A job's result (ACK or TRACK SET `result`, protocol/spec.md §14.6), refused when its
    compact JSON is over `max_bytes`."""
    size = len(jsoncodec.dumps(result))
    if size > max_bytes:
        raise ClientError(f"result too large ({size} bytes > {max_bytes})")
    return result


class JobTracking:
    """Tracking records (jid → state, updated_at, progress), read and changed by TRACK.

    Records sit in a SortedJobSet scored by when they are forgotten, so stale ones are
    found for pruning without a scan. Every change is one `track` op carrying the whole
    new record, so replay needs no clock. The store applies, snapshots and flushes the
    records (`StateOwner`).
    """

    op_names = ("track", "track_forget")

    def __init__(self, store: Store, max_result_bytes: int = 65536) -> None:
        """`max_result_bytes` is `[faktory_py.results] max_bytes` (a TRACK SET `result`'s limit)."""
        self.store = store
        self.max_result_bytes = max_result_bytes
        self.records = SortedJobSet()
        store.register_state(self)

    # --- state ----------------------------------------------------------------------

    def apply(self, op: Op) -> None:
        if op["op"] == "track":
            self._apply_track(op)
        else:
            self._apply_forget(op)

    def flush(self) -> None:
        self.records.clear()

    def _apply_track(self, op: Op) -> None:
        record = op["record"]
        self.records.add(op["jid"], record["updated_at"] + TRACK_TTL, record)

    def _apply_forget(self, op: Op) -> None:
        """Forget a stale record, unless it was updated since the prune was decided."""
        found = self.records.get(op["jid"])
        if found is not None and found[1]["updated_at"] == op["updated_at"]:
            self.records.remove(op["jid"])

    def snapshot(self) -> Iterator[Op]:
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

    def feature(self) -> Feature:
        """How it plugs in: a tracked job's record follows it through PUSH, FETCH, ACK, a FAIL
        that will be retried, and every way it leaves for good (the end hook: into the dead
        set, discarded, dropped as expired, deleted, killed because a dependency failed); TRACK
        reads and adds to it."""
        return Feature("tracking", self, push=self, fetch=self, finish=self, end=self, commands=("TRACK",),
                       custom_only=frozenset({"push", "fetch", "finish", "end"}))

    def on_push(self, job: Job, scheduled_for: float | None, wid: str, now: float) -> list[Op]:
        if not tracked(job):
            return []
        return self._prune(now) + [self._update(job["jid"], now, "enqueued")]

    def on_fetch(self, job: Job, wid: str, now: float) -> list[Op]:
        return self._moved(job, "working", now)

    def on_ack(self, res: Reservation, now: float) -> list[Op]:
        if not tracked(res.job):
            return []
        return self._prune(now) + [self._update(res.job["jid"], now, "success")]

    def on_fail(self, res: Reservation, failed: Job, outcome: Outcome, now: float) -> list[Op]:
        return self._moved(res.job, "failed", now) if outcome is Outcome.RETRY else []

    def on_end(self, ended: Sequence[Ended], now: float) -> list[Op]:
        """A job that will not run again is `dead` (an ACKed one is `success`, set by on_ack)."""
        return [op for end in ended if end.ending is not Ending.SUCCESS for op in self._moved(end.job, "dead", now)]

    # --- what TRACK SET changes (commands/track.py parses the arguments) -----------------

    def progress_ops(self, jid: str, now: float, percent: int | None = None, desc: str | None = None,
                     reserve_until: float | None = None, result: Any = None) -> list[AnyOp]:
        """Ops that merge progress into `jid`'s record (None leaves a value as it was) and
        extend its current reservation to `reserve_until` (never shortened, capped at
        MAX_RESERVE_FOR from now). A `result` is kept in the record for the job's ACK to
        record (protocol/spec.md §14.6); raises ClientError when it is too large."""
        progress: dict[str, Any] = {}
        if percent is not None:
            progress["percent"] = percent
        if desc is not None:
            progress["desc"] = desc
        if result is not None:
            progress["result"] = checked_result(result, self.max_result_bytes)
        extend: list[AnyOp] = []
        if reserve_until is not None:
            when = min(reserve_until, now + MAX_RESERVE_FOR)
            res = self.store.reservation(jid)
            if res is not None and when > res.expires_at:
                extend.append(Extend(jid, when))
        return self._prune(now) + [self._update(jid, now, **progress)] + extend
