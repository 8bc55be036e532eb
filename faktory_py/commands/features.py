"""The commands the built-in features bring: BATCH for batches, TRACK for job tracking
(protocol/spec.md §9, §10). Features know nothing of commands; this adds them to a
dispatcher for whichever of those features the server runs."""

from __future__ import annotations

from collections.abc import Iterable

from ..core.hooks import Extension
from ..features.batches.feature import Batches
from ..features.tracking import JobTracking
from .batch import BatchCommand
from .dispatch import Dispatcher
from .track import TrackCommand


def register_feature_commands(dispatcher: Dispatcher, extensions: Iterable[Extension]) -> None:
    store = dispatcher.manager.store
    for extension in extensions:
        if isinstance(extension, Batches):
            dispatcher.register("BATCH", BatchCommand(extension, store, dispatcher.clock))
        elif isinstance(extension, JobTracking):
            dispatcher.register("TRACK", TrackCommand(extension, store, dispatcher.clock))
