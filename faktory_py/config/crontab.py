"""`[[cron]]` across the `conf.d/*.toml` files (Faktory Enterprise's, protocol/spec.md §12.1)
and `[faktory_py.cron]`, our defaults for its entries. Named `crontab`,
not `cron`, so that `faktory_py.config.cron` stays the function that reads the entries.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..util.schedule import Schedule, ScheduleError
from .values import _QUEUE_NAME, _mode_error, _own_table


@dataclass(frozen=True)
class CronEntry:
    """One `[[cron]]` entry (protocol/spec.md §12.1), immutable: each fire builds a fresh job
    from `job`, the template as canonical JSON (Faktory Pro 1.1.0 fixed a mutable canonical
    copy). `id` is `name` when set, else derived from what the entry does (`fingerprint`),
    so reordering files keeps it; `source` is the file it came from."""

    id: str
    schedule: Schedule
    #: the job template, canonical JSON: `jobtype`, `queue`, `args` and the optional keys set
    job: str
    #: a hash of (schedule, timezone, job): how a reload tells a named entry changed
    fingerprint: str
    name: str | None = None
    #: "latest", "skip" or "all": which ticks missed while down fire (protocol/spec.md §12.3)
    missed: str = "latest"
    #: seconds: `missed = "latest"` fires a missed tick only if it is at most this late
    max_lateness: float = 3600.0
    #: `missed = "all"` fires at most this many missed ticks, the most recent
    max_catch_up: int = 100
    #: "allow" or "skip": whether a tick fires while the previous fire's job is still live
    overlap: str = "allow"
    source: str = ""


@dataclass(frozen=True)
class CronConfig:
    """`[[cron]]` across every `conf.d/*.toml` file, in file order, and the warnings their
    unknown keys gave (logged at boot)."""

    entries: tuple[CronEntry, ...] = ()
    warnings: tuple[str, ...] = ()


#: the keys of a `[[cron]]` entry; any other is warned about and ignored (a configuration
#: Faktory Enterprise accepts still boots)
_CRON_KEYS = ("schedule", "job", "name", "timezone", "missed", "overlap", "max_lateness", "max_catch_up")
_CRON_MODES = {"missed": ("latest", "skip", "all"), "overlap": ("allow", "skip")}
#: `[cron.job]`: the job payload keys an entry may set (`type` is the payload's `jobtype`)
_CRON_JOB_KEYS = ("type", "queue", "args", "retry", "reserve_for", "backtrace", "custom")
#: payload keys the server sets at each fire: a template may not fix them
_CRON_JOB_REFUSED = ("jid", "at", "created_at", "enqueued_at", "failure")
_CRON_DEFAULT_KEYS = ("timezone", "missed", "max_lateness", "max_catch_up")
#: entry names are URL path segments of the web UI's history page
_CRON_NAME = re.compile(r"[a-zA-Z0-9._-]+")


def cron(section: Any, defaults: Any = None, sources: list[str] | None = None) -> CronConfig:
    """`[[cron]]` (protocol/spec.md §12.1), with `[faktory_py.cron]`'s `defaults` for the keys
    an entry does not set. A bad entry raises `config: cron[<i>]: <reason>`, `<i>` its
    0-based position across the files, and names its file; an unknown key only warns."""
    if not isinstance(section, list) or not all(isinstance(entry, dict) for entry in section):
        raise ConfigError("config: cron: must be [[cron]] tables")
    base = _cron_defaults({} if defaults is None else defaults)
    entries: list[CronEntry] = []
    warnings: list[str] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(section):
        source = sources[index] if sources is not None and index < len(sources) else ""

        def fail(reason: str, index: int = index, source: str = source) -> ConfigError:
            return ConfigError(f"config: cron[{index}]: {reason}" + (f" (in {source})" if source else ""))

        for key in raw:
            if key not in _CRON_KEYS:
                warnings.append(f'config: cron[{index}]: unknown key "{key}" ignored')
        settings = {**base, **{key: raw[key] for key in _CRON_DEFAULT_KEYS if key in raw}}
        _check_cron_settings(settings, fail)
        expression = raw.get("schedule")
        if not isinstance(expression, str):
            raise fail('schedule is required, e.g. schedule = "*/5 * * * *"')
        try:
            schedule = Schedule.parse(expression, settings["timezone"])
        except ScheduleError as exc:
            reason = str(exc)
            raise fail(reason if reason.startswith("unknown timezone") else f"schedule: {reason}") from None
        job = _cron_job(raw.get("job"), fail)
        overlap = raw.get("overlap", "allow")
        if overlap not in _CRON_MODES["overlap"]:
            raise fail(_mode_error("overlap", _CRON_MODES["overlap"]))
        fingerprint = hashlib.sha256(
            json.dumps([schedule.expression, schedule.timezone, job]).encode()).hexdigest()[:16]
        name = raw.get("name")
        if name is not None:
            if not isinstance(name, str) or not _CRON_NAME.fullmatch(name):
                raise fail(r"name must match \A[a-zA-Z0-9._-]+\z")
            if name in seen:
                raise ConfigError(f'config: cron: duplicate name "{name}"')
            entry_id = name
        else:
            # byte-identical duplicates both fire (as Faktory Enterprise would): the second
            # gets its occurrence number
            occurrence = sum(1 for other in entries if other.name is None and other.fingerprint == fingerprint)
            entry_id = fingerprint if occurrence == 0 else f"{fingerprint}-{occurrence + 1}"
        seen[entry_id] = index
        entries.append(CronEntry(entry_id, schedule, job, fingerprint, name, settings["missed"],
                                 float(settings["max_lateness"]), settings["max_catch_up"], overlap, source))
    return CronConfig(tuple(entries), tuple(warnings))


def _cron_defaults(section: Any) -> dict[str, Any]:
    """`[faktory_py.cron]`: our own section, so an unknown key is refused, not ignored."""
    def fail(reason: str) -> ConfigError:
        return ConfigError(f"config: faktory_py.cron: {reason}")

    _own_table(section, _CRON_DEFAULT_KEYS, '{ timezone = "Europe/Paris" }', fail)
    settings = {"timezone": "UTC", "missed": "latest", "max_lateness": CronEntry.max_lateness,
                "max_catch_up": CronEntry.max_catch_up, **section}
    _check_cron_settings(settings, fail)
    try:
        Schedule.parse("* * * * *", settings["timezone"])
    except ScheduleError as exc:
        raise fail(str(exc)) from None
    return settings


def _check_cron_settings(settings: Mapping[str, Any], fail: Callable[[str], ConfigError]) -> None:
    if not isinstance(settings["timezone"], str):
        raise fail('timezone must be an IANA name, e.g. "Europe/Paris"')
    if settings["missed"] not in _CRON_MODES["missed"]:
        raise fail(_mode_error("missed", _CRON_MODES["missed"]))
    lateness = settings["max_lateness"]
    if type(lateness) not in (int, float) or not lateness >= 0:
        raise fail("max_lateness must be a number of seconds >= 0")
    if type(settings["max_catch_up"]) is not int or settings["max_catch_up"] < 1:
        raise fail("max_catch_up must be an integer >= 1")


def _cron_job(raw: Any, fail: Callable[[str], ConfigError]) -> str:
    """`[cron.job]` as the canonical JSON of the job template (checked as PUSH would check it)."""
    if not isinstance(raw, dict):
        raise fail("job.type is required")
    for key in raw:
        if key in _CRON_JOB_REFUSED:
            raise fail(f'key "{key}" is not allowed in cron.job')
        if key not in _CRON_JOB_KEYS:
            raise fail(f'unknown key "{key}" in cron.job')
    jobtype = raw.get("type")
    if not isinstance(jobtype, str) or not jobtype:
        raise fail("job.type is required")
    queue = raw.get("queue", "default")
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        raise fail(r"job.queue: queue names must match \A[a-zA-Z0-9._-]+\z")
    job: dict[str, Any] = {"jobtype": jobtype, "queue": queue, "args": raw.get("args", [])}
    if not isinstance(job["args"], list):
        raise fail("job.args must be an array")
    for key in ("retry", "reserve_for", "backtrace"):
        if key in raw:
            if type(raw[key]) is not int:
                raise fail(f"job.{key} must be an integer")
            job[key] = raw[key]
    if not 0 <= job.get("reserve_for", 0) <= 86400:
        raise fail("job.reserve_for must be from 0 to 86400 seconds")
    if "custom" in raw:
        if not isinstance(raw["custom"], dict):
            raise fail("job.custom must be a table")
        job["custom"] = raw["custom"]
    try:
        return json.dumps(job, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):  # a TOML date or time: JSON has no such value
        raise fail("job: dates and times cannot be sent in a job; use strings") from None


def cron_sources(conf_dir: Path) -> list[str]:
    """The file each `[[cron]]` entry of the merged document comes from, in order, so an
    error can name it: each file is read alone for this (one that does not parse alone
    names no entry; its entries then show no file)."""
    sources: list[str] = []
    for path in sorted((conf_dir / "conf.d").glob("*.toml")):
        try:
            entries = tomllib.loads(path.read_text()).get("cron", [])
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            continue
        if isinstance(entries, list):
            sources.extend(f"conf.d/{path.name}" for _ in entries)
    return sources
