"""A configuration reload (SIGHUP, protocol/spec.md §11.6, §12.3): the whole configuration is
read and validated again; if it is valid its throttles, named limits (`[faktory_py.limits]`)
and cron entries replace those in force, else nothing changes (the old entries go on firing,
the error shows on both tabs).

Only those two are reloadable (`RELOADED`): the other settings (bindings, password, fsync,
limits on connections …) are wired into listeners and tasks at start, so a reload that
changes them logs that they wait for a restart and keeps them as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container
from dataclasses import fields, replace

from ..config import Config, CronConfig, ThrottlesConfig
from ..core.lifecycle import Manager
from ..core.registry import Registry
from ..errors import ConfigError
from ..features.cron.feature import Cron
from ..features.throttles.feature import Throttles
from ..features.throttles.rules import Rules, named_limit, throttle
from .clock import Clock
from .timers import DueTimer
from .waiters import QueueWaiters

log = logging.getLogger("faktory_py.server")

#: the sections of `Config` a reload puts in force
RELOADED = ("throttles", "cron")


def throttle_rules(throttles: ThrottlesConfig) -> Rules:
    """The `[throttles]` and `[faktory_py.limits]` entries as the throttles feature takes them."""
    return Rules([*(throttle(t.queue, t) for t in throttles.entries),
                  *(named_limit(n.name, n, n.queues, n.jobtypes) for n in throttles.limits)])


class EveryQueue:
    """Every queue name (a per-worker limit that selects jobs of any queue)."""

    def __contains__(self, queue: object) -> bool:
        return True


def wake_all_queues(throttles: ThrottlesConfig) -> Container[str]:
    """Queues whose every waiting FETCH tries when one gains a job or a slot: those some
    rule with a per-worker limit may select, since whether a FETCH may take the job depends
    on its wid (protocol/spec.md §11.3)."""
    if any(n.worker and n.queues is None for n in throttles.limits):
        return EveryQueue()
    return frozenset([*(t.queue for t in throttles.entries if t.worker),
                      *(q for n in throttles.limits if n.worker for q in n.queues or ())])


class ConfigReload:
    """Puts a re-read configuration's throttles and cron entries in force in a running server."""

    def __init__(self, config: Config, manager: Manager, features: Registry, throttles: Throttles, cron: Cron,
                 waiters: QueueWaiters, timer: DueTimer, clock: Clock) -> None:
        #: the configuration in force: the one the server started with, but for RELOADED
        self.config = config
        self.manager = manager
        self.features = features
        self.throttles = throttles
        self.cron = cron
        self.waiters = waiters
        self.timer = timer
        self.clock = clock

    def __call__(self, read: Callable[[], Config]) -> bool:
        """Read the configuration with `read` (raising ConfigError when it is invalid, OSError
        or UnicodeDecodeError when a file cannot be read) and put its throttles and cron
        entries in force; False, with the error logged and kept, when it cannot."""
        try:
            new = read()
        except (ConfigError, OSError, UnicodeDecodeError) as exc:  # a file unreadable now too
            self.throttles.reload_error = self.cron.reload_error = str(exc)
            # the tabs show the error
            self.features.replace(self.throttles.feature())
            self.features.replace(self.cron.feature())
            log.error("configuration reload rejected, the configuration in force is kept: %s", exc)
            return False
        # the records are replaced below (_put_in_force, _put_cron_in_force)
        self.throttles.reload_error = self.cron.reload_error = None
        for warning in (*new.throttles.warnings, *new.cron.warnings):
            log.warning("%s", warning)
        waiting = [f.name for f in fields(Config) if f.name not in RELOADED
                   and getattr(new, f.name) != getattr(self.config, f.name)]
        if waiting:
            log.warning("configuration reload: %s changed; only [throttles] and [[cron]] are reloaded, "
                        "the rest takes effect at the next restart", ", ".join(waiting))
        self._put_in_force(new.throttles)
        self._put_cron_in_force(new.cron)
        self.config = replace(self.config, throttles=new.throttles, cron=new.cron)
        log.info("configuration reloaded: %d throttles, %d limits, %d cron entries",
                 len(new.throttles.entries), len(new.throttles.limits), len(new.cron.entries))
        return True

    def _put_cron_in_force(self, cron: CronConfig) -> None:
        """New entries; the due timer runs at once, journaling what changed (new entries
        start now, removed ones are forgotten: protocol/spec.md §12.3)."""
        self.features.replace(self.cron.reconfigure(cron.entries, cron.warnings))
        self.timer.poke(0.0)

    def _put_in_force(self, throttles: ThrottlesConfig) -> None:
        """New limits, slots recounted and queued jobs classified again under them; then the
        waiting FETCHes of every queue try again, as many as may now take a job (a raised or
        removed limit, a new partition may let them), and the due timer learns when the
        first recounted slot times out."""
        now = self.clock.now()
        self.features.replace(self.throttles.reconfigure(throttle_rules(throttles), throttles.warnings, now))
        self.waiters.wake_all = wake_all_queues(throttles)
        for queue in self.manager.store.queue_names():
            self.waiters.top_up(queue, self.manager.available(queue, now))
        due = self.throttles.next_due()
        if due is not None:
            self.timer.poke(due)
