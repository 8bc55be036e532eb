"""Command dispatch: one parsed command line in, a `Reply` (or, for a FETCH that must wait,
a `Block`) out — synchronously, without I/O.

This layer knows the reply shape of every command (protocol/clients.md §3 is the list
of types clients insist on) and the exact error texts; the semantics live in
`core.lifecycle`, the connection handling and every wait in `server`. FETCH's blocking wait
(protocol/spec.md §3 FETCH) is part of the command's meaning, so the dispatcher decides
when it waits, on which queues and for how long (`Block`), and what it answers when woken
(`retry_fetch`) or when the time is up (`fetch_timed_out`); the adapter only does the waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .. import wire
from ..core import jobs
from ..core.info import ServerStats, build_info
from ..core.lifecycle import Manager
from ..core.workers import Worker, WorkerRegistry
from ..errors import ClientError
from ..features.workflows.feature import Workflows
from ..util import jsoncodec

log = logging.getLogger("faktory_py.commands")

#: Enterprise commands not built in (yet): verb → the error OSS Faktory answers them with.
ENTERPRISE_ONLY: dict[str, str] = {}


@dataclass(eq=False)
class Session:
    """What the server knows about one identified connection."""

    conn_id: int
    wid: str = ""
    worker: Worker | None = None
    #: the client's address, for the log of what it is refused
    peer: str = "unknown"


class Reply(NamedTuple):
    """What to answer a command with (a tuple: cheap to build once per command).

    The adapter must make journal `position` durable (written, and synced as the fsync
    policy says) before it sends `data`: it is the last commit the command caused,
    whoever made it (the command, a feature's hook, a job dropped on the way), or 0 when
    the command committed nothing; for a FETCH, what `Dispatcher.fetch_position` makes of
    it (a FETCH acknowledges nothing: 0 while the local journal can be written, whose
    sends write it anyway, protocol/spec.md §7). `data` None sends nothing; `close` closes
    the connection after `data` (END).
    """

    data: bytes | None
    position: int
    close: bool


#: builds a `Reply` from a tuple of its fields: what a NamedTuple's own constructor does, in
#: half its time, behind a Python frame less (every command's reply is built here)
_new_reply = tuple.__new__


class Block(NamedTuple):
    """A FETCH that found no job: wait, then call `Dispatcher.retry_fetch` or, once
    `timeout` seconds have passed since the wait began, `Dispatcher.fetch_timed_out`.

    The adapter waits to be woken for one of `wait_on` (the FETCH's queues that are not
    paused; empty: nothing can wake it, it only waits out the timeout — all its queues are
    paused, or the worker is quiet). The adapter may await something else before it starts
    waiting (tcp.py first sends the replies to earlier commands); since a job may arrive
    meanwhile without waking anyone, it then starts with `retry_fetch(..., None)`.
    """

    #: the FETCH's queues, in the order they are tried
    queues: tuple[str, ...]
    wait_on: tuple[str, ...]
    timeout: float
    #: the journal's position when the FETCH began: its reply waits for whatever was
    #: committed since (a job reserved, or dropped on the way; see `Reply.position`)
    since: int


class Clock(Protocol):
    """Unix time as the server sees it (server/clock.py: trio's clock, so tests can jump it)."""

    def now(self) -> float: ...


class FetchesWaiting(Protocol):
    """What `FetchWaiters.statistics()` reports (INFO's `server.fetches_waiting`)."""

    @property
    def fetches_waiting(self) -> int: ...


class FetchWaiters(Protocol):
    """The adapter's blocked FETCHes (server/waiters.py): the dispatcher reads their number
    for INFO, and wakes further waiters for the jobs a woken FETCH left in its queue."""

    def statistics(self) -> FetchesWaiting: ...

    def top_up(self, queue: str, available: int) -> None: ...


class JournalPosition(Protocol):
    """Where the journal is: the position of the last commit handed to it."""

    @property
    def appended(self) -> int: ...


#: Commands (verb, or verb and subcommand) that change nothing journaled: still answered
#: while the journal cannot be written (protocol/spec.md §7). FETCH is answered too when
#: none of its queues has a job to reserve.
READ_ONLY = frozenset({"END", "INFO", "BEAT", "QUEUE LATENCY", "TRACK GET", "BATCH OPEN", "BATCH STATUS",
                       "THROTTLE STATUS", "CRON STATUS", "RESULT GET", "JOB DEPS"})


def _internal_error() -> ClientError:
    """What Faktory answers when a command is missing the argument it needs."""
    return ClientError("internal error")


def _strings_but_result(payload: dict[str, Any]) -> bool:
    """ACK's rule: a string `jid`, and every other field but `result` a string (every ACK
    asks: `{"jid": …}` alone is answered without a loop)."""
    jid = payload.get("jid")
    if not isinstance(jid, str):
        return False
    return len(payload) == 1 or all(isinstance(v, str) for k, v in payload.items() if k != "result")


def _decode_object(arg: str, fields: dict[str, type], invalid: str) -> dict[str, Any]:
    """Decode a JSON object whose listed fields must have the given types (null = absent)."""
    value = jobs.decode_argument(arg, invalid)
    if not isinstance(value, dict):
        raise ClientError(f"{invalid} {arg}")
    out: dict[str, Any] = {}
    for name, kind in fields.items():
        item = value.get(name)
        if item is None:
            continue
        ok = isinstance(item, kind) and not (kind is int and isinstance(item, bool))
        if kind is list:
            ok = ok and all(isinstance(x, str) for x in item)
        if not ok:
            raise ClientError(f"{invalid} {arg}")
        out[name] = item
    return out


class Dispatcher:
    """Runs commands for identified connections (see module doc)."""

    def __init__(
        self,
        manager: Manager,
        workers: WorkerRegistry,
        clock: Clock,
        journal: JournalPosition,
        waiters: FetchWaiters,
        stats: ServerStats,
        fetch_timeout: float,
    ) -> None:
        self.manager = manager
        self.workers = workers
        self.clock = clock
        #: read before and after each command: what it committed is what its reply waits for
        self.journal = journal
        self.waiters = waiters
        self.stats = stats
        self.fetch_timeout = fetch_timeout
        #: INFO's server.description; clients look for "Enterprise" in it
        self.description = "Faktory"
        #: why commands that change state are refused right now (the journal cannot be
        #: written), or None; server/durability.py's `refusal`
        self.refusal: Callable[[], str | None] = lambda: None
        #: what a FETCH reply whose commits end at a position waits for: a FETCH acknowledges
        #: nothing, so the op log may let it skip the fsync (protocol/spec.md §7); server/durability.py's
        #: `fetch_position`
        self.fetch_position: Callable[[int], int] = lambda position: position
        #: told of every command refused with a client error (the session and the `-` reply):
        #: the server logs it, rate-limited (server/refusals.py)
        self.refused: Callable[[Session, bytes], None] = lambda session, reply: None
        self._handlers: dict[str, Callable[[Session, str], Any]] = {
            "END": self._end, "FLUSH": self._flush, "INFO": self._info, "PUSH": self._push,
            "PUSHB": self._pushb, "FETCH": self._fetch, "ACK": self._ack, "FAIL": self._fail,
            "BEAT": self._beat, "MUTATE": self._mutate, "QUEUE": self._queue,
        }

    def register(self, verb: str, handler: Callable[[Session, str], bytes]) -> None:
        """Add a command (how the Enterprise features bring BATCH and TRACK): `handler`
        returns the reply's bytes or raises ClientError."""
        self._handlers[verb] = handler

    def verbs(self) -> list[str]:
        """Every verb it answers (its own and the features'): the bounded label set of the
        command timings (core/timings.py)."""
        return list(self._handlers)

    def handle(self, session: Session, command: wire.Command) -> Reply | Block:
        """The reply to `command`, or a `Block` for a FETCH that must wait for a job."""
        self.stats.command_count += 1
        journal = self.journal
        before = journal.appended
        handler = self._handlers.get(command.verb)
        try:
            if handler is None:
                raise ClientError(ENTERPRISE_ONLY.get(command.verb) or f"unknown command {command.verb}")
            problem = self.refusal()
            data = None if problem is None else self._refused(command, problem)
            if data is None:
                data = handler(session, command.arg)
                if type(data) is Block:
                    return data
        except ClientError as exc:
            data = wire.error(str(exc), exc.code)
            self.refused(session, data)
        except Exception:
            log.exception("internal error handling %s", command.verb)
            data = wire.error("internal error")
        after = journal.appended
        position = after if after != before else 0
        if position and command.verb == "FETCH":
            position = self.fetch_position(position)
        return _new_reply(Reply, (data, position, data is None))

    def retry_fetch(self, session: Session, block: Block, woken_by: str | None) -> Reply | Block:
        """Try a waiting FETCH again, after it was woken for queue `woken_by` (or None:
        before its first wait, see `Block`): its reply, or the `Block` to wait on next.

        Before the first wait it is refused like a new command: the journal may have
        failed while the adapter sent the earlier replies (`-MISCONF`, protocol/spec.md §7).
        """
        problem = self.refusal() if woken_by is None else None
        if problem is not None and self._has_job(block.queues):
            return Reply(wire.error(problem, "MISCONF"), self._committed_since(block), False)
        try:
            data = self._fetch_now(session, block.queues)
            if data is not None and woken_by is not None:  # wake others for what we left behind
                self._wake_for_the_rest(woken_by)
        except ClientError as exc:
            data = wire.error(str(exc), exc.code)
        except Exception:
            log.exception("internal error handling FETCH")
            data = wire.error("internal error")
        if data is None:
            wait_on = self._wait_on(session, block.queues)
            if wait_on == block.wait_on:  # (usually: no queue of it paused or resumed meanwhile)
                return block
            if woken_by is not None and woken_by not in wait_on:
                # It no longer waits on the queue that woke it (its worker went quiet, or the
                # queue was paused): the job's wake passes on.
                self._wake_for_the_rest(woken_by)
            return block._replace(wait_on=wait_on)
        return Reply(data, self._committed_since(block), False)

    def waits_on(self, session: Session, block: Block) -> bool:
        """Whether a waiting FETCH woken meanwhile would only wait again, as it does: none of
        its queues holds a job it could take, and it waits on the same queues. (The I/O loop
        then keeps it in its place instead of trying it again, `QueueWaiters.rewait`.)"""
        return not self._has_job(block.queues) and self._wait_on(session, block.queues) == block.wait_on

    def fetch_timed_out(self, block: Block, woken_by: str | None) -> Reply:
        """The reply to a FETCH that waited `block.timeout` for nothing: `$-1`. `woken_by`
        is the queue it was last woken for, whose other waiters get the jobs it left; the
        adapter passes None when it ends the wait for another reason (the server stops)."""
        if woken_by is not None:
            self._wake_for_the_rest(woken_by)
        return Reply(wire.NULL, self._committed_since(block), False)

    def wake(self, queues: Iterable[str]) -> None:
        """Wake as many waiting FETCHes of each of `queues` as the jobs FETCHes may take there
        (the wakes the I/O loop held during its turn, server/waiters.py `hold`)."""
        for queue in queues:
            self._wake_for_the_rest(queue)

    def _wake_for_the_rest(self, queue: str) -> None:
        """A FETCH woken for `queue` is done with it: wake as many other waiters as the jobs
        FETCHes may still take there."""
        self.waiters.top_up(queue, self.manager.available(queue, self.clock.now()))

    def _committed_since(self, block: Block) -> int:
        """What a waiting FETCH's reply waits for: what was committed since it began (its
        reservation, jobs dropped on the way, the PUSH that woke it), as `fetch_position` says."""
        after = self.journal.appended
        return self.fetch_position(after) if after != block.since else 0

    def _refused(self, command: wire.Command, problem: str) -> bytes | None:
        """`-MISCONF …` for a command that would change state while the journal cannot take
        it (`problem`, the refusal's text)."""
        if command.verb in READ_ONLY:
            return None
        if f"{command.verb} {command.arg.partition(' ')[0].upper()}" in READ_ONLY:
            return None
        if command.verb == "FETCH" and not self._has_job(command.arg.split(" ")):
            return None  # nothing to reserve: it waits (or answers nil) as usual
        return wire.error(problem, "MISCONF")

    def _has_job(self, queues: Iterable[str]) -> bool:
        """Whether a FETCH from `queues` would find a job to reserve (one a throttle holds
        back does not count)."""
        now = self.clock.now()
        return any(self.manager.available(q, now) for q in queues)

    def _end(self, session: Session, arg: str) -> None:
        return None

    def _flush(self, session: Session, arg: str) -> bytes:
        self.manager.flush()
        return wire.OK

    def info(self, now: float) -> dict[str, Any]:
        """The INFO document at `now` (the web UI's too: server/app.py hands it this method)."""
        return build_info(self.manager, self.workers, self.stats, self.description,
                          self.waiters.statistics().fetches_waiting, now)

    def _info(self, session: Session, arg: str) -> bytes:
        return wire.bulk_json(self.info(self.clock.now()))

    def _push(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise _internal_error()
        self.manager.push(jobs.decode_json(arg), self.clock.now(), session.wid)
        return wire.OK

    def _pushb(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise _internal_error()
        errors, _position = self.manager.push_bulk(jobs.decode_json(arg), self.clock.now(), session.wid)
        return wire.bulk_json(dict(sorted(errors.items())))  # Go sorts map keys

    def _fetch(self, session: Session, arg: str) -> bytes | Block:
        queues = (arg,) if arg and " " not in arg else tuple(filter(None, arg.split(" ")))  # (mostly one queue)
        if not queues:
            raise ClientError("must call fetch with at least one queue")
        since = self.journal.appended
        data = self._fetch_now(session, queues)
        if data is not None:
            return data
        return Block(queues, self._wait_on(session, queues), self.fetch_timeout, since)

    def _fetch_now(self, session: Session, queues: tuple[str, ...]) -> bytes | None:
        """Reserve a job from `queues` for the session: its reply, or None if there is none."""
        worker = session.worker
        if worker is not None and worker.state != "running":
            return None  # a quiet/terminating worker gets nothing
        _job, stored, _position = self.manager.fetch_stored(queues, session.wid, self.clock.now())
        return None if stored is None else wire.bulk(stored)

    def _wait_on(self, session: Session, queues: tuple[str, ...]) -> tuple[str, ...]:
        """The queues whose jobs may end a FETCH's wait (none for a quiet worker)."""
        worker = session.worker
        if worker is not None and worker.state != "running":
            return ()
        store = self.manager.store
        return tuple(q for q in queues if not store.is_paused(q))

    def _ack(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise _internal_error()
        payload = jobs.decode_argument(arg, "invalid ACK")
        if not isinstance(payload, dict) or not _strings_but_result(payload):
            raise ClientError(f"invalid ACK {arg}")
        result = payload.get("result")
        if result is not None:  # protocol/spec.md §14.6: refused whole when too large
            workflows = self.manager.features.find(Workflows)
            if workflows is not None:
                workflows.check_result(result)
        self.manager.ack(payload["jid"], self.clock.now(), result)
        return wire.OK

    def _fail(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise _internal_error()
        payload = _decode_object(
            arg, {"jid": str, "errtype": str, "message": str, "backtrace": list}, "invalid FAIL")
        self.manager.fail(
            payload.get("jid", ""), payload.get("errtype", ""), payload.get("message", ""),
            payload.get("backtrace", []), self.clock.now())
        return wire.OK

    def _beat(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise _internal_error()
        payload = _decode_object(
            arg, {"wid": str, "current_state": str, "rss_kb": int}, "invalid BEAT")
        wid = payload.get("wid", "")
        worker = self.workers.beat(
            wid, payload.get("current_state", ""), payload.get("rss_kb"), self.clock.now())
        if worker is None:
            raise ClientError(f"unknown worker {wid}")
        if worker.state == "running":
            return wire.OK
        return wire.bulk_json({"state": worker.state})

    def _mutate(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise ClientError("invalid format")
        try:
            request = jsoncodec.decode(arg)
        except jsoncodec.InvalidJSON as exc:
            raise ClientError(str(exc)) from None
        self.manager.mutate(request, self.clock.now())
        return wire.OK

    def _queue(self, session: Session, arg: str) -> bytes:
        sub, _, rest = arg.partition(" ")
        sub = sub.upper()
        names = [n for n in rest.split(" ") if n]
        if not sub:
            raise _internal_error()
        if sub == "LATENCY":
            if names == ["*"]:
                raise ClientError("QUEUE LATENCY does not support wildcards")
            latencies = self.manager.latency(names, self.clock.now())
            return wire.bulk_json(dict(sorted(latencies.items())))  # Go sorts map keys
        actions = {"PAUSE": self.manager.pause, "RESUME": self.manager.resume,
                   "REMOVE": lambda queues: self.manager.remove(queues, self.clock.now())}
        if sub not in actions:
            raise ClientError(f"no such QUEUE subcommand: {sub}")
        if not names:
            raise _internal_error()
        actions[sub](names)
        return wire.OK
