"""Key names of one op log in Redis (protocol/spec.md §7.1).

Every key carries the hash tag `{fk:<name>}`, so they all live in one slot: one Redis master
executes every script atomically over all of them (and a Redis Cluster accepts the scripts).
"""

from __future__ import annotations

from dataclasses import dataclass

#: `meta.format`: tells our hash apart from anything else found under the name
FORMAT = "faktory_py-oplog"
VERSION = 1


@dataclass(frozen=True)
class Keys:
    """The keys of the op log named `name`."""

    name: str = "default"

    @property
    def tag(self) -> str:
        return f"{{fk:{self.name}}}"

    @property
    def meta(self) -> str:
        """Hash: format, version, cluster_id, head, head_epoch, head_crc, writer, created_ms,
        and the snapshots': snap_next, snap_gen, snap_index, snap_epoch, snap_crc, snap_chunks,
        snap_bytes, snap_digest, prev_snap_gen, prev_snap_index."""
        return f"{self.tag}:meta"

    @property
    def epoch(self) -> str:
        """String: the last epoch granted (INCR)."""
        return f"{self.tag}:epoch"

    @property
    def epochs(self) -> str:
        """Hash: epoch → the first log index written under it."""
        return f"{self.tag}:epochs"

    @property
    def advertise(self) -> str:
        """Hash: epoch → the `host:port` its primary's clients connect to (`advertise`)."""
        return f"{self.tag}:advertise"

    @property
    def lease(self) -> str:
        """String with a TTL: the fencing token `<epoch>:<node_id>:<nonce>` of the primary."""
        return f"{self.tag}:lease"

    @property
    def log(self) -> str:
        """Stream: entry `<index>-0` per frame, fields e (epoch), t (Redis ms), f (frame)."""
        return f"{self.tag}:log"

    def snapshot(self, generation: int | bytes) -> str:
        """Hash: chunk number ("0", "1", …) → chunk of whole frames (store/redis/snapshots.py)."""
        number = generation.decode() if isinstance(generation, bytes) else generation
        return f"{self.tag}:snap:{number}"
