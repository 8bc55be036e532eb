"""Expiring jobs: Faktory Enterprise's `custom.expires_at` / `custom.expires_in`.

Why: some work is worthless after a deadline (a notification about an event that is over,
a cache refresh superseded by the next one). Such a job carries `custom.expires_at`, an
RFC3339 timestamp, or `custom.expires_in`, seconds (int or float) counted from the PUSH.
The server never hands an expired job to a worker: like Faktory Enterprise it checks only
when a FETCH reaches the job, and then discards it silently and goes on with the next job
(so expired jobs still count in their queue's size until someone fetches from it).

Decisions (Faktory Enterprise's behaviour is unknown or undocumented here):

* `expires_in` is turned into `expires_at` at PUSH (push time + expires_in, RFC3339Nano
  UTC) and removed from `custom`, so the deadline does not move when the job is retried
  or requeued. With both keys the earlier deadline wins.
* The deadline is `<=`: a job whose deadline is the current instant is expired.
* Invalid values are refused at PUSH with `-ERR expires_at must be an RFC3339 timestamp:
  <json>` or `-ERR expires_in must be a number of seconds: <json>`; `null` means "not set".
* INFO reports how many jobs were discarded this way as `faktory.total_expired` (an extra
  integer key: typed decoders such as Rust's ignore it). FLUSH resets it, like the other
  totals. The count is journaled (an `expired` op committed with the drop), so it
  survives restarts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from ..core import jobs
from ..core.hooks import Drop
from ..core.registry import Feature
from ..errors import ClientError
from ..store.api import Job, Op, Store
from ..util.jsoncodec import compact_json
from ..util.timefmt import format_time, parse_time

#: 9999-12-31T23:59:59Z, the last instant a four-digit-year timestamp can name
LATEST = 253402300799.0


def deadline(job: Job) -> float | None:
    """When a stored job expires (unix seconds), None if it never does."""
    value = (job.get("custom") or {}).get("expires_at")
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None  # cannot happen for jobs validated at PUSH; never let it poison FETCH


class ExpiringJobs:
    """Validates and normalises the expiry keys at PUSH, drops expired jobs at FETCH."""

    #: its state, the count below, is applied, snapshotted and flushed by the store (`StateOwner`)
    op_names = ("expired", "expired_total")

    def __init__(self, store: Store) -> None:
        #: jobs discarded at FETCH because they had expired (INFO faktory.total_expired)
        self.total_expired = 0
        store.register_state(self)

    # --- state ----------------------------------------------------------------------

    def apply(self, op: Op) -> None:
        if op["op"] == "expired":
            self.total_expired += 1
        else:
            self.total_expired = op["total"]

    def flush(self) -> None:
        self.total_expired = 0

    def snapshot(self) -> Iterator[Op]:
        total = self.total_expired
        return iter([{"op": "expired_total", "total": total}] if total else [])

    # --- hooks ----------------------------------------------------------------------

    def feature(self) -> Feature:
        """How it plugs in: it rewrites jobs at PUSH, drops expired ones at FETCH (and counts
        them when they are dropped), and reports the count in INFO."""
        return Feature("expiry", self, prepare=self, fetch=self, drop=self, info=self,
                       custom_only=frozenset({"prepare", "fetch", "drop"}))

    def prepare(self, job: Job, now: float) -> Job:
        custom = job.get("custom")
        if not custom:
            return job
        absolute, relative = custom.get("expires_at"), custom.get("expires_in")
        if absolute is not None:
            try:
                if not isinstance(absolute, str):
                    raise ValueError
                parse_time(absolute)
            except ValueError:
                raise ClientError(f"expires_at must be an RFC3339 timestamp: {compact_json(absolute)}") from None
        if relative is None:
            return job
        if (isinstance(relative, bool) or not isinstance(relative, (int, float))
                or not math.isfinite(relative)):
            raise ClientError(f"expires_in must be a number of seconds: {compact_json(relative)}")
        # clamped to what RFC3339 can say: 1970 is as expired as any earlier date
        when = min(max(now + relative, 0.0), LATEST)
        if absolute is not None:
            when = min(when, parse_time(absolute))
        custom = {key: value for key, value in custom.items() if key != "expires_in"}
        custom["expires_at"] = format_time(when)
        return jobs.with_fields(job, custom=custom)

    def expired(self, job: Job, now: float) -> bool:
        when = deadline(job)
        return when is not None and when <= now

    def on_fetch(self, job: Job, wid: str, now: float) -> list[Op] | Drop:
        return Drop() if self.expired(job, now) else []

    def on_drop(self, job: Job, now: float) -> list[Op]:
        return [{"op": "expired", "jid": job["jid"]}] if self.expired(job, now) else []

    def info_fields(self) -> dict[str, Any]:
        return {"total_expired": self.total_expired}
