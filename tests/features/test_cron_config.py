"""`[[cron]]` in conf.d (protocol/spec.md §12.1–§12.2): Faktory Enterprise's examples load and
merge across files (B-T1), each bad entry stops the boot with its own text naming its file
(B-T10's `@reboot` and `61 * * * *`), the dialect (nicknames, `@every`, seconds first, time
zones) and the ids that keep an entry's state across reloads."""

from __future__ import annotations

import calendar
import json
import subprocess
import sys
from pathlib import Path

import pytest

from faktory_py.config import ConfigError, load
from faktory_py.tools import processes
from faktory_py.util.schedule import Schedule

#: the Ent-Cron wiki's example: three entries, one with custom
WIKI = """
[[cron]]
  schedule = "*/5 * * * *"
  [cron.job]
    type = "FiveJob"
    queue = "critical"
    [cron.job.custom]
      foo = "bar"

[[cron]]
  schedule = "12 * * * *"
  [cron.job]
    type = "HourlyReport"
    retry = 3

[[cron]]
  schedule = "* * * * *"
  [cron.job]
    type = "EveryMinute\""""
#: Ent 1.5.5's (empty args, expires_in), Pro 1.3.0's (static args) and #387's (reserve_for)
CHANGELOGS = """
[[cron]]
  schedule = "0 3 * * *"
  [cron.job]
    type = "Cleanup"
    args = []
    [cron.job.custom]
      expires_in = 60

[[cron]]
  schedule = "0 4 * * *"
  [cron.job]
    type = "StaticArgs"
    args = ["daily", 1]

[[cron]]
  schedule = "0 * * * *"
  [cron.job]
    type = "LongJob"
    reserve_for = 4000
"""


def write_conf(tmp_path: Path, *files: str) -> Path:
    conf_d = tmp_path / "conf" / "conf.d"
    conf_d.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(files):
        (conf_d / f"{i}-cron.toml").write_text(text)
    return tmp_path / "conf"


def load_with(tmp_path: Path, *files: str):
    write_conf(tmp_path, *files)
    return load(["-d", str(tmp_path / "data"), "-c", str(tmp_path / "conf")], {}).cron


def entry(schedule: str = "* * * * *", **job: object) -> str:
    fields = "".join(f"{key} = {json.dumps(value)}\n" for key, value in {"type": "T", **job}.items())
    return f'[[cron]]\nschedule = "{schedule}"\n[cron.job]\n{fields}'


def test_the_ent_examples_load_and_merge_across_files(tmp_path: Path) -> None:
    """B-T1: the wiki's file has no trailing newline (as Faktory's cli_test.go); the second
    file's entries follow the first's, each entry naming its file."""
    cron = load_with(tmp_path, WIKI, CHANGELOGS)
    assert [json.loads(e.job)["jobtype"] for e in cron.entries] == [
        "FiveJob", "HourlyReport", "EveryMinute", "Cleanup", "StaticArgs", "LongJob"]
    assert [e.source for e in cron.entries] == ["conf.d/0-cron.toml"] * 3 + ["conf.d/1-cron.toml"] * 3
    five, hourly, minute, cleanup, static, long = (json.loads(e.job) for e in cron.entries)
    assert five == {"jobtype": "FiveJob", "queue": "critical", "args": [], "custom": {"foo": "bar"}}
    assert hourly == {"jobtype": "HourlyReport", "queue": "default", "args": [], "retry": 3}
    assert cleanup["custom"] == {"expires_in": 60} and cleanup["args"] == []
    assert static["args"] == ["daily", 1]
    assert long["reserve_for"] == 4000 and "custom" not in long
    assert cron.warnings == ()
    assert all(e.schedule.timezone == "UTC" and e.missed == "latest" and e.overlap == "allow"
               for e in cron.entries)


def test_reordering_files_keeps_the_ids(tmp_path: Path) -> None:
    ids = {json.loads(e.job)["jobtype"]: e.id for e in load_with(tmp_path / "a", WIKI, CHANGELOGS).entries}
    swapped = {json.loads(e.job)["jobtype"]: e.id for e in load_with(tmp_path / "b", CHANGELOGS, WIKI).entries}
    assert ids == swapped and len(set(ids.values())) == 6


def test_identical_duplicates_both_fire_under_their_own_ids(tmp_path: Path) -> None:
    first, second = load_with(tmp_path, entry(), entry()).entries
    assert second.id == f"{first.id}-2" and first.fingerprint == second.fingerprint


@pytest.mark.parametrize(("text", "error"), [
    (entry("61 * * * *"), "config: cron[1]: schedule: Bad minute (in conf.d/1-cron.toml)"),
    (entry("@reboot"), "config: cron[1]: schedule: @reboot is not supported: a restart is not a tick"
                       " (in conf.d/1-cron.toml)"),
    (entry("* * *"), "config: cron[1]: schedule: Wrong number of fields (in conf.d/1-cron.toml)"),
    (entry("@every 0s"), "config: cron[1]: schedule: @every needs a duration of at least 1s"
                         " (in conf.d/1-cron.toml)"),
    ('[[cron]]\nschedule = "* * * * *"\n[cron.job]\nqueue = "q"\n',
     "config: cron[1]: job.type is required (in conf.d/1-cron.toml)"),
    ('[[cron]]\nschedule = "* * * * *"\n', "config: cron[1]: job.type is required (in conf.d/1-cron.toml)"),
    (entry(queue="no spaces"),
     r"config: cron[1]: job.queue: queue names must match \A[a-zA-Z0-9._-]+\z (in conf.d/1-cron.toml)"),
    (entry(jid="abcdefghijk"), 'config: cron[1]: key "jid" is not allowed in cron.job (in conf.d/1-cron.toml)'),
    (entry(at="2030-01-01T00:00:00Z"),
     'config: cron[1]: key "at" is not allowed in cron.job (in conf.d/1-cron.toml)'),
    (entry(jobtype="T"), 'config: cron[1]: unknown key "jobtype" in cron.job (in conf.d/1-cron.toml)'),
    (entry(retry="3"), "config: cron[1]: job.retry must be an integer (in conf.d/1-cron.toml)"),
    (entry(reserve_for=90000), "config: cron[1]: job.reserve_for must be from 0 to 86400 seconds"
                               " (in conf.d/1-cron.toml)"),
    ('[[cron]]\nschedule = "* * * * *"\ntimezone = "Mars/Olympus"\n[cron.job]\ntype = "T"\n',
     'config: cron[1]: unknown timezone "Mars/Olympus" (in conf.d/1-cron.toml)'),
    ('[[cron]]\nschedule = "* * * * *"\nmissed = "some"\n[cron.job]\ntype = "T"\n',
     'config: cron[1]: missed must be "latest" or "skip" or "all" (in conf.d/1-cron.toml)'),
    ('[[cron]]\nschedule = "* * * * *"\noverlap = "never"\n[cron.job]\ntype = "T"\n',
     'config: cron[1]: overlap must be "allow" or "skip" (in conf.d/1-cron.toml)'),
    ('[[cron]]\nname = "a"\nschedule = "* * * * *"\n[cron.job]\ntype = "T"\n'
     '[[cron]]\nname = "a"\nschedule = "0 * * * *"\n[cron.job]\ntype = "T"\n',
     'config: cron: duplicate name "a"'),
    ('[faktory_py.cron]\nzone = "UTC"\n', 'config: faktory_py.cron: unknown key "zone"'),
])
def test_each_bad_entry_has_its_own_error(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_with(tmp_path, entry("0 0 * * *"), text)
    assert str(caught.value) == error


def test_unknown_entry_keys_warn_and_the_entry_loads(tmp_path: Path) -> None:
    cron = load_with(tmp_path, '[[cron]]\nschedule = "@hourly"\ncolour = "red"\n[cron.job]\ntype = "T"\n')
    assert len(cron.entries) == 1
    assert cron.warnings == ('config: cron[0]: unknown key "colour" ignored',)


def test_defaults_come_from_faktory_py_cron(tmp_path: Path) -> None:
    cron = load_with(tmp_path, '[faktory_py.cron]\ntimezone = "Europe/Paris"\nmissed = "all"\n'
                               'max_lateness = 60\nmax_catch_up = 5\n',
                     '[[cron]]\nschedule = "@daily"\n[cron.job]\ntype = "T"\n'
                     '[[cron]]\nschedule = "@daily"\ntimezone = "UTC"\nmissed = "skip"\n[cron.job]\ntype = "T"\n')
    paris, utc = cron.entries
    assert (paris.schedule.timezone, paris.missed, paris.max_lateness, paris.max_catch_up) == (
        "Europe/Paris", "all", 60.0, 5)
    assert (utc.schedule.timezone, utc.missed) == ("UTC", "skip")
    assert paris.id != utc.id  # the zone is part of what an entry does


def utc(*fields: int) -> float:
    """Unix seconds of a UTC date and time (year, month, day[, hour, minute, second])."""
    return float(calendar.timegm((*fields, 0, 0, 0)[:6]))


@pytest.mark.parametrize(("nickname", "expression"), [
    ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@hourly", "0 * * * *"),
])
def test_nicknames_mean_their_expressions(nickname: str, expression: str) -> None:
    start = utc(2027, 2, 3, 4, 5, 6)
    nick, plain = Schedule.parse(nickname), Schedule.parse(expression)
    assert nick.due(start, start + 400 * 86400, 50) == plain.due(start, start + 400 * 86400, 50)


def test_every_ticks_on_a_grid_anchored_to_the_epoch() -> None:
    """B-T10: `@every 15m` ticks at :00/:15/:30/:45 whatever the time asked from."""
    every = Schedule.parse("@every 15m")
    for start in (utc(2027, 1, 1, 9, 0, 1), utc(2027, 1, 1, 9, 7, 33), utc(2027, 1, 1, 9, 14, 59)):
        assert every.next_after(start) == utc(2027, 1, 1, 9, 15)
    assert every.next_after(utc(2027, 1, 1, 9, 15)) == utc(2027, 1, 1, 9, 30)
    assert Schedule.parse("@every 1h30m").period == 5400
    assert Schedule.parse("@every 45s").next_after(utc(2027, 1, 1)) == utc(2027, 1, 1) + 45 - utc(2027, 1, 1) % 45


def test_six_fields_put_seconds_first() -> None:
    schedule = Schedule.parse("*/15 * * * * *")
    assert schedule.due(utc(2027, 1, 1, 12), utc(2027, 1, 1, 12, 1), 10) == (
        4, [utc(2027, 1, 1, 12, 0, 15), utc(2027, 1, 1, 12, 0, 30), utc(2027, 1, 1, 12, 0, 45),
            utc(2027, 1, 1, 12, 1)])


def test_counting_stops_but_the_latest_ticks_are_still_found() -> None:
    every_second = Schedule.parse("* * * * * *")
    count, last = every_second.due(utc(2027, 1, 1), utc(2027, 1, 3), 2)
    assert count == 100_000
    assert last == [utc(2027, 1, 3) - 1, utc(2027, 1, 3)]


def test_check_config_validates_cron_too(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, WIKI)
    done = subprocess.run([sys.executable, "-m", "faktory_py", "check-config", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30, cwd=processes.FaktoryPy.cwd)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"faktory-py check-config: {conf} is valid (0 throttles, 3 cron entries)\n"
    write_conf(tmp_path, WIKI, entry("61 * * * *"))
    done = subprocess.run([sys.executable, "-m", "faktory_py", "check-config", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30, cwd=processes.FaktoryPy.cwd)
    assert done.returncode == 2
    assert done.stderr == ("faktory-py check-config: config: cron[3]: schedule: Bad minute"
                           " (in conf.d/1-cron.toml)\n")
