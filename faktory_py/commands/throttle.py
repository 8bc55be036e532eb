"""The THROTTLE command (protocol/spec.md §11.4): `THROTTLE STATUS [<queue> …]` ⇒ the
throttles' state as JSON. Errors: `no such throttle <queue>`, `THROTTLE needs STATUS [<queue> …]`.
The state is features/throttles' own."""

from __future__ import annotations

from .. import wire
from ..errors import ClientError
from ..features.throttles.feature import NoSuchThrottle, Throttles
from .dispatch import Session
from .feature_command import FeatureCommand


class ThrottleCommand(FeatureCommand[Throttles]):
    """THROTTLE over the throttles feature."""

    def run(self, session: Session, sub: str, rest: str, now: float) -> bytes:
        if sub != "STATUS":
            raise ClientError("THROTTLE needs STATUS [<queue> …]")
        try:
            return wire.bulk_json(self.feature.status(rest.split(), now))
        except NoSuchThrottle as exc:
            raise ClientError(f"no such throttle {exc.args[0]}") from None
