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
from ..store.api import Store
from .dispatch import Clock, Session


class BatchCommand:
    """BATCH over the batches feature; registered with `Dispatcher.register`."""

    def __init__(self, batches: Batches, store: Store, clock: Clock) -> None:
        self.batches = batches
        self.store = store
        self.clock = clock

    def __call__(self, session: Session, arg: str) -> bytes:
        sub, _, rest = arg.partition(" ")
        sub = sub.upper()
        now = self.clock.now()
        if sub == "NEW":
            if not rest:
                raise ClientError("BATCH NEW needs a JSON object")
            payload = jobs.decode_argument(rest, "invalid BATCH NEW")
            if not isinstance(payload, dict):
                raise ClientError(f"invalid BATCH NEW {rest}")
            bid, ops = self.batches.new(payload, session.wid, now)
            self.store.commit(ops)
            return wire.bulk(bid)
        if sub not in ("OPEN", "COMMIT", "STATUS"):
            raise ClientError(f"no such BATCH subcommand: {sub}" if sub else "BATCH needs NEW, OPEN, COMMIT or STATUS")
        bid = rest.strip()
        if not bid:
            raise ClientError(f"BATCH {sub} needs a bid")
        if sub == "OPEN":
            return wire.bulk(self.batches.open(bid, session.wid, now))
        if sub == "COMMIT":
            self.store.commit(self.batches.commit(bid, now))
            return wire.OK
        return wire.bulk_json(self.batches.status(bid, now))
