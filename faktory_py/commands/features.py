"""The commands the built-in features bring: BATCH for batches, TRACK for job tracking,
THROTTLE for throttles, CRON for cron, RESULT and JOB for job dependencies (protocol/spec.md
§9–§12, §14). A feature's record names its verbs (`Feature.commands`); the handlers live here,
because features know nothing of commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.registry import Registry
from ..store.api import Store
from .batch import BatchCommand
from .cron import CronCommand
from .dispatch import Clock, Dispatcher, Session
from .throttle import ThrottleCommand
from .track import TrackCommand
from .workflows import JobCommand, ResultCommand

#: verb → the handler serving it, built over the feature object that names the verb
HANDLERS: dict[str, Callable[[Any, Store, Clock], Callable[[Session, str], bytes]]] = {
    "BATCH": BatchCommand,
    "TRACK": TrackCommand,
    "THROTTLE": ThrottleCommand,
    "CRON": CronCommand,
    "RESULT": ResultCommand,
    "JOB": JobCommand,
}


def register_feature_commands(dispatcher: Dispatcher, features: Registry) -> None:
    """Add every command the registered features name to the dispatcher."""
    store = dispatcher.manager.store
    for feature in features:
        for verb in feature.commands:
            dispatcher.register(verb, HANDLERS[verb](feature.owner, store, dispatcher.clock))
