"""The trio side of the journal: write batching, fsync policy, group commit, compaction.

`append` is the MemoryStore's sink. It packs the committed ops at once (so an op list
that cannot be journaled is refused before the store applies it) and queues them;
`write` puts everything queued into the journal file as one frame with one write. The
server writes before it sends any bytes to anyone (`write_through`), so no reply can reveal
an op that is not in the file yet (a `kill -9` after a reply cannot lose what it
acknowledged), while the ops of every command answered in one send, or of a whole PUSHB,
share one frame, one write and, on replay, one read. A frame holds whole commits only, so
a torn last frame loses whole commits that nobody was told about.

A reply then awaits `synced(sequence)`: under the `always` policy that waits for an fsync
covering it; one fsync releases every reply that queued up behind it (group commit); the
next starts once as many commits came in after it as it covered, or half its time has
passed (`_wait_for_cohort`), and covers everything written by then. A quick fsync runs in
the event loop itself, as Redis's `appendfsync always` does; one after an fsync that took
long runs in a worker thread, so that a slow disk does not stall the loop
(`INLINE_FSYNC_MAX`). A FETCH's reply waits for no fsync: it acknowledges nothing
(`fetch_position`). `everysec` fsyncs once a second; `no` leaves it to the OS.
Anything that answers without going through the server's send path (the web UI) awaits
`durable(sequence)`, which writes first.

A write that fails (disk full, quota, an I/O error) leaves the file at its last good
frame and the journal *degraded* (protocol/spec.md §7): the commits it could not take stay
queued (memory already holds them), replies that depend on them wait (`write_through`, `wait_written`), the
server refuses every command that would change state (`refusal`, answered `-MISCONF`),
timers wait (`wait_writable`), and `run_retry` tries the write again with a short backoff;
the first write that succeeds releases the waiting replies and ends the degraded state.
Only what a retry cannot mend — a failed fsync (Linux may drop the unwritten pages), a
partial frame that could not be cut off — fails the journal for good: `failed` is set,
which stops the server, and the file holds a consistent prefix a restart replays.

A compaction that fails (no space for the snapshot or the next segment) is cleaned up by
the journal, logged, and tried again once the journal has grown to twice its size; it
never degrades or stops the server by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import trio

from ..core.timings import SLOW_BUCKETS, Histogram
from ..errors import ClientError, FaktoryPyError
from ..store.journal import Journal, join_items, pack_items

log = logging.getLogger("faktory_py.journal")

#: What compaction writes: the live state as journal records (`Store.snapshot`).
Snapshot = Callable[[], Iterator[Any]]

#: A clean stop compacts when at least this much was journaled since the last snapshot.
COMPACT_ON_CLOSE_BYTES = 1 << 20
#: Retrying a failed write: the first retry after this many seconds, doubling up to the cap.
RETRY_FIRST = 0.1
RETRY_MAX = 1.0
#: Under `always`, an fsync runs in the event loop while the last one took less than this
#: (seconds), else in a worker thread. Handing a quick fsync to a thread and its result back
#: costs more than it saves: the loop has little to do meanwhile (the clients wait for the
#: fsync), and the hand-offs cost CPU and a trio wake-up each (R1 at 10 threads: about 20%
#: fewer jobs/s and 25% more CPU per job in the thread). A slow disk's fsync in the loop
#: would hold up FETCHes, timers and the web UI for its whole length; after one such fsync
#: the next go to the thread, until one is quick again.
INLINE_FSYNC_MAX = 0.001


class JournalFailed(FaktoryPyError):
    """The journal cannot be written any more (see module doc); nothing may be acknowledged."""


class DurableJournal:
    """Wraps a Journal with write batching, the fsync policy and compaction (see module doc)."""

    def __init__(
        self,
        journal: Journal,
        policy: str,
        compact_min_bytes: int,
    ) -> None:
        self.journal = journal
        self.policy = policy
        self._compact_min = compact_min_bytes
        self._compact_threshold = compact_min_bytes
        #: journal bytes written since the server started
        self.written = 0
        self._pending: list[bytes | memoryview] = []  # each queued commit's ops, packed, without the array header
        self._pending_ops = 0
        #: sequence number of the last commit queued (what a reply may depend on); only
        #: `append` changes it. An attribute, not a property: the dispatcher reads it before
        #: and after every command
        self.appended = 0
        self._written = 0  # ... of the last commit in the file
        self._synced = 0  # ... of the last commit fsynced
        self._dirty = trio.Event()
        self._synced_event = trio.Event()
        self._last_fsync = 0.0  # seconds the last fsync took
        self._next_cohort = 0  # the commit whose append the next fsync waits for (see _wait_for_cohort)
        self._cohort_target = 0  # ... while it waits (0: it does not)
        self._cohort_event = trio.Event()
        self._progress = trio.Event()  # set (and replaced) by every write that succeeds or fails for good
        self._compact = trio.Event()
        #: set when the journal failed for good; the server stops on it
        self.failed = trio.Event()
        self._failure: BaseException | None = None
        #: the error of the write that failed, while the journal is degraded; else None
        self.degraded: OSError | None = None
        self._degraded_event = trio.Event()
        self._recovered = trio.Event()
        self._retry_now = trio.Event()
        self.compactions = 0
        self.compaction_failures = 0
        #: how long each frame's write, each fsync and each compaction took (`/metrics`)
        self.write_times = Histogram()
        self.fsync_times = Histogram()
        self.compaction_times = Histogram(SLOW_BUCKETS)

    def append(self, ops: list[dict[str, Any]]) -> int:
        """Pack one committed op list and queue it for the next `write`; returns its sequence number.

        Raises ClientError, before anything changes, if the ops cannot be packed.
        """
        try:
            packed = pack_items(ops)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ClientError(f"cannot be journaled: {exc}") from None
        self._pending.append(packed)
        self._pending_ops += len(ops)
        appended = self.appended = self.appended + 1
        self._dirty.set()
        if appended == self._cohort_target:
            self._cohort_event.set()
        return appended

    def refusal(self) -> str | None:
        """While degraded, why commands that change state are refused; else None."""
        if self.degraded is None:
            return None
        return f"journal write failed: {self.degraded}; refusing writes until it can be written"

    async def wait_writable(self) -> None:
        """Return once the journal is not degraded (timers wait here instead of piling up changes)."""
        while self.degraded is not None:
            await self._recovered.wait()

    def write(self) -> None:
        """Put every queued commit into the journal file, as one frame with one write.

        A write that fails leaves them queued and the journal degraded (see module doc);
        raises JournalFailed if the journal failed for good.
        """
        if self._failure is not None:
            raise JournalFailed("the journal could not be written") from self._failure
        if not self._pending:
            return
        payload = join_items(self._pending_ops, self._pending)
        started = time.perf_counter()
        try:
            self.written = self.journal.append_packed(payload)
        except OSError as exc:
            if self.journal.failure is not None:  # the partial frame could not be cut off
                raise self._fail(exc) from exc
            self._degrade(exc)  # the file is back at its last good frame
            return
        except BaseException as exc:
            raise self._fail(exc) from exc
        self.write_times.observe(time.perf_counter() - started)
        self._pending.clear()
        self._pending_ops = 0
        if self.degraded is not None:
            self._recover(self.appended - self._written)
        self._written = self.appended
        progress, self._progress = self._progress, trio.Event()
        progress.set()
        if self.journal.bytes_since_snapshot > self._compact_threshold:
            self._compact.set()

    def _degrade(self, exc: OSError) -> None:
        if self.degraded is None:
            log.error("writing the journal failed (%s); refusing writes and retrying until it can be written", exc)
            self._degraded_event.set()
        self.degraded = exc

    def _recover(self, waited: int) -> None:
        log.warning("the journal is written again (%d commits had waited); accepting writes", waited)
        self.degraded = None
        self._dirty.set()  # replies waiting in `synced` need the fsync of what was just written
        self._degraded_event = trio.Event()
        recovered, self._recovered = self._recovered, trio.Event()
        recovered.set()

    def _fail(self, exc: BaseException) -> JournalFailed:
        """Fail for good: set `failed`, wake everyone waiting; returns the error to raise."""
        self._failure = exc
        self.failed.set()
        self._progress.set()
        log.critical("the journal cannot be written any more; stopping without acknowledging anything more",
                     exc_info=exc)
        return JournalFailed("the journal could not be written")

    def write_through(self, sequence: int) -> bool:
        """Write what is queued (unless degraded: then only `run_retry` writes); True if
        commit `sequence` is in the file. The server calls it before every send with the
        last commit the replies depend on (0: none). Raises JournalFailed."""
        if self.degraded is None:
            self.write()
        return self._written >= sequence

    async def wait_written(self, sequence: int) -> None:
        """`write_through`, waiting while degraded until commit `sequence` is in the file."""
        while not self.write_through(sequence):
            if self._failure is not None:
                raise JournalFailed("the journal could not be written") from self._failure
            await self._progress.wait()

    def fetch_position(self, sequence: int) -> int:
        """What a FETCH reply whose commits end at `sequence` waits for: nothing (0) while
        the journal can be written, else `sequence` (protocol/spec.md §7).

        A FETCH reply acknowledges nothing. Replay restores a prefix of the journal, so a
        crash that loses the reservation (or a job dropped on the way, or the PUSH that woke
        the FETCH) restores the state before it — the job back in its queue, its unique lock
        as it was — and the job runs again (at least once); every later `+OK`, on any
        connection, waits for a later commit, whose fsync covers it. So the reply skips the
        fsync, and the group commit waits only for acknowledgements. It is still written
        first, as every send writes what is queued (`write_through`): a kill -9 of the
        process then finds the reservation in the file and does not hand the job out again
        while its worker runs it. While degraded a send cannot write, so the reply waits
        for the write as other replies do.
        """
        return 0 if self.degraded is None else sequence

    def is_synced(self, sequence: int) -> bool:
        """True if commit `sequence` is written and, under `always`, fsynced already."""
        return self._written >= sequence and (self.policy != "always" or self._synced >= sequence)

    async def synced(self, sequence: int) -> None:
        """Return once the commit `sequence` (already written) is as durable as the policy says."""
        if self.policy != "always":
            return
        while self._synced < sequence:
            await self._synced_event.wait()

    async def durable(self, sequence: int) -> None:
        """Write, then `synced`: for answers that do not go out through the server's send."""
        await self.wait_written(sequence)
        await self.synced(sequence)

    async def run_retry(self) -> None:
        """Background task: while degraded, retry the write (soon, then at most every
        RETRY_MAX seconds, and at once when a failed compaction freed its files)."""
        while True:
            await self._degraded_event.wait()
            delay = RETRY_FIRST
            while self.degraded is not None:
                with trio.move_on_after(delay):
                    await self._retry_now.wait()
                self._retry_now = trio.Event()
                delay = min(2 * delay, RETRY_MAX)
                try:
                    self.write()
                except JournalFailed:
                    return

    async def _fsync(self) -> None:
        if self.degraded is None:
            self.write()
        covered = self._written
        started = time.perf_counter()
        try:
            if self.policy == "always" and self._last_fsync < INLINE_FSYNC_MAX:
                self.journal.fsync()
            else:
                await trio.to_thread.run_sync(self.journal.fsync)
        except OSError as exc:
            if self.journal.failure is not None:
                raise self._fail(exc) from exc
            # Not the fsync itself (e.g. EMFILE from os.dup): nothing was lost, try again.
            log.warning("could not fsync the journal (%s); trying again in 1 s", exc)
            self._dirty.set()
            await trio.sleep(1)
            return
        elapsed = time.perf_counter() - started
        self.fsync_times.observe(elapsed)
        self._last_fsync = elapsed
        self._next_cohort = self.appended + covered - self._synced
        self._synced = covered
        event, self._synced_event = self._synced_event, trio.Event()
        event.set()

    async def _wait_for_cohort(self) -> None:
        """Before the next fsync (`always`): wait until as many commits were queued since the
        last one ended as it covered, or half as long as it took.

        Clients that wait for every reply send their next command just after the fsync that
        released them; an fsync started at once covers only those that came in while the
        last one ran, and the clients it released wait for the one after it: two fsyncs per
        command, each covering half of them. Waiting until the released clients are back (a
        round trip, well under an fsync on a loaded machine) gets all of them into one. R1 at
        10 threads: about half the fsyncs per job, a quarter less CPU per job, more jobs per
        second of fsync (bench/RESULTS.md). A lone client never waits (the last fsync covered
        one commit: its next is enough), and no reply waits more than half an fsync longer.
        """
        target = self._next_cohort
        if self.appended >= target:
            return
        self._cohort_target = target
        self._cohort_event = trio.Event()
        with trio.move_on_after(self._last_fsync / 2):
            await self._cohort_event.wait()
        self._cohort_target = 0

    async def run_fsync(self) -> None:
        """Background task: writes what no reply has flushed yet, and fsyncs per the policy:
        group commit (`always`), once a second (`everysec`) or never (`no`). Ends only when
        the journal failed for good (`failed` stops the server)."""
        while True:
            await self._dirty.wait()
            if self.policy == "always":
                # One yield first: the I/O loop, reading on while replies wait for this fsync,
                # gets its next turn in (and its batch into this fsync). Fewer, larger group
                # commits: an fsync costs CPU too, not only the wait.
                await trio.lowlevel.checkpoint()
                await self._wait_for_cohort()
            self._dirty = trio.Event()
            try:
                if self.policy == "no":
                    if self.degraded is None:
                        self.write()
                else:
                    await self._fsync()
            except JournalFailed:
                return
            except Exception:
                log.exception("the journal's fsync task failed; trying again in 1 s")
                self._dirty.set()
                await trio.sleep(1)
            if self.policy != "always":
                await trio.sleep(1)

    async def run_compaction(self, snapshot: Snapshot) -> None:
        """Background task: rewrite the journal from `snapshot()` (the live state's records,
        `Store.snapshot`) once it has grown enough.

        A failure is logged and the journal cleans up after it (see Journal.rotate and
        write_snapshot); the next try waits until the journal has doubled.
        """
        while True:
            await self._compact.wait()
            self._compact = trio.Event()
            if self.journal.bytes_since_snapshot <= self._compact_threshold:
                continue  # set again while the last compaction ran, which took care of it
            try:
                await self._compact_now(snapshot)
            except JournalFailed:
                return
            except Exception as exc:
                if self.journal.failure is not None:  # rotate's fsync, or its cleanup, failed
                    self._fail(exc)
                    return
                self.compaction_failures += 1
                self._compact_threshold = max(self._compact_min, 2 * self.journal.bytes_since_snapshot)
                self._retry_now.set()  # the cleanup may have freed the space a write needs
                log.error("journal compaction failed (%s); cleaned up, next try at %d journal bytes",
                          exc, self._compact_threshold)

    async def _compact_now(self, snapshot: Snapshot) -> None:
        """Write a snapshot of the live state and drop the segments it covers.

        The segment switch and the state copy happen together without an await in
        between, so the snapshot is exactly the state the older segments described;
        the slow part (packing and writing) runs in a thread while the server goes on.
        Skipped while degraded: memory then holds commits that no segment does.
        """
        self.write()  # the snapshot copies memory, so the ops behind it must be in older segments
        if self._pending:
            return
        started = time.perf_counter()
        next_segment = self.journal.rotate()
        records = snapshot()
        size = await trio.to_thread.run_sync(self.journal.write_snapshot, records, next_segment)
        self.compaction_times.observe(time.perf_counter() - started)
        self._compact_threshold = max(self._compact_min, 2 * size)
        self.compactions += 1
        log.info("journal compacted: snapshot of %d bytes", size)

    async def aclose(self, snapshot: Snapshot) -> None:
        """Compact (from `snapshot()`) if much was journaled since the last snapshot, flush,
        release the directory.

        A clean stop pays for the compaction so that the next start loads a few large
        snapshot records instead of replaying every record since the last snapshot
        (restart time is what users wait on after a deploy). A failure here loses
        nothing: the segments stay complete and are replayed instead.
        """
        try:
            self.write()
            if self._pending:
                log.error("stopping with %d commits the journal could not take (none was acknowledged)",
                          len(self._pending))
            elif self.journal.bytes_since_snapshot >= COMPACT_ON_CLOSE_BYTES:
                await self._compact_now(snapshot)
        except JournalFailed:
            pass  # already reported; the file holds what was acknowledged
        except Exception:
            log.exception("compaction at shutdown failed; the journal will be replayed instead")
        finally:
            await trio.to_thread.run_sync(self.journal.close)
