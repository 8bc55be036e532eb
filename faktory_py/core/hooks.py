"""The hooks the Enterprise features plug into, like Faktory's middleware chains.

`lifecycle.Manager` calls them around every push, fetch, ack and fail, and the due timer
calls `next_due`/`run_due`.
"""

from __future__ import annotations

from typing import Any

from ..store.api import Job, Op, Reservation


class Extension:
    """Hooks the Enterprise features plug into, like Faktory's middleware chains.

    Each hook returns extra ops committed atomically with the operation that called it
    (so the journal never holds one without the other). Hooks read state but never
    change it themselves; the ops they return are applied through the store like any
    other, which keeps journal replay exact. The ops of one hook call are committed before
    the next call of the same hook, so a hook always plans against up-to-date state.
    """

    def prepare(self, job: Job, now: float) -> Job:
        """Rewrite a valid job before it is stored (a new dict; jobs are never mutated).

        Runs for every extension before any `on_push`; raise ClientError to refuse the job.
        """
        return job

    def on_push(self, job: Job, scheduled_for: float | None, wid: str, now: float) -> list[Op]:
        """A valid job is about to be stored; raise ClientError to refuse it."""
        return []

    def on_fetch(self, job: Job, wid: str, now: float) -> list[Op] | None:
        """A job is about to be reserved; None drops it instead (and FETCH goes on)."""
        return []

    def on_drop(self, job: Job, now: float) -> list[Op]:
        """A job some extension's `on_fetch` refused left its queue without running."""
        return []

    def on_ack(self, res: Reservation, now: float) -> list[Op]:
        """A reserved job was ACKed."""
        return []

    def on_fail(self, res: Reservation, failed: Job, outcome: str, now: float) -> list[Op]:
        """A reserved job failed (FAIL or expiry); outcome is "retry", "dead" or "dropped"."""
        return []

    def info_fields(self) -> dict[str, Any]:
        """Extra keys for INFO's `faktory` block (extra keys never break typed decoders)."""
        return {}

    def next_due(self) -> float | None:
        """When the feature next has timed work to do (the due timer then calls run_due)."""
        return None

    def run_due(self, now: float) -> list[Op]:
        """The feature's timed work due at `now` (e.g. expiring uncommitted batches)."""
        return []
