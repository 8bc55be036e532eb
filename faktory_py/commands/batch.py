"""The BATCH command (protocol/spec.md §10): `BATCH NEW <json>`, `BATCH OPEN <bid>`,
`BATCH COMMIT <bid>`, `BATCH STATUS <bid>`.

The subcommand and its argument are parsed here; what a batch may do, and the ops that do
it, are features/batches' (which raises the `-ERR Batch <bid> is ...` refusals).
"""

from __future__ import annotations

from .. import wire
from ..core import jobs
from ..errors import ClientError
from ..features.batches.feature import Batches
from .dispatch import Session
from .feature_command import FeatureCommand


class BatchCommand(FeatureCommand[Batches]):
    """BATCH over the batches feature."""

    def run(self, session: Session, sub: str, rest: str, now: float) -> bytes:
        if sub == "NEW":
            if not rest:
                raise ClientError("BATCH NEW needs a JSON object")
            payload = jobs.decode_argument(rest, "invalid BATCH NEW")
            if not isinstance(payload, dict):
                raise ClientError(f"invalid BATCH NEW {rest}")
            bid, ops = self.feature.new(payload, session.wid, now)
            self.store.commit(ops)
            return wire.bulk(bid)
        if sub not in ("OPEN", "COMMIT", "STATUS"):
            raise ClientError(f"no such BATCH subcommand: {sub}" if sub else "BATCH needs NEW, OPEN, COMMIT or STATUS")
        bid = rest.strip()
        if not bid:
            raise ClientError(f"BATCH {sub} needs a bid")
        if sub == "OPEN":
            return wire.bulk(self.feature.open(bid, session.wid, now))
        if sub == "COMMIT":
            self.store.commit(self.feature.commit(bid, now))
            return wire.OK
        return wire.bulk_json(self.feature.status(bid, now))
