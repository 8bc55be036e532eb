"""Command dispatch: one parsed command line in, one reply (bytes) out.

This layer knows the reply shape of every command (protocol/clients.md §3 is the list
of types clients insist on) and the exact error texts; the semantics live in
`manager`, the connection handling in `server`. FETCH's 2-second blocking wait is here
because it is part of the command's meaning.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from .. import wire
from ..core import jobs
from ..core.info import ServerStats, build_info
from ..core.lifecycle import Manager
from ..core.workers import Worker, WorkerRegistry
from ..errors import ClientError
from ..server.clock import Clock
from ..server.waiters import QueueWaiters
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


#: Commands (verb, or verb and subcommand) that change nothing journaled: still answered
#: while the journal cannot be written (protocol/spec.md §7). FETCH is answered too when
#: none of its queues has a job to reserve.
READ_ONLY = frozenset({"END", "INFO", "BEAT", "QUEUE LATENCY", "TRACK GET", "BATCH OPEN", "BATCH STATUS"})

#: `Dispatcher.handle(..., may_block=False)`'s answer for a FETCH that would wait
#: (no reply is ever empty, so it cannot be mistaken for one)
WOULD_BLOCK = b""


def _internal_error() -> ClientError:
    """What Faktory answers when a command is missing the argument it needs."""
    return ClientError("internal error")


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
    """Runs commands for identified connections."""

    def __init__(
        self,
        manager: Manager,
        workers: WorkerRegistry,
        clock: Clock,
        durable: Callable[[int], Awaitable[None]],
        waiters: QueueWaiters,
        stats: ServerStats,
        fetch_timeout: float = 2.0,
    ) -> None:
        self.manager = manager
        self.workers = workers
        self.clock = clock
        #: awaited before a reply: the fsync policy's promise for a journal position (the
        #: connection writes the journal itself before sending, see server/durability.py)
        self.durable = durable
        self.waiters = waiters
        self.stats = stats
        self.fetch_timeout = fetch_timeout
        #: INFO's server.description; clients look for "Enterprise" in it
        self.description = "Faktory"
        #: why commands that change state are refused right now (the journal cannot be
        #: written), or None; server/durability.py's `refusal`
        self.refusal: Callable[[], str | None] = lambda: None
        self._handlers: dict[str, Callable[[Session, str], Awaitable[bytes | None]]] = {
            "END": self._end, "FLUSH": self._flush, "INFO": self._info, "PUSH": self._push,
            "PUSHB": self._pushb, "FETCH": self._fetch, "ACK": self._ack, "FAIL": self._fail,
            "BEAT": self._beat, "MUTATE": self._mutate, "QUEUE": self._queue,
        }

    def register(self, verb: str, handler: Callable[[Session, str], Awaitable[bytes | None]]) -> None:
        """Add a command (how the Enterprise features bring BATCH and TRACK)."""
        self._handlers[verb] = handler

    async def handle(self, session: Session, command: wire.Command, *, may_block: bool = True) -> bytes | None:
        """The reply to send, or None to close the connection without one (END).

        With `may_block=False` a FETCH that would have to wait returns WOULD_BLOCK instead
        (and is not counted): the server then flushes earlier replies and watches the
        socket while it calls again to wait.
        """
        self.stats.command_count += 1
        handler = self._handlers.get(command.verb)
        try:
            if handler is None:
                if command.verb in ENTERPRISE_ONLY:
                    return wire.error(ENTERPRISE_ONLY[command.verb])
                return wire.error(f"unknown command {command.verb}")
            refused = self._refused(command)
            if refused is not None:
                return refused
            if handler != self._fetch:
                return await handler(session, command.arg)
            reply = await self._fetch(session, command.arg, may_block)
            if reply is WOULD_BLOCK:
                self.stats.command_count -= 1  # counted when it is run again to wait
            return reply
        except ClientError as exc:
            return wire.error(str(exc), exc.code)
        except Exception:
            log.exception("internal error handling %s", command.verb)
            return wire.error("internal error")

    def _refused(self, command: wire.Command) -> bytes | None:
        """`-MISCONF …` for a command that would change state while the journal cannot take it."""
        problem = self.refusal()
        if problem is None or command.verb in READ_ONLY:
            return None
        if f"{command.verb} {command.arg.partition(' ')[0].upper()}" in READ_ONLY:
            return None
        if command.verb == "FETCH":
            store = self.manager.store
            if not any(store.queues.get(q) and q not in store.paused for q in command.arg.split(" ")):
                return None  # nothing to reserve: it waits (or answers nil) as usual
        return wire.error(problem, "MISCONF")

    async def _ok_after(self, position: int) -> bytes:
        await self.durable(position)
        return wire.OK

    async def _end(self, session: Session, arg: str) -> None:
        return None

    async def _flush(self, session: Session, arg: str) -> bytes:
        return await self._ok_after(self.manager.flush())

    def info(self, now: float) -> dict[str, Any]:
        """The INFO document at `now` (also the web UI's)."""
        return build_info(self.manager, self.workers, self.stats, self.description,
                          self.waiters.statistics().fetches_waiting, now)

    async def _info(self, session: Session, arg: str) -> bytes:
        return wire.bulk_json(self.info(self.clock.now()))

    async def _push(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise _internal_error()
        return await self._ok_after(self.manager.push(jobs.decode_json(arg), self.clock.now(), session.wid))

    async def _pushb(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise _internal_error()
        errors, position = self.manager.push_bulk(jobs.decode_json(arg), self.clock.now(), session.wid)
        await self.durable(position)
        return wire.bulk_json(dict(sorted(errors.items())))  # Go sorts map keys

    async def _fetch(self, session: Session, arg: str, may_block: bool = True) -> bytes:
        queues = [q for q in arg.split(" ") if q]
        if not queues:
            raise ClientError("must call fetch with at least one queue")
        worker = session.worker
        store = self.manager.store
        job, position, woken_by = None, 0, None
        if not may_block:
            if worker is None or worker.state == "running":
                job, position = self.manager.fetch(queues, session.wid, self.clock.now())
            if job is None:
                return WOULD_BLOCK
        with trio.move_on_after(self.fetch_timeout):
            while job is None:
                if worker is not None and worker.state != "running":
                    await trio.sleep_forever()  # a quiet/terminating worker gets nothing
                job, position = self.manager.fetch(queues, session.wid, self.clock.now())
                if job is None:
                    active = [q for q in queues if q not in store.paused]
                    woken_by = await (self.waiters.wait(active) if active else trio.sleep_forever())
        if woken_by is not None:  # wake others for what we left behind
            self.waiters.top_up(woken_by, len(store.queues.get(woken_by, ())))
        if job is None:
            return wire.NULL
        with trio.CancelScope(shield=True):  # reserved now: the reply must go out
            await self.durable(position)
        return wire.bulk(jobs.encode_job(job))

    async def _ack(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise _internal_error()
        payload = jobs.decode_argument(arg, "invalid ACK")
        if (not isinstance(payload, dict) or "jid" not in payload
                or not all(isinstance(v, str) for v in payload.values())):
            raise ClientError(f"invalid ACK {arg}")
        return await self._ok_after(self.manager.ack(payload["jid"], self.clock.now()))

    async def _fail(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise _internal_error()
        payload = _decode_object(
            arg, {"jid": str, "errtype": str, "message": str, "backtrace": list}, "invalid FAIL")
        position = self.manager.fail(
            payload.get("jid", ""), payload.get("errtype", ""), payload.get("message", ""),
            payload.get("backtrace", []), self.clock.now())
        return await self._ok_after(position)

    async def _beat(self, session: Session, arg: str) -> bytes:
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

    async def _mutate(self, session: Session, arg: str) -> bytes:
        if not arg:
            raise ClientError("invalid format")
        try:
            request = jsoncodec.decode(arg)
        except jsoncodec.InvalidJSON as exc:
            raise ClientError(str(exc)) from None
        return await self._ok_after(self.manager.mutate(request, self.clock.now()))

    async def _queue(self, session: Session, arg: str) -> bytes:
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
                   "REMOVE": self.manager.remove}
        if sub not in actions:
            raise ClientError(f"no such QUEUE subcommand: {sub}")
        if not names:
            raise _internal_error()
        return await self._ok_after(actions[sub](names))
