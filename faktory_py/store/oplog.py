"""The op-log contract: what the server's durability path needs from wherever the log lives.

A store's `sink` hands each committed op list to the op log and gets back a sequence number;
before any reply that could reveal those ops goes out, the server asks the log to make that
sequence *written* (in the file, or appended to the Redis stream) and then *synced* (as
durable as the policy says). Two backends keep this contract: the journal in the data
directory (server/durability.py's DurableJournal, wrapping store/journal.py) and the stream
in Redis (server/ha/oplog.py, with the sans-io parts in store/redis/). Nothing above `store/`
learns which one it talks to: server/tcp.py, the dispatcher and the web UI see only this.

For the Redis log "written" and "synced" are one step: an entry the fenced append script
accepted is as durable as Redis is (`appendfsync`, and `WAIT min_replicas` when set).
"""

from __future__ import annotations

from typing import Any, Protocol


class Event(Protocol):
    """What the server reads of a set-once event (trio.Event)."""

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


class OpLog(Protocol):
    """An op log that group-commits: many commits queued between two writes share one."""

    #: set when the log can take nothing more (failed for good, or fenced); the server stops
    failed: Event

    @property
    def appended(self) -> int:
        """Sequence number of the last commit queued (what a reply may depend on)."""

    def append(self, ops: list[dict[str, Any]]) -> int:
        """Queue one committed op list (the store's sink); returns its sequence number.
        Raises ClientError, before anything changes, if the ops cannot be encoded."""

    def refusal(self) -> str | None:
        """Why commands that change state are refused right now; None when they are not."""

    def write_through(self, sequence: int) -> bool:
        """Start writing what is queued; True if commit `sequence` is written already.
        Raises JournalFailed when the log failed."""

    async def wait_written(self, sequence: int) -> None:
        """Return once commit `sequence` is written; raises JournalFailed when it never will be."""

    def fetch_position(self, sequence: int) -> int:
        """The position a FETCH reply whose commits end at `sequence` waits for instead (a
        FETCH acknowledges nothing, protocol/spec.md §7): 0, or `sequence` when the log asks
        that it be written first and sends do not write it anyway."""

    def is_synced(self, sequence: int) -> bool:
        """True if commit `sequence` is written and as durable as the policy says already:
        `synced` would return at once (the I/O loop sends such a batch's replies in its own
        turn and leaves the others to the task that waits)."""

    async def synced(self, sequence: int) -> None:
        """Return once commit `sequence` (written) is as durable as the policy says."""

    async def durable(self, sequence: int) -> None:
        """`wait_written`, then `synced`: for answers that do not go out through the server's send."""

    async def wait_writable(self) -> None:
        """Return once commits can be written (timers wait here instead of piling up changes)."""
