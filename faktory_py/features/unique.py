"""Unique jobs: Faktory Enterprise's `custom.unique_for` / `custom.unique_until`.

Why: producers that may enqueue the same work twice (a cron firing on two hosts, a user
double-clicking) ask the server to refuse the duplicate for a while. A job pushed with
`custom.unique_for` (seconds, int or float) takes a lock on its key — (jobtype, args, queue),
args canonicalised so map key order does not matter — and a second push of the same key
while the lock is held gets `-NOTUNIQUE Job not unique` (in a PUSHB result map:
`"NOTUNIQUE Job not unique"`). Jobs without `unique_for` bypass the check entirely.

The lock lives until `at` (for a scheduled job) + `unique_for`, or until it is released:

* `unique_until: "success"` (the default): at ACK, and also when the job can no longer
  succeed — it FAILs into the dead set, FAILs with `retry: 0` (discarded), or is dropped
  at FETCH because it expired. While the job waits in the retry set it keeps the lock.
* `unique_until: "start"`: at FETCH (the job has started; a new one may be queued).

A lock records the jid that owns it, which is what makes the feature safe: only the owner
releases it, a lock that expired and was taken by another job stays with that job, and
a job is never refused because of its own lock. Uniqueness is only ever checked at
PUSH/PUSHB, so retries, schedule promotion, MUTATE requeue, reservation expiry and journal
replay — which never go through PUSH — cannot collide with a lock, and a PUSH carrying the
owner's own jid is not a conflict either (it refreshes the lock instead). (River 0.12.0
shipped a bug where a job's own unique lock blocked its retry; this rules it out by design.)

Invalid values are refused with `-ERR` (faktory_py's texts; Faktory Enterprise's are not
known): `unique_for must be a positive number of seconds: <json>` and
`unique_until must be "success" or "start": <json>`. `null` means "not set".

Locks are journaled (`unique_lock` / `unique_release` ops) and part of snapshots. Expired
locks are ignored when checked and pruned lazily: PUSH and ACK each release a few of them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from itertools import islice, takewhile

from ..core.hooks import Outcome
from ..core.registry import Feature
from ..errors import ClientError, NotUnique
from ..store.api import Job, Op, Reservation, SortedJobSet, Store
from ..util.jsoncodec import compact_json

UNIQUE_UNTIL = ("success", "start")
#: How many expired locks one PUSH or ACK prunes (keeps every command's work bounded).
PRUNE_BATCH = 16


def unique_key(job: Job) -> str:
    """The lock key of a job: a digest of (jobtype, args, queue) with map keys sorted."""
    canonical = json.dumps([job.get("jobtype"), job.get("args"), job.get("queue")],
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", errors="surrogatepass")).hexdigest()


def unique_for(job: Job) -> float | None:
    """The job's `custom.unique_for` in seconds, None when it is not a unique job.

    Raises ClientError for a value that is not a positive, finite number.
    """
    custom = job.get("custom")
    if not custom:
        return None
    value = custom.get("unique_for")
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise ClientError(f"unique_for must be a positive number of seconds: {compact_json(value)}")
    return float(value)


def unique_until(job: Job) -> str:
    """`custom.unique_until`: "success" (default, also for null/"") or "start"."""
    value = (job.get("custom") or {}).get("unique_until")
    if value is None or value == "":
        return "success"
    if value not in UNIQUE_UNTIL:
        raise ClientError(f'unique_until must be "success" or "start": {compact_json(value)}')
    return value


def _is_unique(job: Job) -> bool:
    """A stored job (already validated at PUSH) that took a unique lock."""
    return (job.get("custom") or {}).get("unique_for") is not None


class UniqueJobs:
    """The unique-lock table and the hooks that take and release its locks.

    State: key → (expires_at, owner jid), kept in a SortedJobSet ordered by expiry so
    expired locks can be found for pruning without a scan. The store applies, snapshots and
    flushes it (`StateOwner`).
    """

    op_names = ("unique_lock", "unique_release")

    def __init__(self, store: Store) -> None:
        self.locks = SortedJobSet()
        store.register_state(self)

    # --- state (applied through the store: live commits and replay alike) -------------

    def apply(self, op: Op) -> None:
        if op["op"] == "unique_lock":
            self._apply_lock(op)
        else:
            self._apply_release(op)

    def flush(self) -> None:
        self.locks.clear()

    def _apply_lock(self, op: Op) -> None:
        self.locks.add(op["key"], op["expires_at"], op["jid"])

    def _apply_release(self, op: Op) -> None:
        """Remove the lock if `jid` still owns it (and, for pruning, still with that expiry)."""
        found = self.locks.get(op["key"])
        if found is None or found[1] != op["jid"]:
            return
        if "expires_at" in op and found[0] != op["expires_at"]:
            return
        self.locks.remove(op["key"])

    def snapshot(self) -> Iterator[Op]:
        locks = list(self.locks.items())
        return ({"op": "unique_lock", "key": key, "jid": jid, "expires_at": expires}
                for expires, key, jid in locks)

    # --- reading --------------------------------------------------------------------

    def holder(self, job: Job, now: float) -> str | None:
        """The jid holding the (unexpired) lock for this job's key, if any."""
        found = self.locks.get(unique_key(job))
        if found is None or found[0] <= now:
            return None
        return found[1]

    def _prune(self, now: float) -> list[Op]:
        first = self.locks.first_score()
        if first is None or first > now:  # every ACK comes here: no iterators when none expired
            return []
        expired = islice(takewhile(lambda entry: entry[0] <= now, self.locks.items()), PRUNE_BATCH)
        return [{"op": "unique_release", "key": key, "jid": jid, "expires_at": expires}
                for expires, key, jid in expired]

    def _release(self, job: Job) -> list[Op]:
        """Release this job's lock if it is a unique job that still owns it."""
        if not _is_unique(job):
            return []
        key = unique_key(job)
        found = self.locks.get(key)
        if found is None or found[1] != job["jid"]:
            return []
        return [{"op": "unique_release", "key": key, "jid": job["jid"]}]

    # --- hooks ----------------------------------------------------------------------

    def feature(self) -> Feature:
        """How it plugs in: it validates at PUSH and takes the lock there, and releases it
        at FETCH (`unique_until: start`), at a drop, at ACK or at a final failure."""
        return Feature("unique", self, prepare=self, push=self, fetch=self, drop=self, finish=self,
                       custom_only=frozenset({"prepare", "push", "fetch", "drop"}))

    def prepare(self, job: Job, now: float) -> Job:
        """Validate `unique_for` / `unique_until` before anything is stored."""
        if unique_for(job) is not None:
            unique_until(job)
        return job

    def on_push(self, job: Job, scheduled_for: float | None, wid: str, now: float) -> list[Op]:
        seconds = unique_for(job)
        if seconds is None:
            return []  # no unique_for: bypasses the lock, even of an identical job
        key = unique_key(job)
        expires = (now if scheduled_for is None else scheduled_for) + seconds
        found = self.locks.get(key)
        if found is not None and found[0] > now:
            if found[1] != job["jid"]:
                raise NotUnique()
            expires = max(expires, found[0])  # the owner pushed again: never shorten its lock
        return self._prune(now) + [{"op": "unique_lock", "key": key, "jid": job["jid"],
                                    "expires_at": expires}]

    def on_fetch(self, job: Job, wid: str, now: float) -> list[Op]:
        if _is_unique(job) and (job.get("custom") or {}).get("unique_until") == "start":
            return self._release(job)
        return []

    def on_drop(self, job: Job, now: float) -> list[Op]:
        return self._release(job)

    def on_ack(self, res: Reservation, now: float) -> list[Op]:
        pruned = self._prune(now)
        return pruned + self._release(res.job) if "custom" in res.job else pruned

    def on_fail(self, res: Reservation, failed: Job, outcome: Outcome, now: float) -> list[Op]:
        if outcome is Outcome.RETRY:
            return []  # a retrying job keeps its lock
        return self._release(res.job)  # dead or discarded: it can no longer succeed


def lock_table(extension: UniqueJobs) -> dict[str, tuple[float, str]]:
    """key → (expires_at, jid): a plain copy of the state, for tests and debugging."""
    return {key: (expires, jid) for expires, key, jid in extension.locks.items()}

