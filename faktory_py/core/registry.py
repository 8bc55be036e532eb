"""How a feature plugs in: one `Feature` record per feature, in an ordered `Registry`.

Each feature builds its record (its `feature()` factory): the hooks it implements, its INFO
fields, its web pages and the verbs of its commands. The composition root (`server/app.py`) puts the
records in a `Registry` in an explicit order, and that order is behaviour: every hook runs
feature by feature in it (a job one feature drops at FETCH is never seen by the fetch hooks
after it). `lifecycle.Manager` runs the hooks; the web UI and the server look a feature up
with `find(FeatureType)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from .hooks import (
    BatchHook, DropHook, EndHook, FetchHook, FinishHook, HoldHook, InfoHook, ObserveHook, PrepareHook, PushHook,
    PushUser, SelectHook, TargetHook, TimedHook,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WebPage:
    """A page a feature adds to the web UI: `/<name>`, listed in its menu as `title` when
    `listed`. The web UI routes every page a record names at its start and reads the menu
    from the records at each request, so a page named but not listed keeps its route for
    when a new record (a configuration reload) lists it."""

    name: str
    title: str
    listed: bool = True


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature as the server sees it. Each hook slot holds the object implementing that
    hook (usually `owner` itself), or None when the feature has no use for it."""

    name: str
    #: the feature's own object (its state and methods): what `Registry.find` returns
    owner: object
    prepare: PrepareHook | None = None
    push: PushHook | None = None
    hold: HoldHook | None = None
    select: SelectHook | None = None
    fetch: FetchHook | None = None
    drop: DropHook | None = None
    finish: FinishHook | None = None
    end: EndHook | None = None
    #: told of moments batches reached (a job waiting for a batch)
    batch: BatchHook | None = None
    target: TargetHook | None = None
    timed: TimedHook | None = None
    info: InfoHook | None = None
    #: told of each committed step (metrics)
    observe: ObserveHook | None = None
    #: pushes jobs of its own (through `Manager.push_ops`)
    pushes: PushUser | None = None
    pages: tuple[WebPage, ...] = ()
    #: the verbs of the wire commands it brings; their handlers live in commands/ (a feature
    #: never imports it), which adds one per verb (`commands.features`)
    commands: tuple[str, ...] = ()
    #: the hook slots (of `JOB_SLOTS`) whose hooks leave a job without a `custom` block alone:
    #: for such a job they change nothing, return no ops and refuse nothing (batches, unique,
    #: expiry, tracking and dependencies all live in `custom`). The lifecycle does not call
    #: them for such jobs (`Registry.plain`): most jobs have no `custom`, and a hook call
    #: that does nothing is most of what a feature costs per job.
    custom_only: frozenset[str] = frozenset()


#: the hook slots called with a job, which `Feature.custom_only` may name
JOB_SLOTS = ("prepare", "push", "hold", "fetch", "drop", "finish", "end")


class JobHooks(NamedTuple):
    """The hooks of the slots called with a job, in the registry's order (`Registry.plain`)."""

    prepare: tuple[PrepareHook, ...]
    push: tuple[PushHook, ...]
    hold: tuple[HoldHook, ...]
    fetch: tuple[FetchHook, ...]
    drop: tuple[DropHook, ...]
    finish: tuple[FinishHook, ...]
    end: tuple[EndHook, ...]


class Registry:
    """The features in the order their hooks run, and each kind of hook in that order."""

    def __init__(self, features: Iterable[Feature] = ()) -> None:
        self._index(tuple(features))

    def replace(self, feature: Feature) -> None:
        """Swap in the new record of a registered feature whose hooks changed (throttles
        after a configuration reload), keeping its place in the order."""
        names = [f.name for f in self.features]
        if feature.name not in names:
            raise KeyError(feature.name)
        self._index(tuple(feature if f.name == feature.name else f for f in self.features))

    def _index(self, features: tuple[Feature, ...]) -> None:
        self.features = features
        names = [feature.name for feature in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must be unique: {names}")
        # One tuple per hook, built when the records change: the hot paths (PUSH, FETCH,
        # ACK) loop over only the features that implement the hook.
        self.prepare = tuple(f.prepare for f in self.features if f.prepare is not None)
        self.push = tuple(f.push for f in self.features if f.push is not None)
        self.hold = tuple(f.hold for f in self.features if f.hold is not None)
        self.select = tuple(f.select for f in self.features if f.select is not None)
        self.fetch = tuple(f.fetch for f in self.features if f.fetch is not None)
        self.drop = tuple(f.drop for f in self.features if f.drop is not None)
        self.finish = tuple(f.finish for f in self.features if f.finish is not None)
        self.end = tuple(f.end for f in self.features if f.end is not None)
        self.batch = tuple(f.batch for f in self.features if f.batch is not None)
        self.target = tuple(f.target for f in self.features if f.target is not None)
        self.timed = tuple(f.timed for f in self.features if f.timed is not None)
        self.info = tuple(f.info for f in self.features if f.info is not None)
        self.observe = tuple(f.observe for f in self.features if f.observe is not None)
        self.pushes = tuple(f.pushes for f in self.features if f.pushes is not None)
        for feature in self.features:
            if not feature.custom_only <= set(JOB_SLOTS):
                raise ValueError(f"{feature.name}: custom_only names no job hook slot: {sorted(feature.custom_only)}")
        #: the hooks a job without a `custom` block goes through: those not `custom_only`. The
        #: lifecycle picks these or the full tuples once per job and step, by the job as the
        #: step first sees it (for PUSH: after `jobs.prepare_push`)
        self.plain = JobHooks(*(
            tuple(getattr(f, slot) for f in self.features
                  if getattr(f, slot) is not None and slot not in f.custom_only)
            for slot in JOB_SLOTS))
        #: the ids of the end hooks that are `custom_only` (`Manager._end_ops` counts them as
        #: told of jobs without `custom`, yet tells them of the jobs other hooks end)
        self.custom_only_end = frozenset(id(f.end) for f in self.features if f.end is not None and "end" in f.custom_only)
        #: for each hook of `end`, whether it is one of those
        self.end_gated = tuple(id(end) in self.custom_only_end for end in self.end)
        #: where in `end` the hooks of `plain.end` are (those not gated)
        self.plain_end_at = tuple(i for i, gate in enumerate(self.end_gated) if not gate)

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)

    def find(self, kind: type[T]) -> T | None:
        """The registered feature object of type `kind`, None if there is none."""
        return next((f.owner for f in self.features if isinstance(f.owner, kind)), None)
