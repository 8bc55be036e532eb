"""The THROTTLE command (protocol/spec.md §11.4): `THROTTLE STATUS [<queue> …]` ⇒ the
throttles' state as JSON. Errors: `no such throttle <queue>`, `THROTTLE needs STATUS [<queue> …]`.
The state is features/throttles' own."""

from __future__ import annotations

from .. import wire
from ..errors import ClientError
from ..features.throttles.feature import NoSuchThrottle, Throttles
from ..store.api import Store
from .dispatch import Clock, Session


class ThrottleCommand:
    """THROTTLE over the throttles feature; registered with `Dispatcher.register`."""

    def __init__(self, throttles: Throttles, store: Store, clock: Clock) -> None:
        self.throttles = throttles
        self.clock = clock

    def __call__(self, session: Session, arg: str) -> bytes:
        words = arg.split()
        if not words or words[0].upper() != "STATUS":
            raise ClientError("THROTTLE needs STATUS [<queue> …]")
        try:
            return wire.bulk_json(self.throttles.status(words[1:], self.clock.now()))
        except NoSuchThrottle as exc:
            raise ClientError(f"no such throttle {exc.args[0]}") from None
