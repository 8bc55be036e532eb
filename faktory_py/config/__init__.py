"""Server configuration: Faktory's flags and environment, `conf.d/*.toml`, password rules.

`load(argv, env)` reads everything once — flags, `FAKTORY_*` variables and the TOML files —
into one frozen `Config` of typed, validated settings, so a bad setting stops the server
before it starts (exit 2) and no other module parses TOML or reads the environment. Every
default is defined here and only here: the layers below (wire, core, features) take their
values as arguments, from `server.app`, the composition root. Tests build a `Config`
directly.

This module holds the flags (protocol/spec.md §8), `Config` and `load`; each section is read
by the module named for it: `security` (passwords, `[web]`, TLS), `observability`
(`[faktory_py.metrics]`, `[statsd]`), `jobs` (`[batches]`, workflows, results), `limits`
(`[throttles]`, named limits), `crontab` (`[[cron]]`), `store` (`--store`, Redis), with the
shared checks in `values`. Everything is importable from here, as before the split.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..util.ports import DEFAULT_PORT
from .crontab import CronConfig, CronEntry, cron, cron_sources
from .jobs import BATCH_POLICIES, BatchesConfig, ResultsConfig, WorkflowsConfig, _batches, _results, _workflows
from .limits import NamedLimit, Throttle, ThrottlesConfig, throttles
from .observability import DEFAULT_METRICS_PORT, MetricsConfig, StatsdConfig, _metrics, statsd
from .security import DEFAULT_PASSWORD_FILE, TlsFiles, WebConfig, _web, resolve_password, tls_files
from .store import RedisConfig, parse_store
from .values import _positive_int, split_binding

__all__ = [
    "BATCH_POLICIES", "DEFAULT_BINDING", "DEFAULT_METRICS_PORT", "DEFAULT_PASSWORD_FILE", "DEFAULT_PORT",
    "DEFAULT_WEB_BINDING", "DEFAULT_WEB_PORT", "ENTERPRISE_DESCRIPTION", "ENVIRONMENTS", "FSYNC_POLICIES",
    "IO_PROCESSES_ENV",
    "LOG_FORMATS", "LOG_LEVELS", "BatchesConfig", "Config", "ConfigError", "CronConfig", "CronEntry",
    "MetricsConfig", "NamedLimit", "RedisConfig", "ResultsConfig", "StatsdConfig", "Throttle", "ThrottlesConfig",
    "Timers", "TlsFiles", "WebConfig", "WorkflowsConfig", "argument_parser", "cron", "cron_sources", "load",
    "load_toml", "parse_store", "resolve_password", "split_binding", "statsd", "throttles", "tls_files",
]

#: the environment variable for `--io-processes` (so a whole test run can switch modes)
IO_PROCESSES_ENV = "FAKTORY_PY_IO_PROCESSES"
#: the most connection processes `--io-processes` takes
MAX_IO_PROCESSES = 64
ENVIRONMENTS = ("development", "staging", "production")
FSYNC_POLICIES = ("always", "everysec", "no")
LOG_LEVELS = ("error", "warn", "info", "debug")
LOG_FORMATS = ("text", "json")
#: Faktory's ports: a binding without one (`-b host`) gets these (the command port is in
#: util.ports, where the tools' URL parser can use it too)
DEFAULT_WEB_PORT = 7420
#: what the CLI binds when neither a flag nor conf.d says (Faktory's defaults)
DEFAULT_BINDING = f"localhost:{DEFAULT_PORT}"
DEFAULT_WEB_BINDING = f"localhost:{DEFAULT_WEB_PORT}"
#: INFO's server.description: Ruby's and Go's client tests run their Enterprise tests only
#: when it says so. `[faktory] description = "..."` overrides it.
ENTERPRISE_DESCRIPTION = "Faktory Enterprise"

_SUBCOMMANDS = """subcommands (each with its own --help):
  faktory-py conformance --url tcp://host:port  run the protocol conformance cases against any server
  faktory-py bench --url tcp://host:port        benchmark any running server (needs the loadgen extra)
  faktory-py check-config -c DIR                validate a configuration directory (exit 0 valid, 2 invalid)
"""


@dataclass(frozen=True)
class Timers:
    """Lifecycle timings; defaults are Faktory's, tests may shorten them."""

    heartbeat_timeout: float = 60.0
    worker_reap_every: float = 15.0
    fetch_timeout: float = 2.0
    handshake_timeout: float = 2.0
    #: after SIGTERM: how long connections may go on (every command answered
    #: `-ERR shutdown in progress`) before the rest are closed (protocol/DEVIATIONS.md #23)
    shutdown_grace: float = 1.0


@dataclass(frozen=True)
class Config:
    binding: str = DEFAULT_BINDING
    #: off unless asked for: the CLI passes Faktory's default (DEFAULT_WEB_BINDING), while a
    #: server embedded in a test or a program must not grab a fixed port by surprise
    web_binding: str = "0"
    environment: str = "development"
    log_level: str = "info"
    #: `--log-format`: "text" (one line per record, as ever) or "json" (one JSON object per line)
    log_format: str = "text"
    data_dir: Path = Path("~/.faktory/db").expanduser()
    conf_dir: Path = Path("~/.faktory").expanduser()
    password: str | None = None
    description: str = ENTERPRISE_DESCRIPTION
    fsync: str = "everysec"
    #: compact once the journal has grown past max(this, 2 × the last snapshot)
    compact_min_bytes: int = 64 * 1024 * 1024
    #: the longest command line accepted (protocol/spec.md §1)
    max_line: int = 16 * 1024 * 1024
    max_connections: int = 2000
    #: sockets accepted but not yet through HELLO; over it the oldest is closed (admission.py)
    max_handshakes: int = 1000
    #: `--io-processes`: connection processes doing the command port's I/O; 0 is the
    #: in-process I/O loop (server/connprocs.py)
    io_processes: int = 0
    #: found in the config directory at load; None: both ports speak plain TCP/HTTP
    tls: TlsFiles | None = None
    timers: Timers = field(default_factory=Timers)
    web: WebConfig = field(default_factory=WebConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    statsd: StatsdConfig = field(default_factory=StatsdConfig)
    batches: BatchesConfig = field(default_factory=BatchesConfig)
    throttles: ThrottlesConfig = field(default_factory=ThrottlesConfig)
    #: where the op log lives: None is the journal in `data_dir`, else Redis (`--store`)
    redis: RedisConfig | None = None
    cron: CronConfig = field(default_factory=CronConfig)
    workflows: WorkflowsConfig = field(default_factory=WorkflowsConfig)
    results: ResultsConfig = field(default_factory=ResultsConfig)

    @property
    def web_enabled(self) -> bool:
        """`-w 0` and `-w :0` turn the web UI off (`host:0` binds a free port)."""
        return self.web_binding.strip() not in ("0", ":0")


def argument_parser() -> argparse.ArgumentParser:
    """`faktory-py`'s flags: the `faktory` binary's, so deployment scripts keep working."""
    p = argparse.ArgumentParser(prog="faktory-py", description="A Faktory-compatible job server.",
                                epilog=_SUBCOMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-b", dest="binding", default=None, help=f"command port binding (default {DEFAULT_BINDING})")
    p.add_argument("-w", dest="web_binding", default=None, help=f"web UI binding (default {DEFAULT_WEB_BINDING})")
    p.add_argument("-e", dest="environment", default=None, help="development, staging or production")
    p.add_argument("-l", dest="log_level", default=Config.log_level, choices=sorted(LOG_LEVELS), help="log level")
    p.add_argument("--log-format", dest="log_format", default=Config.log_format, choices=LOG_FORMATS,
                   help="log lines as text or as one JSON object each (default text)")
    p.add_argument("-d", dest="data_dir", default=None, help="storage directory")
    p.add_argument("-c", dest="conf_dir", default=None, help="configuration directory")
    p.add_argument("-v", dest="version", action="store_true", help="print version and exit")
    p.add_argument("--fsync", choices=FSYNC_POLICIES, default=None,
                   help=f"journal fsync policy (default {Config.fsync})")
    p.add_argument("--store", default=None, metavar="URL",
                   help="where the op log lives: local (the journal in -d, default), "
                        "redis://host:port[/db]?name=N, rediss://… or "
                        "redis+sentinel://host:port[,host:port]/<service>[/db]?name=N (preview, see README)")
    p.add_argument("--max-connections", type=int, default=None, help=f"connection limit (default {Config.max_connections})")
    p.add_argument("--io-processes", type=int, default=None, metavar="N",
                   help="processes doing the command port's I/O, exchanging batches with this one "
                        f"(default ${IO_PROCESSES_ENV} or 0: all in this process)")
    return p


def load(argv: list[str], env: Mapping[str, str]) -> Config:
    """Flags beat `conf.d` which beats defaults; dev and prod default dirs like Faktory's."""
    args = argument_parser().parse_args(argv)
    environment = args.environment or env.get("FAKTORY_ENV") or Config.environment
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"unknown environment {environment!r}: use one of {', '.join(ENVIRONMENTS)}")
    dev = environment == "development"
    conf_dir = Path(args.conf_dir or ("~/.faktory" if dev else "/etc/faktory")).expanduser()
    data_dir = Path(args.data_dir or ("~/.faktory/db" if dev else "/var/lib/faktory/db")).expanduser()
    toml = load_toml(conf_dir)
    faktory, ours = toml.get("faktory", {}), toml.get("faktory_py", {})
    fsync = args.fsync or ours.get("fsync", Config.fsync)
    store = args.store if args.store is not None else ours.get("store", "local")
    if not isinstance(store, str):
        raise ConfigError("[faktory_py] store must be a string: local or a redis:// URL")
    redis = parse_store(store, ours.get("redis", {}))
    if redis is not None and (args.fsync or "fsync" in ours):
        raise ConfigError("--fsync does not apply to --store redis://…: Redis's appendfsync governs durability")
    if fsync not in FSYNC_POLICIES:
        raise ConfigError(f"[faktory_py] fsync must be one of {', '.join(FSYNC_POLICIES)}")
    grace = ours.get("shutdown_grace", Timers.shutdown_grace)
    if type(grace) not in (int, float) or not 0 <= grace <= 3600:
        raise ConfigError("[faktory_py] shutdown_grace must be a number of seconds in [0, 3600]")
    return Config(
        io_processes=_io_processes(args.io_processes, env),
        binding=args.binding or faktory.get("binding", DEFAULT_BINDING),
        web_binding=args.web_binding or toml.get("web", {}).get("binding", DEFAULT_WEB_BINDING),
        environment=environment,
        log_level=args.log_level,
        log_format=args.log_format,
        data_dir=data_dir,
        conf_dir=conf_dir,
        password=resolve_password(environment, toml, env),
        description=str(faktory.get("description", ENTERPRISE_DESCRIPTION)),
        fsync=fsync,
        compact_min_bytes=_positive_int(ours, "compact_min_bytes", Config.compact_min_bytes),
        max_line=_positive_int(ours, "max_line", Config.max_line),
        max_connections=args.max_connections or _positive_int(ours, "max_connections", Config.max_connections),
        max_handshakes=_positive_int(ours, "max_handshakes", Config.max_handshakes),
        tls=tls_files(conf_dir),
        timers=Timers(shutdown_grace=float(grace)),
        web=_web(toml.get("web", {})),
        metrics=_metrics(ours.get("metrics", {})),
        statsd=statsd(toml.get("statsd", {})),
        batches=_batches(toml.get("batches", {})),
        throttles=throttles(toml.get("throttles", {}), ours.get("throttles", {}), ours.get("limits", {})),
        redis=redis,
        cron=cron(toml.get("cron", []), ours.get("cron", {}), cron_sources(conf_dir)),
        workflows=_workflows(ours.get("workflows", {})),
        results=_results(ours.get("results", {})),
    )


def _io_processes(flag: int | None, env: Mapping[str, str]) -> int:
    """`--io-processes`, else `$FAKTORY_PY_IO_PROCESSES`, else 0."""
    value: int | str = flag if flag is not None else env.get(IO_PROCESSES_ENV, "0")
    try:
        count = int(value)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_IO_PROCESSES:
        raise ConfigError(f"--io-processes (or {IO_PROCESSES_ENV}) must be a whole number in [0, {MAX_IO_PROCESSES}], "
                          f"not {value!r}")
    return count


def load_toml(conf_dir: Path) -> dict[str, Any]:
    """Read `conf.d/*.toml` alphabetically, concatenated into one document like Faktory."""
    files = sorted((conf_dir / "conf.d").glob("*.toml"))
    text = "".join(f.read_text() + "\n" for f in files)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse {conf_dir / 'conf.d'}/*.toml: {exc}") from None
