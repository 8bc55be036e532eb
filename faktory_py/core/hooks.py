"""The hooks a feature plugs into the job lifecycle, and what they answer.

`lifecycle.Manager` calls them around every push, fetch, ack and fail, and the due timer
calls `next_due`/`run_due`. A feature implements only the hooks it needs: each hook is a
small Protocol of its own (like River's hook interfaces), and an answer that is not "more
ops" has a type of its own (`Drop`, like the `Discard` of Faktory's middleware) instead of
`None` or a string.

Every hook that returns ops returns extra ops committed atomically with the operation that
called it (so the journal never holds one without the other). Hooks read state but never
change it themselves; the ops they return are applied through the store like any other,
which keeps journal replay exact. The ops of one hook call are committed before the next
call of the same hook, so a hook always plans against up-to-date state.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from ..store.api import AnyOp, Job, Op, Reservation


@dataclass(frozen=True, slots=True)
class Drop:
    """A fetch hook's answer "drop this job": it leaves its queue without running, every
    drop hook is told (`DropHook.on_drop`), and FETCH goes on with the next job. (The
    journaled op that then takes it out of its queue is the store's `store.api.Drop`.)"""


class Outcome(enum.Enum):
    """What a failure (FAIL, or a reservation that expired) did with the job; an operator's
    MUTATE on `working` is told as one too (requeue: RETRY, kill: DEAD, discard: DROPPED)."""

    #: it waits in the retry set for its next run
    RETRY = "retry"
    #: it has no retries left and went to the dead set
    DEAD = "dead"
    #: it had `retry: 0`: it is gone, neither retried nor kept
    DROPPED = "dropped"


class Ending(enum.Enum):
    """How a job left the server for good: the outcome a batch member or a job's dependents
    see. A failure that will be retried is not an ending (the job is still live)."""

    #: ACKed
    SUCCESS = "success"
    #: moved to the dead set: retries exhausted, or killed (MUTATE, the web UI)
    DEAD = "dead"
    #: FAILed with `retry: 0`, or its reservation discarded (MUTATE on `working`): dropped,
    #: neither retried nor kept
    DISCARDED = "discarded"
    #: dropped at FETCH because its `expires_at` had passed
    EXPIRED = "expired"
    #: removed without running: MUTATE discard or clear of the retry or scheduled set,
    #: QUEUE REMOVE of its queue, deleted from the web UI
    DELETED = "deleted"


class Ended(NamedTuple):
    """One job that left for good, and how (see `EndHook`)."""

    job: Job
    ending: Ending
    #: what the worker reported with its ACK (`ACK {"jid","result"}`, protocol/spec.md §14.6);
    #: None when it reported nothing
    result: Any = None


@dataclass(frozen=True, slots=True)
class Ends:
    """A hook's answer when its ops end further jobs themselves (a job dependencies feature
    killing dependents whose dependency failed): the ops, and the jobs they end. The
    lifecycle tells every *other* end hook of `ended` in the same step, so a batch counts a
    member that such a feature ended like any other ending."""

    ops: list[Op]
    ended: list[Ended]


class BatchMoment(enum.Enum):
    """A moment in a batch's life that a job may wait for (`custom.after: [{"bid": …}]`,
    protocol/spec.md §14.2). Each is derived from the batch's own record, never kept apart,
    so journal replay reproduces it."""

    #: committed, and every member (and every child batch's) ran once: when the `complete`
    #: callback is (or would be, if none is declared) enqueued
    COMPLETE = "complete"
    #: committed, and every member (and every child batch's) succeeded: when the `success`
    #: callback is (or would be) enqueued
    SUCCESS = "success"
    #: the batch is gone: an uncommitted batch expired, or a done batch was forgotten after
    #: its retention (one that never reached SUCCESS never will)
    GONE = "gone"


#: a batch that reached a moment: (bid, moment)
Reached = tuple[str, BatchMoment]


class BatchStates(Protocol):
    """What a batches feature lets others read: the moments a batch has reached."""

    def moments(self, bid: str, now: float) -> frozenset[BatchMoment] | None:
        """The moments batch `bid` has reached (GONE never: a gone batch is None, unknown)."""


class PrepareHook(Protocol):
    def prepare(self, job: Job, now: float) -> Job:
        """Rewrite a valid job before it is stored (a new dict; jobs are never mutated).

        Runs for every feature before any `on_push`; raise ClientError to refuse the job.
        """


class PushHook(Protocol):
    def on_push(self, job: Job, scheduled_for: float | None, wid: str, now: float) -> list[Op]:
        """A valid job is about to be stored; raise ClientError to refuse it.

        `wid` is the worker process of the pushing connection ("" for producers).
        """


class FetchHook(Protocol):
    def on_fetch(self, job: Job, wid: str, now: float) -> list[Op] | Drop:
        """A job is about to be reserved; `Drop()` drops it instead (later fetch hooks are
        not asked)."""


class SelectHook(Protocol):
    """Chooses which job of a queue FETCH hands out, where limits may hold some back (a
    throttle's partitions, a per-jobtype limit, protocol/spec.md §11.3): a queue it does not
    select for keeps FETCH's head path."""

    def selects(self, queue: str) -> bool:
        """Does this hook choose the jobs of `queue`? Asked once per queue a FETCH tries."""

    def select(self, queue: str, wid: str, now: float) -> int | None:
        """The position (`store.api.QueueObserver`) of the job of `queue` a FETCH by `wid`
        takes at `now`, None if it may take none (the queue then acts as if empty for this
        FETCH, which goes on with its next queue). Must not scan the queue."""

    def room(self, queue: str, now: float) -> int | None:
        """How many more jobs of `queue` some FETCH may take at `now` (None: no limit of
        this hook's). Sizes how many waiting FETCHes are woken for a queue's jobs."""


class DropHook(Protocol):
    def on_drop(self, job: Job, now: float) -> list[Op]:
        """A job some feature's `on_fetch` dropped left its queue without running."""


class FinishHook(Protocol):
    def on_ack(self, res: Reservation, now: float) -> list[Op]:
        """A reserved job was ACKed."""

    def on_fail(self, res: Reservation, failed: Job, outcome: Outcome, now: float) -> list[Op]:
        """A reserved job failed (FAIL or an expired reservation), or an operator ended its
        reservation (MUTATE on `working`); `failed` is the job as it goes on, with its new
        failure block when it has one."""


class HoldHook(Protocol):
    def hold(self, job: Job, scheduled_for: float | None, now: float) -> Ends | None:
        """Take over storing a valid pushed job instead of its queue or the scheduled set
        (a job waiting for its dependencies is in neither, protocol/spec.md §14.3), or None
        to leave it to the lifecycle. Asked after every prepare and push hook ran, so the
        job is counted (unique, tracking, batches) like any other; the first hook that
        answers takes it."""


class EndHook(Protocol):
    def on_end(self, ended: Sequence[Ended], now: float) -> list[Op] | Ends:
        """Jobs left the server for good, all in the step being committed (one ACK, or every
        job of a removed queue): the one place that sees every terminal outcome, whichever
        command or timer caused it, so nothing waiting on a job can miss its end. Runs after
        the finish and drop hooks of the same step. A job the timers had to quarantine
        (`Manager._quarantine`) is not reported: the hooks may be what failed."""


class BatchHook(Protocol):
    def on_batch(self, reached: Sequence[Reached], now: float) -> list[Op] | Ends:
        """Batches reached moments in the step being committed (a member's ACK or other
        ending, a callback's end, BATCH COMMIT, an expiry): told inside that step, so a job
        waiting for a batch is released before the step's reply is sent. The batches
        feature reports them through `JobPusher.batch_reached` (features never import each
        other); the moments a batch reached before can be read through `BatchStates`."""


class TargetHook(Protocol):
    #: the MUTATE target it serves besides the lifecycle's sets (`held`, protocol/spec.md §14.4)
    target: str

    def entries(self) -> Iterable[tuple[str, Job]]:
        """(jid, job) of every job of the target, for MUTATE's filter."""

    def take(self, cmd: str, jids: Sequence[str] | None, now: float) -> Ends:
        """MUTATE `cmd` ("discard", "kill" or "requeue") on the named jobs (None: all of them)."""


class TimedHook(Protocol):
    def next_due(self) -> float | None:
        """When the feature next has timed work to do (the due timer then calls run_due)."""

    def run_due(self, now: float) -> list[Op] | Ends:
        """The feature's timed work due at `now` (e.g. expiring uncommitted batches); an
        `Ends` when that work ends jobs (a dependency that never appeared)."""


class JobPusher(Protocol):
    """What the `Manager` offers a feature that pushes jobs of its own (a batch's callbacks),
    so they are judged and stored as a producer's PUSH would be, and tells of moments its
    batches reached (`BatchHook`)."""

    def check_push(self, job: Job, now: float) -> None:
        """Raise ClientError if PUSH would refuse `job` before any push hook (its fields, or
        a prepare hook: `expires_in`, `unique_for`, ...); changes nothing."""

    def push_ops(self, job: Job, now: float) -> list[AnyOp]:
        """The ops that push `job`: checked and rewritten by every prepare hook and seen by
        every push hook (unique, expiry, tracking apply); ClientError if one refuses it. The
        caller commits them within its own step."""


    def batch_reached(self, reached: Sequence[Reached], caller: object, now: float) -> Ends:
        """The ops of every batch hook told that batches reached `reached`, and of the end
        hooks told of the jobs those ended (a dependent killed by policy), for the caller to
        commit within its own step; `caller`'s own end hook is not told of those jobs (they
        are `Ends.ended`): it counts them in the plan it is making, whose state the other
        hooks cannot see yet."""


class PushUser(Protocol):
    def use_pusher(self, pusher: JobPusher) -> None:
        """Take the `Manager` as the way to push jobs of the feature's own: given once, when
        the Manager is made over the registry."""


class ObserveHook(Protocol):
    """Told of what the job lifecycle did, once it is committed (live commands and timers
    only: journal replay runs no hook). For metrics (the statsd sender): it returns no ops
    and must not raise, and a server without observers pays one empty loop per step.

    Reservations that an operator ends (MUTATE on `working`) are not runs of the job and are
    not told; jobs a feature pushes on its own (cron, batch callbacks) are not PUSHes."""

    def pushed(self, job: Job, now: float) -> None:
        """PUSH or PUSHB stored `job` (as prepared: `expires_in` made `expires_at`)."""

    def denied(self, job: Job, now: float) -> None:
        """PUSH or PUSHB refused `job` as not unique (`-NOTUNIQUE`)."""

    def fetched(self, job: Job, wid: str, now: float) -> None:
        """FETCH reserved `job` for `wid`."""

    def acked(self, res: Reservation, now: float) -> None:
        """A reserved job was ACKed."""

    def failed(self, res: Reservation, now: float) -> None:
        """A reserved job failed: FAIL, its reservation expired, or its worker was lost."""

    def expired(self, job: Job, now: float) -> None:
        """FETCH dropped `job` because its `expires_at` had passed."""


class InfoHook(Protocol):
    def info_fields(self) -> dict[str, Any]:
        """Extra keys for INFO's `faktory` block (extra keys never break typed decoders)."""
