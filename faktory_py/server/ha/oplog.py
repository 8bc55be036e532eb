"""The op log in Redis on the primary: group commit through one fenced append in flight,
and the lease renewer (protocol/spec.md §7.1).

`append` (the store's sink) packs a commit and queues it, as the local journal does. The
appender task seals everything queued into one journal frame (the frames a snapshot
sealed meanwhile go along) and appends them as the next stream entries with the APPEND
script, over a connection of its own (server/ha/link.py: coredis's per-call cost was most of
an append's), which checks this node's fencing token and the index atomically with the XADD;
with `min_replicas` a `WAIT` rides in the same round trip. While one append is in flight,
new commits queue up and ride the next one, so the batch grows with load. A reply that depends on commit `n` is sent only once the append covering `n`
returned OK (and WAIT reached `min_replicas`): `write_through`/`wait_written` are the
gate server/tcp.py already passes every reply through.

An append whose outcome is unknown (connection lost, timeout, cancelled by a stop) is sent
again, from the same first index: the script skips what had landed (DUP when all of it). `-OOM`/`-NOREPLICAS` wrote nothing and are retried
too. FENCED (the lease holds another token), GAP (someone else appended) or a passed lease
deadline make this node *fenced*: it acknowledges nothing more, `failed` is set and the
server stops (exit status 1); its supervisor starts it again, as a standby.

Before it holds the lease the node is a standby (server/ha/standby.py): `role` says so,
and `refusal` refuses every change (the web UI's actions) until the takeover.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import coredis
import trio
from coredis.exceptions import RedisError, ResponseError

from ...config import RedisConfig
from ...core.timings import SLOW_BUCKETS, Histogram
from ...errors import ClientError
from ...store.journal import frame, join_items, pack_items
from ...store.redis.entries import Position, frame_crc
from ...store.redis.keys import Keys
from ...store.redis.lease import Lease
from ...store.redis.scripts import RELEASE, RENEW, append_keys, is_fence, lease_keys, parse_append
from ..durability import JournalFailed
from .client import call_replicated, follow_master
from .link import ScriptLink
from .standby import Role

log = logging.getLogger("faktory_py.redis")

#: the pause before an append or renewal is sent again after a Redis error
RETRY_PAUSE = 0.05


class RedisOpLog:
    """The OpLog (store/oplog.py) of a primary whose log is a Redis stream."""

    def __init__(self, client: coredis.Redis[bytes], link: ScriptLink, config: RedisConfig, lease: Lease,
                 position: Position) -> None:
        self.client = client
        #: the APPEND script's own connection (server/ha/link.py); the rest goes through `client`
        self.link = link
        self.config = config
        self.keys = Keys(config.name)
        self.lease = lease
        #: standby, primary or fenced (INFO `faktory.ha`, `/health/primary`)
        self.role = Role()
        #: the last entry this node appended (or replayed)
        self.position = position
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._pending: list[bytes | memoryview] = []
        self._pending_ops = 0
        #: the OpLog contract's `appended` (only `append` changes it): an attribute, not a
        #: property, as the dispatcher reads it before and after every command
        self.appended = 0
        self._written = 0
        #: frames sealed and not yet confirmed, in index order: (index, frame, the last commit
        #: it covers); the next append sends them all (a snapshot seals to pin its index)
        self._sealed: list[tuple[int, bytes, int]] = []
        #: frame bytes in the stream since the last snapshot (what a start replays)
        self.bytes_since_snapshot = 0
        #: set when `bytes_since_snapshot` passed `snapshot_threshold` (server/ha/snapshots.py)
        self.snapshot_due = trio.Event()
        self.snapshot_threshold = 0
        self.snapshots = 0
        self.snapshot_failures = 0
        self._dirty = trio.Event()
        self._progress = trio.Event()
        self.failed = trio.Event()
        self.fence_reason: str | None = None
        self.appends = 0
        self.renew_failures = 0
        self.wait_shortfalls = 0
        #: for `/metrics` (core/timings.py), as the journal's: an append's round trip (WAIT
        #: included) is the write; Redis fsyncs by itself (never observed); a snapshot is the
        #: compaction
        self.write_times = Histogram()
        self.fsync_times = Histogram()
        self.compaction_times = Histogram(SLOW_BUCKETS)

    # --- the OpLog contract ---------------------------------------------------------------

    def append(self, ops: list[dict[str, Any]]) -> int:
        """Queue a commit (once fenced it is never written, and no reply waiting for it is sent)."""
        try:
            packed = pack_items(ops)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ClientError(f"cannot be journaled: {exc}") from None
        self._pending.append(packed)
        self._pending_ops += len(ops)
        self.appended += 1
        self._dirty.set()
        return self.appended

    def refusal(self) -> str | None:
        if self.role.role == "primary":
            return None
        return f"this node is a {self.role.role}: the primary is {self.role.holder or 'unknown'}"

    def write_through(self, sequence: int) -> bool:
        """True once commit `sequence` is in Redis. Past the lease deadline nothing is
        answered any more, not even a reply that depends on no commit."""
        if not self.failed.is_set() and not self.lease.valid(trio.current_time()):
            self.fence("the lease deadline passed")
        if self.failed.is_set():
            raise JournalFailed(f"fenced: {self.fence_reason}")
        return self._written >= sequence

    async def wait_written(self, sequence: int) -> None:
        while not self.write_through(sequence):
            await self._progress.wait()

    def fetch_position(self, sequence: int) -> int:
        """`sequence`: a FETCH reply waits for its append, as every reply does. Written is
        synced here, and appends run in a task of their own, so there is no cheaper step that
        keeps a standby taking over from handing a job out again while its worker runs it."""
        return sequence

    def is_synced(self, sequence: int) -> bool:
        return self._written >= sequence

    async def synced(self, sequence: int) -> None:
        """Written is durable here: the append that wrote it waited for what Redis promises."""

    async def durable(self, sequence: int) -> None:
        await self.wait_written(sequence)

    async def wait_writable(self) -> None:
        """Redis either takes an append or the node is fenced: there is no degraded state."""

    # --- fencing ----------------------------------------------------------------------------

    def fence(self, reason: str) -> None:
        """Stop acknowledging anything, for good; the server stops on `failed`."""
        if self.failed.is_set():
            return
        self.fence_reason = reason
        self.role.role = "fenced"
        self.lease.refused()
        log.critical("FENCED: %s; this node acknowledges nothing more and stops (%d commits unanswered)",
                     reason, self.appended - self._written)
        self.failed.set()
        self._progress.set()

    # --- background tasks -------------------------------------------------------------------

    async def run(self) -> None:
        """The appender and the lease renewer; returns only once fenced."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_appender)
            nursery.start_soon(self._run_renewer)
            await self.failed.wait()
            nursery.cancel_scope.cancel()

    async def _run_appender(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            try:
                await self._flush()
            except JournalFailed:
                return

    def seal(self) -> Position:
        """Turn the commits queued so far into the next frame; returns the position the log
        will be at once every sealed frame is in (what a snapshot taken now describes)."""
        if self._pending:
            index = self._sealed[-1][0] + 1 if self._sealed else self.position.index + 1
            data = frame(join_items(self._pending_ops, self._pending))
            self._sealed.append((index, data, self.appended))
            self._pending, self._pending_ops = [], 0
            self._dirty.set()
        if not self._sealed:
            return self.position
        index, data, _ = self._sealed[-1]
        return Position(index, self.lease.epoch, frame_crc(data))

    async def wait_appended(self, index: int) -> None:
        """Return once entry `index` is in Redis; raises JournalFailed when it never will be."""
        while self.position.index < index:
            if self.failed.is_set():
                raise JournalFailed(f"fenced: {self.fence_reason}")
            await self._progress.wait()

    async def flush(self) -> None:
        """Append what is queued now, before the appender task runs (the takeover's marker)."""
        await self._flush()

    async def _flush(self) -> None:
        """Append every sealed frame and what is queued, in one call."""
        target = self.seal()
        if not self._sealed:
            return
        batch = list(self._sealed)
        started = time.perf_counter()
        await self._append_until_done(batch[0][0], [data for _, data, _ in batch])
        self.write_times.observe(time.perf_counter() - started)
        del self._sealed[:len(batch)]
        self.position = target
        self._written = batch[-1][2]
        self.appends += 1
        self.bytes_since_snapshot += sum(len(data) for _, data, _ in batch)
        if self.snapshot_threshold and self.bytes_since_snapshot > self.snapshot_threshold:
            self.snapshot_due.set()
        progress, self._progress = self._progress, trio.Event()
        progress.set()

    async def _append_until_done(self, index: int, frames: list[bytes]) -> None:
        """Append `frames` as entries `index`, `index`+1, … (and WAIT for the replicas) before the lease deadline,
        sending the same call again after an unknown outcome; fences and raises
        JournalFailed when it cannot."""
        args = [self.lease.token, index, self.lease.epoch, *frames]
        failures = 0
        while True:
            with trio.move_on_at(self.lease.deadline):
                try:
                    if await self._append_once(args):
                        if failures:
                            log.warning("append of entry %d went through after %d failed attempts", index, failures)
                        return
                except ResponseError as exc:
                    if is_fence(str(exc)):
                        self.fence(f"the append of entry {index} was refused: {exc}")
                        raise JournalFailed(f"fenced: {self.fence_reason}") from None
                    # a Redis failover retries every RETRY_PAUSE for seconds: the first one is logged
                    log.log(logging.DEBUG if failures else logging.WARNING,
                            "append of entry %d refused for now (%s); sending it again", index, exc)
                except (RedisError, OSError) as exc:
                    log.log(logging.DEBUG if failures else logging.WARNING,
                            "append of entry %d: outcome unknown (%s); sending it again", index, exc)
                failures += 1
                await trio.sleep(RETRY_PAUSE)
                continue
            self.fence(f"the lease deadline passed while appending entry {index}")
            raise JournalFailed(f"fenced: {self.fence_reason}")

    async def _append_once(self, args: list[Any]) -> bool:
        """One APPEND (with WAIT when `min_replicas`); True once it is in Redis as required.

        If the entry is in but too few replicas have it, the WAIT is repeated behind a RENEW
        rather than alone: WAIT counts only the writes of its own connection, which need not
        be the one the append went over, and a replica that has the later RENEW has the
        entry (replication is one ordered stream). The APPEND is sent again first (DUP, as
        a rule): the master may have changed meanwhile (Sentinel), and the new one lacks an
        entry no replica had; `follow_master` makes sure it is the one Sentinel names. The
        lease deadline bounds the wait: renewals do not count without the replicas either."""
        need, timeout = self.config.min_replicas, self.config.wait_timeout_ms
        reply, replicas = await self.link.call(append_keys(self.keys), args, need, timeout)
        parse_append(reply)
        while replicas < need:
            self.wait_shortfalls += 1
            log.warning("only %d of %d replicas have the op log's last entry; waiting", replicas, need)
            await follow_master(self.client)
            self.link.drop()  # the APPEND's own connection dials the master Sentinel names now
            parse_append((await self.link.call(append_keys(self.keys), args, 0, timeout))[0])
            renewed, replicas = await call_replicated(self.client, self._renew, lease_keys(self.keys),
                                                      [self.lease.token, self.config.lease_ttl_ms], need, timeout)
            if renewed != 1:
                self.fence("the lease is held by another node")
                raise JournalFailed(f"fenced: {self.fence_reason}")
        return True

    async def _run_renewer(self) -> None:
        """Renew the lease every `renew_every_ms`; a renewal counts once Redis took it (and
        `min_replicas` replicas have it, so a promoted replica never holds an older lease
        than the one this node relies on). The deadline alone decides when to stop."""
        lease = self.lease
        need, timeout = self.config.min_replicas, self.config.wait_timeout_ms
        args = [lease.token, self.config.lease_ttl_ms]
        while True:
            await trio.sleep_until(lease.wake_at())
            now = trio.current_time()
            if not lease.valid(now):
                self.fence("the lease could not be renewed before its deadline")
                return
            if now < lease.renew_at:
                continue
            with trio.move_on_at(lease.deadline):
                try:
                    renewed, replicas = await call_replicated(self.client, self._renew, lease_keys(self.keys),
                                                              args, need, timeout)
                    if renewed == 1 and replicas < need:
                        await follow_master(self.client)  # the next renewal goes where Sentinel says
                except (RedisError, OSError) as exc:
                    self.renew_failures += 1
                    log.warning("renewing the lease failed (%s); trying again", exc)
                    lease.renew_failed(trio.current_time())
                    continue
                if renewed != 1:
                    self.fence("the lease is held by another node")
                    return
                if replicas < need:
                    self.renew_failures += 1
                    log.warning("lease renewed on %d of %d replicas; it does not count", replicas, need)
                    lease.renew_failed(trio.current_time())
                    continue
                lease.renewed(now)

    async def aclose(self) -> None:
        """A clean stop (the background tasks are cancelled by now): append what is sealed
        or queued, then give the lease up, so the next node need not wait for it
        to expire."""
        if self.failed.is_set():
            return
        try:
            with trio.move_on_at(self.lease.deadline):
                while self._sealed or self._pending:
                    await self._flush()
                await self._release(keys=lease_keys(self.keys), args=[self.lease.token])
        except JournalFailed:
            pass  # fenced: already logged
        except (RedisError, OSError) as exc:
            log.warning("could not release the lease cleanly (%s); it expires by itself", exc)
