"""The trio side of the journal: write batching, fsync policy, group commit, compaction.

`append` is the MemoryStore's sink. It only queues the committed ops and returns their
sequence number; `write` puts everything queued into the journal file as one frame with
one write. The server calls `write` before it sends any bytes to anyone, so no reply can
reveal an op that is not in the file yet (a `kill -9` after a reply cannot lose what it
acknowledged), while the ops of every command answered in one send, or of a whole PUSHB,
share one frame, one write and, on replay, one read. A frame holds whole commits only, so
a torn last frame loses whole commits that nobody was told about.

A reply then awaits `synced(sequence)`: under the `always` policy that waits for an fsync
covering it; one fsync, run in a worker thread, releases every reply that queued up
behind it (group commit). `everysec` fsyncs once a second; `no` leaves it to the OS.
Anything that answers without going through the server's send path (the web UI) awaits
`durable(sequence)`, which writes first.

If a write fails, memory holds ops the file does not: the journal is then failed for good,
every later `write` raises (so nothing more is sent to anyone) and `failed` is set, which
stops the server. The file holds a consistent prefix; a restart replays it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import trio

from .journal import Journal

log = logging.getLogger("faktory_py.journal")

#: A clean stop compacts when at least this much was journaled since the last snapshot.
COMPACT_ON_CLOSE_BYTES = 1 << 20


class JournalFailed(Exception):
    """An earlier journal write failed; nothing may be acknowledged any more."""


class DurableJournal:
    """Wraps a Journal with write batching, the fsync policy and compaction (see module doc)."""

    def __init__(
        self,
        journal: Journal,
        policy: str,
        snapshot: Callable[[], Iterator[Any]],
        compact_min_bytes: int,
    ) -> None:
        self.journal = journal
        self.policy = policy
        self._snapshot = snapshot
        self._compact_min = compact_min_bytes
        self._compact_threshold = compact_min_bytes
        #: journal bytes written since the server started
        self.written = 0
        self._pending: list[dict[str, Any]] = []
        self._appended = 0  # sequence number of the last commit queued
        self._written = 0  # ... of the last commit in the file
        self._synced = 0  # ... of the last commit fsynced
        self._dirty = trio.Event()
        self._synced_event = trio.Event()
        self._compact = trio.Event()
        #: set when a write failed; the server stops on it
        self.failed = trio.Event()
        self._failure: BaseException | None = None
        self.compactions = 0

    def append(self, ops: list[dict[str, Any]]) -> int:
        """Queue one committed op list for the next `write`; returns its sequence number."""
        self._pending.extend(ops)
        self._appended += 1
        self._dirty.set()
        return self._appended

    def write(self) -> None:
        """Put every queued op into the journal file, as one frame; raises if it failed."""
        if self._failure is not None:
            raise JournalFailed("the journal could not be written") from self._failure
        if not self._pending:
            return
        ops, self._pending = self._pending, []
        try:
            self.written = self.journal.append(ops)
        except BaseException as exc:
            self._failure = exc
            self.failed.set()
            log.critical("writing the journal failed; stopping without acknowledging anything more",
                         exc_info=exc)
            raise JournalFailed("the journal could not be written") from exc
        self._written = self._appended
        if self.journal.bytes_since_snapshot > self._compact_threshold:
            self._compact.set()

    async def synced(self, sequence: int) -> None:
        """Return once the commit `sequence` (already written) is as durable as the policy says."""
        if self.policy != "always":
            return
        while self._synced < sequence:
            await self._synced_event.wait()

    async def durable(self, sequence: int) -> None:
        """Write, then `synced`: for answers that do not go out through the server's send."""
        if self._written < sequence:
            self.write()
        await self.synced(sequence)

    async def _fsync(self) -> None:
        self.write()
        covered = self._written
        await trio.to_thread.run_sync(self.journal.fsync)
        self._synced = covered
        event, self._synced_event = self._synced_event, trio.Event()
        event.set()

    async def run_fsync(self) -> None:
        """Background task: writes what no reply has flushed yet, and fsyncs per the policy:
        group commit (`always`), once a second (`everysec`) or never (`no`). Ends when a
        write fails (`failed` stops the server)."""
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            try:
                if self.policy == "no":
                    self.write()
                else:
                    await self._fsync()
            except JournalFailed:
                return
            if self.policy != "always":
                await trio.sleep(1)

    async def run_compaction(self) -> None:
        """Background task: rewrite the journal from live state once it has grown enough."""
        while True:
            await self._compact.wait()
            self._compact = trio.Event()
            await self._compact_now()

    async def _compact_now(self) -> None:
        """Write a snapshot of the live state and drop the segments it covers.

        The segment switch and the state copy happen together without an await in
        between, so the snapshot is exactly the state the older segments described;
        the slow part (packing and writing) runs in a thread while the server goes on.
        """
        self.write()  # the snapshot copies memory, so the ops behind it must be in older segments
        next_segment = self.journal.rotate()
        records = self._snapshot()
        size = await trio.to_thread.run_sync(self.journal.write_snapshot, records, next_segment)
        self._compact_threshold = max(self._compact_min, 2 * size)
        self.compactions += 1
        log.info("journal compacted: snapshot of %d bytes", size)

    async def aclose(self) -> None:
        """Compact if much was journaled since the last snapshot, flush, release the directory.

        A clean stop pays for the compaction so that the next start loads a few large
        snapshot records instead of replaying every record since the last snapshot
        (restart time is what users wait on after a deploy). A failure here loses
        nothing: the segments stay complete and are replayed instead.
        """
        try:
            self.write()
            if self.journal.bytes_since_snapshot >= COMPACT_ON_CLOSE_BYTES:
                await self._compact_now()
        except JournalFailed:
            pass  # already reported; the file holds what was acknowledged
        except Exception:
            log.exception("compaction at shutdown failed; the journal will be replayed instead")
        finally:
            await trio.to_thread.run_sync(self.journal.close)
