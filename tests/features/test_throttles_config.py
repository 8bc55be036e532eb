"""`[throttles]` in conf.d (protocol/spec.md §11.1): Faktory Enterprise's configurations load
(A-T1), every bad entry stops the boot with its own text, unknown keys only warn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from faktory_py.config import ConfigError, Throttle, load
from faktory_py.tools import processes

#: the Ent-Throttling wiki's example (Oct 2019 revision): inline tables, a quoted name
WIKI_INLINE = """
[throttles]
instagram = { concurrency = 4, timeout = 60 }
bulk = { worker = 5, timeout = 60 }
"image-processing" = { concurrency = 4, timeout = 30 }
"""
#: the same in sub-tables, spread over two files (Jan 2022 revision)
WIKI_TABLES = ("""
[throttles.instagram]
concurrency = 4
timeout = 60
""", """
[throttles.bulk]
worker = 5
timeout = 60

[throttles."image-processing"]
concurrency = 4
timeout = 30
""")
EXPECTED = (Throttle("instagram", timeout=60, concurrency=4), Throttle("bulk", timeout=60, worker=5),
            Throttle("image-processing", timeout=30, concurrency=4))


def load_with(tmp_path: Path, *files: str):
    conf_d = tmp_path / "conf" / "conf.d"
    conf_d.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(files):
        (conf_d / f"{i}-throttles.toml").write_text(text)
    return load(["-d", str(tmp_path / "data"), "-c", str(tmp_path / "conf")], {})


def test_no_throttles_by_default(tmp_path: Path) -> None:
    assert load_with(tmp_path).throttles.entries == ()


@pytest.mark.parametrize("files", [(WIKI_INLINE,), WIKI_TABLES], ids=["inline", "sub-tables"])
def test_the_wiki_configurations_load(tmp_path: Path, files: tuple[str, ...]) -> None:
    throttles = load_with(tmp_path, *files).throttles
    assert throttles.entries == EXPECTED
    assert throttles.warnings == ()


def test_both_limits_in_one_entry_apply(tmp_path: Path) -> None:
    entry = load_with(tmp_path, "[throttles]\nq = { concurrency = 3, worker = 1, timeout = 9 }\n").throttles.entries
    assert entry == (Throttle("q", timeout=9, concurrency=3, worker=1),)


@pytest.mark.parametrize(("entry", "expected"), [
    ("{ timeout = 60, rate = { limit = 3, period = 10 } }", Throttle("q", timeout=60, rate=(3, 10.0))),
    ("{ timeout = 5, concurrency = 2, rate = { limit = 100000, period = 0.001 } }",
     Throttle("q", timeout=5, concurrency=2, rate=(100000, 0.001))),
    ("{ timeout = 5, worker = 1, rate = { limit = 1, period = 86400 } }",
     Throttle("q", timeout=5, worker=1, rate=(1, 86400.0))),
])
def test_a_rate_limit_loads_alone_or_with_the_others(tmp_path: Path, entry: str, expected: Throttle) -> None:
    """`rate` alone is a throttle; `timeout` stays required in a `[throttles]` entry."""
    throttles = load_with(tmp_path, f"[throttles]\nq = {entry}\n").throttles
    assert throttles.entries == (expected,)
    assert throttles.warnings == ()


@pytest.mark.parametrize(("entry", "reason"), [
    ("{ concurrency = 4 }", "timeout is required"),
    ("{ concurrency = 4, timeout = 0 }", "timeout must be an integer >= 1"),
    ("{ concurrency = 4, timeout = 1.5 }", "timeout must be an integer >= 1"),
    ('{ concurrency = 4, timeout = "60" }', "timeout must be an integer >= 1"),
    ("{ concurrency = 4, timeout = true }", "timeout must be an integer >= 1"),
    ("{ concurrency = 0, timeout = 60 }", "concurrency must be an integer >= 1"),
    ("{ concurrency = -1, timeout = 60 }", "concurrency must be an integer >= 1"),
    ("{ worker = 0, timeout = 60 }", "worker must be an integer >= 1"),
    ("{ worker = 2.0, timeout = 60 }", "worker must be an integer >= 1"),
    ("{ timeout = 60 }", "needs concurrency, worker or rate"),
    ("5", "must be a table, e.g. { concurrency = 4, timeout = 60 }"),
    ('{ concurrency = 1, timeout = 60, slot_release = "end" }', 'slot_release must be "timeout" or "job_end"'),
    ('{ concurrency = 1, timeout = 60, on_worker_lost = true }', 'on_worker_lost must be "fail" or "keep"'),
    ("{ rate = { limit = 3, period = 10 } }", "timeout is required"),
    ("{ timeout = 60, rate = 3 }", "rate must be a table, e.g. { limit = 100, period = 60 }"),
    ("{ timeout = 60, rate = { limit = 3 } }", "rate.period must be a number of seconds from 0.001 to 86400"),
    ("{ timeout = 60, rate = { period = 10 } }", "rate.limit must be an integer from 1 to 100000"),
    ("{ timeout = 60, rate = { limit = 0, period = 10 } }", "rate.limit must be an integer from 1 to 100000"),
    ("{ timeout = 60, rate = { limit = 100001, period = 10 } }", "rate.limit must be an integer from 1 to 100000"),
    ("{ timeout = 60, rate = { limit = 2.0, period = 10 } }", "rate.limit must be an integer from 1 to 100000"),
    ("{ timeout = 60, rate = { limit = 3, period = 0.0009 } }",
     "rate.period must be a number of seconds from 0.001 to 86400"),
    ("{ timeout = 60, rate = { limit = 3, period = 86401 } }",
     "rate.period must be a number of seconds from 0.001 to 86400"),
    ('{ timeout = 60, rate = { limit = 3, period = "10s" } }',
     "rate.period must be a number of seconds from 0.001 to 86400"),
    ("{ timeout = 60, rate = { limit = 3, period = 10, burst = 5 } }", 'rate: unknown key "burst"'),
    ('{ concurrency = 1, timeout = 60, partition = "jobtype" }',
     'partition must be a list of "jobtype", "queue", "custom.<path>" or "args.<path>"'),
    ('{ concurrency = 1, timeout = 60, partition = [] }',
     'partition must be a list of "jobtype", "queue", "custom.<path>" or "args.<path>"'),
    ('{ concurrency = 1, timeout = 60, partition = ["tenant"] }',
     'partition must be a list of "jobtype", "queue", "custom.<path>" or "args.<path>", not \'tenant\''),
    ('{ concurrency = 1, timeout = 60, partition = ["custom."] }',
     'partition must be a list of "jobtype", "queue", "custom.<path>" or "args.<path>", not \'custom.\''),
    ('{ concurrency = 1, timeout = 60, partition = ["queue", "queue"] }', "partition names a selector twice"),
])
def test_every_bad_entry_names_its_queue_and_reason(tmp_path: Path, entry: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_with(tmp_path, f"[throttles]\nmailer = {entry}\n")
    assert str(caught.value) == f"config: throttles.mailer: {reason}"


def test_slot_release_and_on_worker_lost_are_read(tmp_path: Path) -> None:
    throttles = load_with(tmp_path, '[throttles]\na = { concurrency = 1, timeout = 5, slot_release = "job_end" }\n'
                                    'b = { worker = 2, timeout = 5, on_worker_lost = "keep" }\n').throttles
    assert throttles.entries == (Throttle("a", timeout=5, concurrency=1, slot_release="job_end", on_worker_lost="fail"),
                                 Throttle("b", timeout=5, worker=2, slot_release="timeout", on_worker_lost="keep"))
    assert throttles.warnings == ()


def test_faktory_py_throttles_gives_the_modes_an_entry_does_not_set(tmp_path: Path) -> None:
    throttles = load_with(tmp_path, '[faktory_py.throttles]\nslot_release = "job_end"\non_worker_lost = "keep"\n'
                                    '[throttles]\na = { concurrency = 1, timeout = 5 }\n'
                                    'b = { worker = 2, timeout = 5, on_worker_lost = "fail" }\n').throttles
    assert throttles.entries == (Throttle("a", timeout=5, concurrency=1, slot_release="job_end", on_worker_lost="keep"),
                                 Throttle("b", timeout=5, worker=2, slot_release="job_end", on_worker_lost="fail"))


@pytest.mark.parametrize(("section", "reason"), [
    ('slot_release = "never"', 'slot_release must be "timeout" or "job_end"'),
    ('on_worker_lost = "retry"', 'on_worker_lost must be "fail" or "keep"'),
    ("concurrency = 3", 'unknown key "concurrency"'),
])
def test_a_bad_faktory_py_throttles_is_refused(tmp_path: Path, section: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_with(tmp_path, f"[faktory_py.throttles]\n{section}\n")
    assert str(caught.value) == f"config: faktory_py.throttles: {reason}"


def test_a_queue_name_faktory_refuses_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_with(tmp_path, '[throttles]\n"no spaces" = { concurrency = 1, timeout = 5 }\n')
    assert str(caught.value) == "config: throttles.no spaces: invalid queue name"


def test_throttles_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config: throttles: must be a table"):
        load_with(tmp_path, "throttles = 3\n")


def test_unknown_keys_warn_and_the_entry_still_loads(tmp_path: Path) -> None:
    throttles = load_with(tmp_path, '[throttles.q]\nconcurrency = 2\ntimeout = 5\ncolour = "red"\n'
                                    'slot_release = "timeout"\n').throttles
    assert throttles.entries == (Throttle("q", timeout=5, concurrency=2),)
    assert throttles.warnings == ('config: throttles.q: unknown key "colour" ignored',)


def test_a_bad_throttle_stops_the_boot_with_status_2(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "throttles.toml").write_text("[throttles]\nq = { concurrency = 1 }\n")
    done = subprocess.run([sys.executable, "-m", "faktory_py", "-b", "127.0.0.1:0", "-w", "0",
                           "-d", str(tmp_path / "data"), "-c", str(tmp_path / "conf")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "config: throttles.q: timeout is required" in done.stderr


def check_config(conf_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "faktory_py", "check-config", "-c", str(conf_dir)],
                          capture_output=True, text=True, timeout=30, cwd=processes.FaktoryPy.cwd)


@pytest.mark.parametrize("files", [(WIKI_INLINE,), WIKI_TABLES], ids=["inline", "sub-tables"])
def test_check_config_accepts_the_wiki_configurations(tmp_path: Path, files: tuple[str, ...]) -> None:
    """A-T1: `faktory-py check-config` prints no error for Faktory Enterprise's examples."""
    load_with(tmp_path, *files)
    done = check_config(tmp_path / "conf")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == f"faktory-py check-config: {tmp_path / 'conf'} is valid (3 throttles)\n"


def test_check_config_refuses_an_invalid_directory_with_status_2(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "throttles.toml").write_text("[throttles]\nq = { concurrency = 1 }\n")
    done = check_config(tmp_path / "conf")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "faktory-py check-config: config: throttles.q: timeout is required\n"
    missing = check_config(tmp_path / "nowhere")
    assert missing.returncode == 2
    assert f"no configuration directory {tmp_path / 'nowhere'}" in missing.stderr


def test_check_config_prints_the_warnings_of_a_valid_directory(tmp_path: Path) -> None:
    load_with(tmp_path, "[throttles]\nq = { concurrency = 2, timeout = 5, colour = 1 }\n")
    done = check_config(tmp_path / "conf")
    assert done.returncode == 0
    assert done.stderr == 'faktory-py check-config: warning: config: throttles.q: unknown key "colour" ignored\n'


def test_check_config_validates_partitions_and_named_limits(tmp_path: Path) -> None:
    """Step 5 of issue 12: `check-config` reads `[faktory_py.limits]` and `partition` as the
    server does (and a SIGHUP reload, which loads the same way)."""
    conf_d = tmp_path / "conf" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "throttles.toml").write_text(
        '[throttles]\nq = { concurrency = 1, timeout = 60, partition = ["custom.tenant_id"] }\n'
        '[faktory_py.limits.pdf]\njobtypes = ["RenderPDF"]\nconcurrency = 1\n')
    done = check_config(tmp_path / "conf")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"faktory-py check-config: {tmp_path / 'conf'} is valid (1 throttles, 1 limits)\n"
    (conf_d / "throttles.toml").write_text('[faktory_py.limits.pdf]\nconcurrency = 1\n')
    done = check_config(tmp_path / "conf")
    assert (done.returncode, done.stderr) == (
        2, "faktory-py check-config: config: faktory_py.limits.pdf: needs jobtypes or queues\n")
