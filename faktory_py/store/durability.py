"""The trio side of the journal: fsync policy, group commit and background compaction.

`append` is the MemoryStore's sink: it writes the ops to the journal file at once (so a
`kill -9` after it cannot lose them) and returns the journal position. A reply then
awaits `durable(position)`, which under the `always` policy waits for an fsync covering
that position; one fsync, run in a worker thread, releases every reply that queued up
behind it (group commit). `everysec` fsyncs once a second; `no` leaves it to the OS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import trio

from .journal import Journal

log = logging.getLogger("faktory_py.journal")


class DurableJournal:
    """Wraps a Journal with the configured fsync policy and compaction trigger."""

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
        #: journal bytes appended since the server started
        self.written = 0
        self._synced = 0
        self._dirty = trio.Event()
        self._synced_event = trio.Event()
        self._compact = trio.Event()
        self.compactions = 0

    def append(self, ops: list[dict[str, Any]]) -> int:
        """Write one committed op list; returns the position a reply must wait for."""
        self.written = self.journal.append(ops)
        self._dirty.set()
        if self.journal.bytes_since_snapshot > self._compact_threshold:
            self._compact.set()
        return self.written

    async def durable(self, position: int) -> None:
        """Return once `position` is as durable as the policy promises."""
        if self.policy != "always":
            return
        while self._synced < position:
            await self._synced_event.wait()

    async def _fsync(self) -> None:
        self._synced = await trio.to_thread.run_sync(self.journal.fsync)
        event, self._synced_event = self._synced_event, trio.Event()
        event.set()

    async def run_fsync(self) -> None:
        """Background task: group commit (`always`) or a once-a-second fsync (`everysec`)."""
        if self.policy == "no":
            return
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            await self._fsync()
            if self.policy == "everysec":
                await trio.sleep(1)

    async def run_compaction(self) -> None:
        """Background task: rewrite the journal from live state once it has grown enough.

        The segment switch and the state copy happen together without an await in
        between, so the snapshot is exactly the state the older segments described;
        the slow part (packing and writing) runs in a thread while the server goes on.
        """
        while True:
            await self._compact.wait()
            self._compact = trio.Event()
            next_segment = self.journal.rotate()
            records = self._snapshot()
            size = await trio.to_thread.run_sync(self.journal.write_snapshot, records, next_segment)
            self._compact_threshold = max(self._compact_min, 2 * size)
            self.compactions += 1
            log.info("journal compacted: snapshot of %d bytes", size)

    async def aclose(self) -> None:
        """Flush everything to disk and release the data directory."""
        await trio.to_thread.run_sync(self.journal.close)
