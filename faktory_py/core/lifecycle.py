"""Job semantics: push, fetch, ack, fail, retries, mutation, queue control, timers' work.

Pure logic over a store: every method takes "now" (unix seconds) from the caller, turns
the request into store ops, commits them, and returns what the reply needs plus the
journal position the reply must wait for. Nothing here blocks, sleeps or does I/O, so
the same code runs under the server, a hypothesis state machine, or a benchmark.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ClientError, NoSuchJob, NotUnique
from ..store.api import (
    JOB_SETS, AnyOp, Done, Drop, Enqueue, Flush, Job, Pause, Release, RemoveQueue, Reservation, Reserve,
    Resume, SetAdd, SetClear, SetRemove, Store, enqueue_op,
)
from ..util.glob import compile_glob
from ..util.jsoncodec import go_float
from ..util.timefmt import format_time, parse_time, utc_day
from . import hooks, jobs
from .hooks import Ended, Ending, Outcome
from .registry import JobHooks, Registry

log = logging.getLogger("faktory_py.manager")

DEAD_TTL = 180 * 24 * 3600
MAX_ERRTYPE = 100
MAX_MESSAGE = 1000
MAX_BACKTRACE = 50
EXPIRED_ERRTYPE = "ReservationExpired"
EXPIRED_MESSAGE = "Faktory job reservation expired"
#: errtype of a job the timers could not move and put in the dead set instead (see `_quarantine`)
QUARANTINE_ERRTYPE = "ServerError"
MUTATE_TARGETS = JOB_SETS
#: the sets whose entries are live jobs: taking one out without running it ends the job (the
#: dead set's entries have ended already)
LIVE_SETS = ("scheduled", "retries")
#: MUTATE's target for live reservations [EXT] (protocol/spec.md §3 MUTATE): an operator ends them
WORKING = "working"
#: the failure block of a reservation an operator kills (MUTATE kill on `working`)
KILLED_ERRTYPE = "Killed"
KILLED_MESSAGE = "killed by an operator"
#: key order of Faktory's failure block
FAILURE_ORDER = ("failed_at", "next_at", "message", "errtype", "backtrace", "retry_count", "remaining")
#: builds an `Ended` from a tuple of its fields, as its NamedTuple constructor does but in
#: half the time (every ACK makes one), and the ending of every ACK
_new_ended = tuple.__new__
_SUCCESS = Ending.SUCCESS


def retry_delay(retry_count: int, rng: random.Random) -> int:
    """Faktory's backoff: count⁴ + 15 + rand(0..29)·(count+1) seconds."""
    return retry_count**4 + 15 + rng.randint(0, 29) * (retry_count + 1)


def _truncate(text: str, limit: int) -> str:
    """Trim, default to "unknown", and cut to `limit` UTF-8 bytes like Faktory."""
    text = text.strip() or "unknown"
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode(errors="ignore")


@dataclass
class TaskStats:
    """Counters behind INFO's deprecated `tasks` block."""

    cycles: int = 0
    enqueued: int = 0
    wall_time: float = 0.0


class Manager:
    """The job lifecycle over a Store (see module docstring)."""

    def __init__(self, store: Store, rng: random.Random | None = None, features: Registry | None = None) -> None:
        self.store = store
        self.rng = rng or random.Random()
        #: the features whose hooks run around every operation, in the registry's order
        self.features = features if features is not None else Registry()
        self.tasks = {name: TaskStats() for name in ("Scheduled", "Retries", "Dead")}
        self.reaped_reservations = 0
        #: jobs PUSH and PUSHB stored since the start (not journaled: a restart's replay is
        #: no push; `faktory_jobs_pushed_total`)
        self.pushed = 0
        for user in self.features.pushes:
            user.use_pusher(self)

    # --- producing ------------------------------------------------------------------

    def push(self, raw: Any, now: float, wid: str = "") -> int:
        """PUSH one decoded JSON value; raises ClientError. Returns the journal position.

        `wid` is the worker process of the pushing connection ("" for producers).
        """
        job, ops = self._push_plan(raw, now, wid)
        position = self.store.commit(ops)
        self.pushed += 1
        if self.features.observe:  # (every job: no call without an observer)
            self._tell("pushed", job, now)
        return position

    def push_bulk(self, raws: Any, now: float, wid: str = "") -> tuple[dict[str, str], int]:
        """PUSHB: every valid job is stored; returns (jid → error text, position).

        Each job is committed on its own, so a later job of the batch sees the effects
        of the earlier ones (a duplicate unique job in one PUSHB is refused).
        """
        if not isinstance(raws, list):
            raise ClientError("invalid JSON: json: cannot unmarshal object into Go value of type []client.Job")
        errors: dict[str, str] = {}
        position = 0
        for raw in raws:
            try:
                position = max(position, self.push(raw, now, wid))
            except ClientError as exc:
                jid = raw.get("jid", "") if isinstance(raw, dict) else ""
                errors[jid if isinstance(jid, str) else ""] = exc.line
        return errors, position

    def check_push(self, job: Job, now: float) -> None:
        """`hooks.JobPusher`: would PUSH refuse `job` before its push hooks? (ClientError)"""
        self._prepared(job, now)

    def _prepared(self, raw: Any, now: float) -> tuple[Job, float | None]:
        """A decoded job checked and rewritten for PUSH (by every prepare hook), and when it
        is scheduled for (None: now)."""
        job, scheduled_for = jobs.decode_push(raw, now)
        for prepare in self._hooks(job).prepare:
            job = prepare.prepare(job, now)
        return job, scheduled_for

    def _hooks(self, job: Job) -> Registry | JobHooks:
        """The features' job hooks for `job`: every one, or for a job without a `custom`
        block only those not `custom_only` (the others would do nothing with it)."""
        features = self.features
        return features if "custom" in job else features.plain

    def push_ops(self, raw: Any, now: float, wid: str = "") -> list[AnyOp]:
        """The ops of one PUSH (every feature's prepare and push hooks run); raises ClientError.
        As `hooks.JobPusher` it pushes jobs on the server's own behalf (a batch's callback, a
        cron fire) exactly as a producer's PUSH (no wid)."""
        return self._push_plan(raw, now, wid)[1]

    def _push_plan(self, raw: Any, now: float, wid: str) -> tuple[Job, list[AnyOp]]:
        """The job as it will be stored, and the ops that push it (see `push_ops`)."""
        job, scheduled_for = self._prepared(raw, now)
        features = self._hooks(job)
        ops: list[AnyOp] = []
        try:
            for push in features.push:
                ops.extend(push.on_push(job, scheduled_for, wid, now))
        except NotUnique:
            self._tell("denied", job, now)
            raise
        for hold in features.hold:
            taken = hold.hold(job, scheduled_for, now)
            if taken is not None:
                return job, ops + self._ends_ops(taken, hold, now)
        if scheduled_for is not None:
            ops.append(SetAdd("scheduled", scheduled_for, job))
        else:
            ops.append(enqueue_op(job))
        return job, ops

    @staticmethod
    def _enqueue_op(job: dict[str, Any], now: float) -> Enqueue:
        return enqueue_op(jobs.with_fields(job, enqueued_at=format_time(now)))

    # --- consuming ------------------------------------------------------------------

    def fetch(self, queues: Iterable[str], wid: str, now: float) -> tuple[dict[str, Any] | None, int]:
        """Reserve a job of the first non-empty, unpaused queue in list order: its head, or
        for a queue a select hook chooses for, the job it picks (none: the queue acts as if
        empty)."""
        job, _stored, position = self.fetch_stored(queues, wid, now)
        return job, position

    def fetch_stored(self, queues: Iterable[str], wid: str, now: float) -> tuple[Job | None, bytes | None, int]:
        """`fetch`, with the reserved job's JSON as it was stored (FETCH's reply: protocol/spec.md
        §3 FETCH; the head's bytes as its queue holds them, so the job is not encoded again)."""
        store = self.store
        selects = self.features.select
        position = 0
        for name in queues:
            if store.is_paused(name):
                continue
            select = None
            for hook in selects:
                if hook.selects(name):
                    select = hook
                    break
            while (found := store.queue_head_stored(name) if select is None
                   else self._next_job(name, select, wid, now)) is not None:
                job, stored = found
                ops = self._fetch_ops(job, wid, now)
                if isinstance(ops, hooks.Drop):  # a feature dropped it (e.g. expired): try the next one
                    ops = [Drop(name, job["jid"])]
                    for drop in self._hooks(job).drop:
                        ops.extend(drop.on_drop(job, now))
                    ops.extend(self._end_ops([Ended(job, Ending.EXPIRED)], now))
                    position = store.commit(ops)
                    self._tell("expired", job, now)
                    continue
                expires = now + jobs.reservation_seconds(job)
                ops.insert(0, Reserve(name, job["jid"], wid, now, expires))
                position = store.commit(ops)
                if self.features.observe:  # (every job: no call without an observer)
                    self._tell("fetched", job, wid, now)
                return job, stored, position
        return None, None, position

    def _next_job(self, queue: str, select: hooks.SelectHook, wid: str, now: float) -> tuple[Job, bytes] | None:
        """The job a FETCH by `wid` would take from `queue` for `select` (a select hook: else
        it takes the head, `Store.queue_head_stored`), with its JSON as stored."""
        picked = select.select(queue, wid, now)
        job = None if picked is None else self.store.queue_job(queue, picked)
        return None if job is None else (job, jobs.encode_job(job))

    def available(self, queue: str, now: float) -> int:
        """How many jobs of `queue` FETCHes may take at `now`: its size, capped by the select
        hooks' room (a full throttle: none). 0 for a paused queue."""
        if self.store.is_paused(queue):
            return 0
        size = self.store.queue_size(queue)
        for select in self.features.select:
            room = select.room(queue, now) if select.selects(queue) else None
            if room is not None:
                size = min(size, room)
        return size

    def _fetch_ops(self, job: Job, wid: str, now: float) -> list[AnyOp] | hooks.Drop:
        """The fetch hooks' ops for reserving `job`, or the first hook's `hooks.Drop` (an
        answer, not the store op `Drop` that takes the job out of its queue)."""
        ops: list[AnyOp] = []
        for fetch in self._hooks(job).fetch:
            more = fetch.on_fetch(job, wid, now)
            if isinstance(more, hooks.Drop):
                return more
            ops.extend(more)
        return ops

    def ack(self, jid: str, now: float, result: Any = None) -> int:
        """ACK: end the reservation and count it; an unknown jid is not an error. `result`
        is what the worker reported with it (the end hooks record it)."""
        res = self.store.reservation(jid)
        if res is None:
            return 0
        job = res.job
        ops: list[AnyOp] = [Done(jid, utc_day(now), False)]
        for finish in self._hooks(job).finish:
            ops += finish.on_ack(res, now)
        ops += self._end_ops([_new_ended(Ended, (job, _SUCCESS, result))], now)
        position = self.store.commit(ops)
        if self.features.observe:  # (every job: no call without an observer)
            self._tell("acked", res, now)
        return position

    def fail(self, jid: str, errtype: str, message: str, backtrace: list[str], now: float) -> int:
        """FAIL a reserved job: record the failure and retry it, kill it, or drop it."""
        if not jid:
            raise ClientError("missing JID")
        res = self.store.reservation(jid)
        if res is None:
            raise NoSuchJob(jid)
        position = self._commit_failure(res, errtype, message, backtrace, now)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job %s failed: %s: %s", jid, errtype, message, extra=jobs.log_fields(res.job))
        return position

    def worker_lost(self, wid: str, jids: Iterable[str], now: float) -> int:
        """A worker process reaped for missing heartbeats: fail each of `jids` (its
        reservations that a feature says must not outlive it) through the failure path, as a
        FAIL from the worker would, each in one journaled step (protocol/spec.md §11.7).
        A jid no longer reserved is skipped. Returns the journal position covering it."""
        position = 0
        message = f"Faktory worker {wid} stopped sending heartbeats"
        for jid in jids:
            res = self.store.reservation(jid)
            if res is not None:
                position = self._commit_failure(res, "WorkerLost", message, [], now)
        return position

    def _commit_failure(self, res: Reservation, errtype: str, message: str, backtrace: list[str],
                        now: float) -> int:
        """Commit one failure of a reserved job (`_failure_ops`) and tell the observers."""
        position = self.store.commit(self._failure_ops(res, errtype, message, backtrace, now))
        self._tell("failed", res, now)
        return position

    def _tell(self, event: str, *args: Any) -> None:
        """Call `event`, an `ObserveHook` method, on every observer with `args`: after the
        commit, as the hook's contract wants (the one place the observers are told)."""
        for observer in self.features.observe:
            getattr(observer, event)(*args)

    @staticmethod
    def _failure_block(job: Job, errtype: str, message: str, backtrace: list[str], now: float) -> dict[str, Any]:
        """`job`'s failure block after one more failure (counts, texts; no `next_at`)."""
        retry = job.get("retry", jobs.DEFAULT_RETRY)
        previous = job.get("failure")
        failure: dict[str, Any]
        if previous is None:
            failure = {"retry_count": 0, "remaining": retry, "failed_at": format_time(now)}
        else:
            failure = dict(previous)
            failure["retry_count"] = previous.get("retry_count", 0) + 1
            remaining = previous.get("remaining", 0)
            failure["remaining"] = remaining - 1 if remaining > 0 else remaining  # §5.3: only while > 0
            failure.setdefault("failed_at", format_time(now))
        for key, value in (("message", _truncate(message, MAX_MESSAGE)),
                           ("errtype", _truncate(errtype, MAX_ERRTYPE)),
                           ("backtrace", backtrace[:MAX_BACKTRACE])):
            if value:
                failure[key] = value
            else:
                failure.pop(key, None)
        return failure

    @staticmethod
    def _with_failure(job: Job, failure: dict[str, Any]) -> Job:
        return jobs.with_fields(job, failure={k: failure[k] for k in FAILURE_ORDER if k in failure})

    def _failure_ops(
        self, res: Reservation, errtype: str, message: str, backtrace: list[str], now: float
    ) -> list[AnyOp]:
        job = res.job
        retry = job.get("retry", jobs.DEFAULT_RETRY)
        failure = self._failure_block(job, errtype, message, backtrace, now)
        ops: list[AnyOp] = [Done(job["jid"], utc_day(now), True)]
        count = failure["retry_count"]
        if retry == 0:
            outcome = Outcome.DROPPED
        elif 0 < retry and count < retry:
            outcome = Outcome.RETRY
            next_at = now + retry_delay(count, self.rng)
            failure["next_at"] = format_time(next_at)
        else:
            outcome = Outcome.DEAD
        failed = self._with_failure(job, failure)
        if outcome is Outcome.RETRY:
            ops.append(SetAdd("retries", next_at, failed))
        elif outcome is Outcome.DEAD:
            ops.append(SetAdd("dead", now + DEAD_TTL, failed))
        return ops + self._failed_ops(res, failed, outcome, now)

    def _failed_ops(self, res: Reservation, failed: Job, outcome: Outcome, now: float) -> list[AnyOp]:
        """The hooks' ops for a reservation that ended without success (`failed` is the job
        as it goes on): the finish hooks, then, unless it will run again, the end hooks."""
        ops: list[AnyOp] = []
        for finish in (self.features if "custom" in failed else self._hooks(res.job)).finish:
            ops.extend(finish.on_fail(res, failed, outcome, now))
        if outcome is not Outcome.RETRY:
            ending = Ending.DEAD if outcome is Outcome.DEAD else Ending.DISCARDED
            ops.extend(self._end_ops([Ended(failed, ending)], now))
        return ops

    def _end_ops(self, ended: list[Ended], now: float, *skip: object) -> list[AnyOp]:
        """The end hooks' ops for jobs that left for good in the step being planned.

        A hook answering `hooks.Ends` ended more jobs itself (dependents killed by policy):
        every other end hook is told of those too, in the same step; `skip` holds the hook
        whose own `Ends` these are (it is not told again), and one that counts them itself.
        Each hook hears of every job once, and a hook after the one that ended more jobs
        hears of them in the same call as of the others: its plan (a batch's counts) is made
        against the committed state, so two calls in one step would each count from it and
        the second would undo the first (a member killed by policy as another member of
        its batch died). A `custom_only` end hook counts as told of jobs without `custom`
        (it would do nothing with them), but hears of the jobs a hook ended in their stead."""
        features = self.features
        if not skip and len(ended) == 1 and "custom" not in ended[0].job:
            # (every ACK of a job without `custom`: the hooks not `custom_only` are told of it,
            # in order, and unless one ends more jobs that is all)
            end_hooks = features.end
            ops: list[AnyOp] = []
            for i in features.plain_end_at:
                answer = end_hooks[i].on_end(ended, now)
                if isinstance(answer, hooks.Ends):  # the others hear of its jobs as below
                    heard = [1 if gate or j < i else 0 for j, gate in enumerate(features.end_gated)]
                    news = [*ended, *answer.ended]
                    heard[i] = len(news)
                    return self._end_rounds(end_hooks, heard, news, ops + answer.ops, i + 1, now)
                ops += answer
            return ops
        ends: Sequence[hooks.EndHook] = features.end
        if skip:
            ends = [end for end in ends if all(end is not hook for hook in skip)]
        news = list(ended)
        count = len(news)
        gated = features.custom_only_end
        if not gated or ("custom" in news[0].job if count == 1 else any("custom" in end.job for end in news)):
            heard = [0] * len(ends)
        elif ends is features.end:
            heard = [count if gate else 0 for gate in features.end_gated]
        else:
            heard = [count if id(end) in gated else 0 for end in ends]  # how many of `news` each hook was told of
        return self._end_rounds(ends, heard, news, [], 0, now)

    @staticmethod
    def _end_rounds(ends: Sequence[hooks.EndHook], heard: list[int], news: list[Ended], ops: list[AnyOp],
                    start: int, now: float) -> list[AnyOp]:
        """`_end_ops`'s rounds: each hook of `ends` is told of the jobs of `news` it has not
        heard of (`heard[i]` of them it has), from hook `start` on, then round after round
        from the first, until every hook has heard of every job; `news` grows by the jobs a
        hook's `hooks.Ends` ended, and `ops` by every hook's ops."""
        count = len(news)
        while True:
            for i in range(start, len(ends)):
                told = heard[i]
                if told == count:
                    continue
                answer = ends[i].on_end(news[told:], now)
                if isinstance(answer, hooks.Ends):
                    ops += answer.ops
                    news += answer.ended  # its own: it is not told of them
                    count = len(news)
                else:
                    ops += answer
                heard[i] = count
            if not heard or min(heard) == count:
                return ops
            start = 0

    def _ends_ops(self, answer: list[Any] | hooks.Ends, source: object, now: float) -> list[AnyOp]:
        """A hook's ops, and if it answered `hooks.Ends`, the other end hooks' ops for the
        jobs it ended."""
        if isinstance(answer, hooks.Ends):
            return [*answer.ops, *self._end_ops(answer.ended, now, source)]
        return list(answer)

    def batch_reached(self, reached: Sequence[hooks.Reached], caller: object, now: float) -> hooks.Ends:
        """`hooks.JobPusher`: every batch hook's ops for batches that reached moments, with
        the end hooks' ops for the jobs those ended (a dependent killed by policy) — all but
        `caller`'s, which is handed those jobs to count in the plan it is making."""
        ops: list[AnyOp] = []
        ended: list[Ended] = []
        for watch in self.features.batch if reached else ():
            answer = watch.on_batch(reached, now)
            if isinstance(answer, hooks.Ends):
                ops += [*answer.ops, *self._end_ops(answer.ended, now, watch, caller)]
                ended += answer.ended
            else:
                ops += answer
        return hooks.Ends(ops, ended)

    # --- timers' work ---------------------------------------------------------------

    def next_due(self) -> float | None:
        """When the earliest scheduled/retry/dead/reservation entry becomes due."""
        scores = [self.store.next_due()]
        scores.extend(timed.next_due() for timed in self.features.timed)
        due = [s for s in scores if s is not None]
        return min(due) if due else None

    def run_due(self, now: float) -> int:
        """Move everything due at `now`; returns the journal position covering it.

        A failure tied to one job quarantines that job (`_quarantine`) and the rest goes
        on. Any other failure of one of the timers' tasks is re-raised once the other
        tasks have run, so the caller (the server's due timer) logs it and tries again later.
        """
        tasks: list[Callable[[], int]] = [
            lambda: self._enqueue_due("scheduled", "Scheduled", now),
            lambda: self._enqueue_due("retries", "Retries", now),
            lambda: self._purge_dead(now),
            lambda: self._expire_reservations(now),
        ]
        tasks.extend((lambda t=timed: self.store.commit(self._ends_ops(t.run_due(now), t, now)))
                     for timed in self.features.timed)
        positions = [0]
        failure: Exception | None = None
        for task in tasks:
            try:
                positions.append(task())
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return max(positions)

    def _enqueue_due(self, set_name: str, task: str, now: float) -> int:
        due = self.store.set_due(set_name, now)
        stats = self.tasks[task]
        stats.cycles += 1
        position = 0
        for _score, jid, job in due:
            leave: list[AnyOp] = [SetRemove(set_name, jid)]

            def ops(job: Job = job, leave: list[AnyOp] = leave) -> list[AnyOp]:
                try:
                    jobs.check_queue_name(job["queue"])
                except ClientError:
                    return leave  # Faktory loses such a job too (logged); it cannot be enqueued
                return leave + [self._enqueue_op(job, now)]

            position = max(position, self._commit_or_quarantine(job, ops, leave, now))
        stats.enqueued += len(due)
        return position

    def _purge_dead(self, now: float) -> int:
        due = self.store.set_due("dead", now)
        self.tasks["Dead"].cycles += 1
        self.tasks["Dead"].enqueued += len(due)
        return self.store.commit([SetRemove("dead", jid) for _s, jid, _j in due])

    def _expire_reservations(self, now: float) -> int:
        position = 0
        for res in self.store.reservations_due(now):
            jid = res.job["jid"]
            # One commit per job, so each feature's hook sees what the previous one did.
            def ops(res: Reservation = res) -> list[AnyOp]:
                return self._failure_ops(res, EXPIRED_ERRTYPE, EXPIRED_MESSAGE, [], now)

            leave: list[AnyOp] = [Done(jid, utc_day(now), True)]
            position = max(position, self._commit_or_quarantine(
                res.job, ops, leave, now, lambda res=res: self._tell("failed", res, now)))
            self.reaped_reservations += 1
        return position

    def _commit_or_quarantine(self, job: Job, ops: Callable[[], list[AnyOp]], leave: list[AnyOp], now: float,
                              committed: Callable[[], None] | None = None) -> int:
        """Commit the timer's `ops()` for one job, then call `committed`; if making or
        committing them fails, quarantine it."""
        try:
            position = self.store.commit(ops())
        except Exception as exc:
            return self._quarantine(job, leave, exc, now)
        if committed is not None:
            committed()
        return position

    def _quarantine(self, job: Job, leave: list[AnyOp], exc: Exception, now: float) -> int:
        """Take a job the timers cannot move out of their way, into the dead set.

        `leave` are the ops that take it from where it is; its failure block says why
        (errtype `ServerError`), so an operator finds it in the dead set and can retry or
        delete it. The features' hooks are not run for it (they may be what failed). If even
        the dead entry cannot be committed (the job itself cannot be stored), the job is
        dropped and logged in full; if `leave` fails too, the error goes to the caller.
        """
        jid = job.get("jid", "")
        log.error("the timers could not move job %s; it goes to the dead set", jid, exc_info=exc,
                  extra=jobs.log_fields(job))
        failure = {"failed_at": format_time(now),
                   "message": _truncate(f"faktory_py could not move this job: {type(exc).__name__}: {exc}",
                                        MAX_MESSAGE),
                   "errtype": QUARANTINE_ERRTYPE, "retry_count": 0, "remaining": 0}
        try:
            dead = jobs.with_fields(job, failure={k: failure[k] for k in FAILURE_ORDER if k in failure})
            return self.store.commit(leave + [SetAdd("dead", now + DEAD_TTL, dead)])
        except Exception:
            log.exception("job %s cannot be stored in the dead set either; dropping it: %r", jid, job,
                          extra=jobs.log_fields(job))
            return self.store.commit(leave)

    # --- MUTATE ---------------------------------------------------------------------

    def mutate(self, request: Any, now: float) -> int:
        """MUTATE {"cmd","target","filter"}: clear / discard / kill / requeue set entries,
        or end the live reservations named by jid (target `working`)."""
        if not isinstance(request, dict):
            raise ClientError("json: cannot unmarshal into Go value of type server.Mutation")
        cmd, target = request.get("cmd"), request.get("target")
        if cmd not in ("clear", "discard", "kill", "requeue"):
            raise ClientError("unknown mutate operation")
        if target == WORKING:
            return self._mutate_working(cmd, request.get("filter"), now)
        feature = next((hook for hook in self.features.target if hook.target == target), None)
        if feature is not None:  # a feature's own target (`held`)
            jids = None if cmd == "clear" else \
                [jid for jid, _job in self._filtered(list(feature.entries()), request.get("filter"))]
            answer = feature.take("discard" if cmd == "clear" else cmd, jids, now)
            return self.store.commit(self._ends_ops(answer, feature, now))
        if target not in MUTATE_TARGETS:
            raise ClientError("invalid target for mutation command")
        if cmd == "clear":
            return self._clear(target, now)
        entries = [(jid, job) for _score, jid, job in self.store.set_entries(target)]
        return self._take_entries(cmd, target, self._filtered(entries, request.get("filter")), now)

    def _mutate_working(self, cmd: str, filter_: Any, now: float) -> int:
        """MUTATE on `working` names reservations by jid only: ending every reservation, or
        those a pattern matches, would end jobs still running fine (an operator names the
        zombies), so `clear` and a filter without `jids` are refused."""
        if cmd == "clear":
            raise ClientError("clear does not apply to target working: requeue, kill or discard filter.jids")
        jids, _pattern, _jobtype = self._filter_fields(filter_ if filter_ is not None else {})
        if not jids:
            raise ClientError("target working needs filter.jids, the jids of the reservations to end")
        return self.end_reservations(cmd, jids, now)

    def end_reservations(self, cmd: str, jids: Iterable[str], now: float) -> int:
        """End the live reservations of `jids` by an operator's decision (MUTATE on
        `working`, the Busy page's buttons): "requeue" appends the job, unchanged, to its
        queue; "kill" puts it in the dead set with a failure block (`Killed`, "killed by an
        operator"); "discard" drops it. One journaled step per job, through the store's one
        way out of a reservation (its slot frees and a waiting FETCH wakes, as on ACK), with
        the features told as of a failure (`FinishHook.on_fail`): a requeued job as one that
        will be retried, a killed one as dead, a discarded one as dropped (and the end hooks
        see those two end, as `Ending.DEAD` and `Ending.DISCARDED`). A jid not reserved
        (any more) is skipped. Returns the journal position covering it."""
        if cmd not in ("requeue", "kill", "discard"):
            raise ClientError("unknown mutate operation")
        position = 0
        for jid in dict.fromkeys(jids):
            res = self.store.reservation(jid)
            if res is not None:
                position = self.store.commit(self._end_reservation_ops(res, cmd, now))
        return position

    def _end_reservation_ops(self, res: Reservation, cmd: str, now: float) -> list[AnyOp]:
        job = res.job
        ops: list[AnyOp] = [Release(job["jid"])]
        if cmd == "requeue":
            outcome, ended = Outcome.RETRY, job
            ops.append(enqueue_op(job))
        elif cmd == "kill":
            outcome = Outcome.DEAD
            ended = self._with_failure(job, self._failure_block(job, KILLED_ERRTYPE, KILLED_MESSAGE, [], now))
            ops.append(SetAdd("dead", now + DEAD_TTL, ended))
        else:
            outcome, ended = Outcome.DROPPED, job
        return ops + self._failed_ops(res, ended, outcome, now)

    def _take_entries(self, cmd: str, target: str, entries: list[tuple[str, Job]], now: float,
                      *, enqueued_now: bool = False) -> int:
        """Take `entries` out of the set `target`: drop them ("discard"), move them to the
        dead set ("kill") or to their queues ("requeue"; with `enqueued_now` the job gets a
        fresh `enqueued_at`, as Faktory's web UI gives it). MUTATE and the web UI's buttons
        both come here."""
        ops: list[AnyOp] = []
        ended: list[Ended] = []
        for jid, job in entries:
            ops.append(SetRemove(target, jid))
            if cmd == "kill":
                ops.append(SetAdd("dead", now + DEAD_TTL, job))
            elif cmd == "requeue":
                ops.append(self._enqueue_op(job, now) if enqueued_now else enqueue_op(job))
            if cmd != "requeue" and target in LIVE_SETS:
                ended.append(Ended(job, Ending.DEAD if cmd == "kill" else Ending.DELETED))
        return self.store.commit(ops + self._end_ops(ended, now))

    def _clear(self, target: str, now: float) -> int:
        """Empty a set (MUTATE clear); its live entries end as deleted."""
        ended = [Ended(job, Ending.DELETED) for _s, _jid, job in self.store.set_entries(target)] \
            if target in LIVE_SETS else []
        return self.store.commit([SetClear(target), *self._end_ops(ended, now)])

    def _filtered(self, entries: list[tuple[str, Job]], filter_: Any) -> list[tuple[str, Job]]:
        """The entries a MUTATE filter matches (jids win; else glob and/or jobtype)."""
        if filter_ is None:
            return entries
        jids, pattern, jobtype = self._filter_fields(filter_)
        if jids:
            wanted = set(jids)
            return [(jid, job) for jid, job in entries if jid in wanted]
        if pattern:
            glob = compile_glob(pattern)
            entries = [(jid, job) for jid, job in entries if glob.fullmatch(jobs.encode_job(job).decode())]
        if jobtype:
            entries = [(jid, job) for jid, job in entries if job.get("jobtype") == jobtype]
        return entries

    @staticmethod
    def _filter_fields(filter_: Any) -> tuple[list[str], str, str]:
        """A MUTATE filter's (jids, regexp, jobtype), absent ones empty; Go's decoder texts
        for a filter of the wrong shape."""
        if not isinstance(filter_, dict):
            raise ClientError("json: cannot unmarshal into Go struct field Mutation.filter of type server.JobFilter")
        jids = filter_.get("jids") or []
        pattern = filter_.get("regexp") or ""
        jobtype = filter_.get("jobtype") or ""
        for name, ok in (("jids", isinstance(jids, list) and all(isinstance(j, str) for j in jids)),
                         ("regexp", isinstance(pattern, str)), ("jobtype", isinstance(jobtype, str))):
            if not ok:
                go_type = "[]string" if name == "jids" else "string"
                raise ClientError(f"json: cannot unmarshal into Go struct field JobFilter.{name} of type {go_type}")
        return jids, pattern, jobtype

    # --- queues ---------------------------------------------------------------------

    def _named(self, names: list[str]) -> list[str]:
        """`*` as the first name means every known queue."""
        if names and names[0] == "*":
            return self.store.queue_names()
        return names

    def pause(self, names: list[str]) -> int:
        return self.store.commit([Pause(self._named(names))])

    def resume(self, names: list[str]) -> int:
        return self.store.commit([Resume(self._named(names))])

    def remove(self, names: list[str], now: float) -> int:
        """QUEUE REMOVE: the queues and their jobs are gone; each job ends as deleted."""
        known = [n for n in self._named(names) if self.store.has_queue(n)]
        ended = [Ended(job, Ending.DELETED) for n in known for job in self.store.queued(n)] \
            if self.features.end else []
        return self.store.commit([*(RemoveQueue(n) for n in known), *self._end_ops(ended, now)])

    def latency(self, names: list[str], now: float) -> dict[str, float | int]:
        """Seconds since the next job of each queue was enqueued (0 if none)."""
        out: dict[str, float] = {}
        for name in names:
            head = self.store.queue_head(name)
            seconds = 0.0
            if head is not None:
                enqueued = head.get("enqueued_at")
                if enqueued:
                    seconds = max(0.0, now - parse_time(enqueued))
            out[name] = go_float(round(seconds, 6))  # our timestamps have microseconds
        return out

    def flush(self) -> int:
        return self.store.commit([Flush()])

    # --- single entries and jobs (the web UI's actions) -----------------------------

    def _entries(self, target: str, jids: Iterable[str] | None) -> list[tuple[str, Job]]:
        """The named entries of a set that still exist (every entry for None)."""
        if jids is None:
            return [(jid, job) for _score, jid, job in self.store.set_entries(target)]
        found = ((jid, self.store.set_entry(target, jid)) for jid in dict.fromkeys(jids))
        return [(jid, entry[1]) for jid, entry in found if entry is not None]

    def enqueue_entries(self, target: str, jids: Iterable[str] | None, now: float) -> int:
        """Move set entries to their queues now ("retry now", "add to queue"); None: all.

        MUTATE requeue with a fresh `enqueued_at`. Entries already gone (worked by the
        timer meanwhile) are skipped.
        """
        return self._take_entries("requeue", target, self._entries(target, jids), now, enqueued_now=True)

    def kill_entries(self, target: str, jids: Iterable[str] | None, now: float) -> int:
        """Move retry or scheduled entries to the dead set (MUTATE kill); None: all."""
        if target == "dead":
            raise ClientError("dead jobs cannot be killed again")
        return self._take_entries("kill", target, self._entries(target, jids), now)

    def delete_entries(self, target: str, jids: Iterable[str] | None, now: float) -> int:
        """Remove set entries for good (MUTATE discard); None: clear the set (MUTATE clear)."""
        if jids is None:
            return self._clear(target, now)
        return self._take_entries("discard", target, self._entries(target, jids), now)

    def delete_queued(self, queue: str, jids: Iterable[str], now: float) -> int:
        """Delete jobs waiting in a queue, by jid (one scan of the queue); each ends as deleted."""
        wanted = set(jids)
        gone = [job for job in self.store.queued(queue) if job["jid"] in wanted]
        ended = [Ended(job, Ending.DELETED) for job in gone]
        return self.store.commit([*(Drop(queue, job["jid"]) for job in gone), *self._end_ops(ended, now)])
