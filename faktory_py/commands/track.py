"""The TRACK command (protocol/spec.md §9.3): `TRACK GET <jid>`, `TRACK SET <json>`.

The arguments are parsed and checked here, with faktory_py's error texts (Enterprise's
are not known): `invalid TRACK SET <arg>` (not a JSON object), `TRACK SET needs a jid`,
`percent must be an integer from 0 to 100: <json>`, `desc must be a string: <json>`,
`reserve_until must be an RFC3339 timestamp: <json>`, `TRACK GET needs a jid`,
`TRACK needs GET <jid> or SET <json>`. The records are features/tracking.py's.
"""

from __future__ import annotations

from .. import wire
from ..core import jobs
from ..errors import ClientError
from ..features.tracking import JobTracking
from ..store.api import Op
from ..util.jsoncodec import compact_json
from ..util.timefmt import parse_time
from .dispatch import Session
from .feature_command import FeatureCommand


class TrackCommand(FeatureCommand[JobTracking]):
    """TRACK over the tracking records."""

    def run(self, session: Session, sub: str, rest: str, now: float) -> bytes:
        if sub == "GET":
            jid = rest.strip()
            if not jid:
                raise ClientError("TRACK GET needs a jid")
            return wire.bulk_json(self.feature.progress(jid, now))
        if sub == "SET":
            self.store.commit(self._set_ops(rest, now))
            return wire.OK
        raise ClientError("TRACK needs GET <jid> or SET <json>")

    def _set_ops(self, arg: str, now: float) -> list[Op]:
        """Check a TRACK SET payload and turn it into the feature's ops (raises ClientError)."""
        if not arg.strip():
            raise ClientError("TRACK SET needs a jid")
        payload = jobs.decode_argument(arg, "invalid TRACK SET")
        if not isinstance(payload, dict):
            raise ClientError(f"invalid TRACK SET {arg}")
        jid = payload.get("jid")
        if not isinstance(jid, str) or not jid:
            raise ClientError("TRACK SET needs a jid")
        percent = payload.get("percent")
        if percent is not None and (isinstance(percent, bool) or not isinstance(percent, int)
                                    or not 0 <= percent <= 100):
            raise ClientError(f"percent must be an integer from 0 to 100: {compact_json(percent)}")
        desc = payload.get("desc")
        if desc is not None and not isinstance(desc, str):
            raise ClientError(f"desc must be a string: {compact_json(desc)}")
        until = payload.get("reserve_until")
        reserve_until = None
        if until is not None:
            try:
                if not isinstance(until, str):
                    raise ValueError
                reserve_until = parse_time(until)
            except ValueError:
                raise ClientError(f"reserve_until must be an RFC3339 timestamp: {compact_json(until)}") from None
        return self.feature.progress_ops(jid, now, percent, desc, reserve_until, payload.get("result"))
