"""What the commands a feature brings (BATCH, TRACK, THROTTLE) have in common: each is
served over the feature's object, commits to the store, reads the clock, and starts with a
subcommand word (`VERB SUB <rest>`)."""

from __future__ import annotations

from typing import Generic, TypeVar

from ..store.api import Store
from .dispatch import Clock, Session

FeatureT = TypeVar("FeatureT")


class FeatureCommand(Generic[FeatureT]):
    """A feature's command; registered with `Dispatcher.register` (commands/features.py)."""

    def __init__(self, feature: FeatureT, store: Store, clock: Clock) -> None:
        self.feature = feature
        self.store = store
        self.clock = clock

    def __call__(self, session: Session, arg: str) -> bytes:
        sub, _, rest = arg.partition(" ")
        return self.run(session, sub.upper(), rest, self.clock.now())

    def run(self, session: Session, sub: str, rest: str, now: float) -> bytes:
        """The reply to `sub` (upper-cased) with its argument `rest`; raises ClientError."""
        raise NotImplementedError
