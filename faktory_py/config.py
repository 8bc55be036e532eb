"""Server configuration: Faktory's flags and environment, `conf.d/*.toml`, password rules.

`load(argv, env)` reads everything once — flags, `FAKTORY_*` variables and the TOML files —
into one frozen `Config` of typed, validated settings, so a bad setting stops the server
before it starts (exit 2) and no other module parses TOML or reads the environment. Every
default is defined here and only here: the layers below (wire, core, features) take their
values as arguments, from `server.app`, the composition root. Tests build a `Config`
directly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .errors import ConfigError
from .util.ports import DEFAULT_PORT
from .util.schedule import Schedule, ScheduleError

ENVIRONMENTS = ("development", "staging", "production")
FSYNC_POLICIES = ("always", "everysec", "no")
LOG_LEVELS = ("error", "warn", "info", "debug")
LOG_FORMATS = ("text", "json")
#: `[batches] policy`: whether a committed batch is immutable (protocol/spec.md §10.3)
BATCH_POLICIES = ("strict", "permissive")
#: Faktory's ports: a binding without one (`-b host`) gets these (the command port is in
#: util.ports, where the tools' URL parser can use it too)
DEFAULT_WEB_PORT = 7420
#: `[faktory_py.metrics] binding` without a port (web/metrics.py)
DEFAULT_METRICS_PORT = 7421
#: what the CLI binds when neither a flag nor conf.d says (Faktory's defaults)
DEFAULT_BINDING = f"localhost:{DEFAULT_PORT}"
DEFAULT_WEB_BINDING = f"localhost:{DEFAULT_WEB_PORT}"
#: INFO's server.description: Ruby's and Go's client tests run their Enterprise tests only
#: when it says so. `[faktory] description = "..."` overrides it.
ENTERPRISE_DESCRIPTION = "Faktory Enterprise"
DEFAULT_PASSWORD_FILE = Path("/etc/faktory/password")

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
class WebConfig:
    """`[web]`: the UI's own password and the `Host` names it answers to."""

    #: `[web] password`; without it the UI asks for the server's (see web/auth.py)
    password: str | None = None
    #: `[web] allowed_hosts` as written (`"*"` = any name); None when absent, and then
    #: web/hosts.py derives the list from the binding and the password
    allowed_hosts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MetricsConfig:
    """`[faktory_py.metrics]`: Prometheus' `/metrics` (web/metrics.py)."""

    #: a binding (like `-w`'s) that serves `/metrics` alone, without auth, for scrapers;
    #: None: `/metrics` is only on the web UI's port, behind the UI's auth
    binding: str | None = None
    #: queues named in the per-queue gauges, in the order they became known; the rest are
    #: summed under `queue="(other)"`, so a server with many queues cannot flood Prometheus
    max_queues: int = 100
    #: time every command and FETCH wait (core/timings.py); False: the command path reads no
    #: clock for metrics, and `/metrics` leaves those two histograms out
    timings: bool = True


@dataclass(frozen=True)
class StatsdConfig:
    """`[statsd]` in `conf.d/statsd.toml`: Faktory Enterprise's statsd metrics (protocol/spec.md §15)."""

    #: "host:port" of the statsd server (UDP); None: no metrics are sent
    location: str | None = None
    #: prepended to every metric name
    namespace: str = "faktory."
    #: DogStatsD tags sent with every metric, "name:value"
    tags: tuple[str, ...] = ()
    #: metrics per UDP packet: a buffer this full is sent at once (else within 100 ms)
    buffer_size: int = 15
    #: the queues whose `queue.latency` is sent with the global metrics
    queue_latency: tuple[str, ...] = ()
    #: `queueLatency = true`: every queue's (ours: our latency reads only a queue's head job)
    queue_latency_all: bool = False
    #: what the unknown keys gave (logged at boot)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchesConfig:
    """`[batches]` (protocol/spec.md §10)."""

    policy: str = "strict"
    #: an open batch not committed within this many seconds is dropped (no callbacks)
    uncommitted_ttl: float = 30 * 60.0
    #: a batch is forgotten this many seconds after it is done (every callback ACKed)
    retention: float = 24 * 3600.0


@dataclass(frozen=True)
class WorkflowsConfig:
    """`[faktory_py.workflows]`: job dependencies (protocol/spec.md §15)."""

    #: the key of `custom` naming a job's dependencies; "" turns dependencies off
    dependency_key: str = "after"
    #: seconds a dependent waits for a dependency jid the server has never seen
    unknown_timeout: float = 1800.0
    #: the most dependencies one job may name
    max_deps: int = 10000


@dataclass(frozen=True)
class ResultsConfig:
    """`[faktory_py.results]`: job outcomes and results (protocol/spec.md §14.6)."""

    #: seconds an outcome record is kept after its job ended (longer while a held job needs it)
    ttl: float = 86400.0
    #: the largest result an ACK may carry, encoded
    max_bytes: int = 65536
    #: past this many bytes, `custom._after` carries outcomes without results
    inject_max_bytes: int = 262144
    #: a tracked job's last TRACK SET `desc` is its result when it succeeds without one
    from_track_desc: bool = False


@dataclass(frozen=True)
class Throttle:
    """One `[throttles.<queue>]` entry (protocol/spec.md §11.1): at most `concurrency` jobs
    of `queue` reserved at once across the server, at most `worker` per worker process
    (HELLO `wid`); a slot taken at FETCH ends at the job's end or `timeout` seconds later;
    at most `rate` = (limit, period in seconds) FETCHes in any such period. `slot_release` and
    `on_worker_lost` are our extensions (protocol/spec.md §11.7)."""

    queue: str
    timeout: int
    concurrency: int | None = None
    worker: int | None = None
    rate: tuple[int, float] | None = None
    #: "timeout": the slot ends at `timeout` (Faktory); "job_end": `timeout` only flags it overdue
    slot_release: str = "timeout"
    #: "fail": a worker process reaped for missing heartbeats fails its jobs here; "keep": it does not
    on_worker_lost: str = "fail"
    #: selectors of the values whose tuple is a job's partition: every limit applies per
    #: partition (protocol/spec.md §11.8); () for one partition
    partition: tuple[str, ...] = ()


@dataclass(frozen=True)
class NamedLimit:
    """One `[faktory_py.limits.<name>]` entry (protocol/spec.md §11.9): the limits of a
    throttle over the jobs whose jobtype is one of `jobtypes` and whose queue is one of
    `queues` (None: any). Without `timeout` a slot ends only with its job."""

    name: str
    jobtypes: tuple[str, ...] | None = None
    queues: tuple[str, ...] | None = None
    timeout: int | None = None
    concurrency: int | None = None
    worker: int | None = None
    rate: tuple[int, float] | None = None
    slot_release: str = "timeout"
    on_worker_lost: str = "fail"
    partition: tuple[str, ...] = ()


@dataclass(frozen=True)
class ThrottlesConfig:
    """`[throttles]` and `[faktory_py.limits]`: the entries, and the warnings their unknown
    keys gave (logged at boot)."""

    entries: tuple[Throttle, ...] = ()
    warnings: tuple[str, ...] = ()
    limits: tuple[NamedLimit, ...] = ()


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


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files that make both ports speak TLS."""

    key: Path
    cert: Path


@dataclass(frozen=True)
class RedisConfig:
    """`--store redis://…`: the op log in Redis instead of the data directory (README, "Redis
    backend (preview)"; the key layout is in protocol/spec.md §7.1). `[faktory_py.redis]` sets
    the rest; the password is kept out of `__repr__` and of `safe_url`."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    #: the key namespace `{fk:<name>}`: several clusters can share one Redis
    name: str = "default"
    #: this node's name in the lease token (default `hostname:port` at start-up)
    node_id: str | None = None
    #: where other nodes' clients reach this node's command port (`host:port`) while it is
    #: the primary: a standby forwards its clients' connections there (None: they are parked)
    advertise: str | None = None
    lease_ttl_ms: int = 5000
    renew_every_ms: int = 1000
    #: replies wait for `WAIT min_replicas` too (0: only for the Redis master to have the entry)
    min_replicas: int = 0
    wait_timeout_ms: int = 1000

    @property
    def safe_url(self) -> str:
        """The URL for logs and INFO: never the password."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}?name={self.name}"

    def url(self) -> str:
        """The URL a Redis client dials, credentials included."""
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"


#: `[faktory_py.redis]` integer settings: (lowest allowed, default)
_REDIS_INTS = {"lease_ttl_ms": (100, RedisConfig.lease_ttl_ms), "renew_every_ms": (10, RedisConfig.renew_every_ms),
               "min_replicas": (0, RedisConfig.min_replicas), "wait_timeout_ms": (1, RedisConfig.wait_timeout_ms)}
_REDIS_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def parse_store(url: str, section: Mapping[str, Any] | None = None) -> RedisConfig | None:
    """`--store`'s value: `local` (or empty) is the journal in the data directory (None);
    `redis://[user:pw@]host[:port][/db][?name=N]` or `rediss://…` (TLS) the op log in Redis,
    with `[faktory_py.redis]`'s `section` for the rest. Sentinel URLs are recognised and
    refused until standbys exist."""
    section = {} if section is None else section
    if url in ("", "local"):
        return None
    parts = urlsplit(url)
    if parts.scheme in ("redis+sentinel", "redis+cluster"):
        raise ConfigError(f"--store {parts.scheme}:// is not supported yet: use redis:// or rediss://")
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"--store must be local, redis://host:port[/db]?name=N or rediss://…, not {parts.scheme or url!r}")
    try:
        host, port = parts.hostname, parts.port or 6379
    except ValueError:
        raise ConfigError("--store: invalid port in the Redis URL") from None
    if not host:
        raise ConfigError("--store: the Redis URL needs a host")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise ConfigError(f"--store: the Redis database must be a number, not {db_text!r}")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    for key in query:
        if key != "name":
            raise ConfigError(f"--store: unknown URL parameter {key!r} (only name=…)")
    for key in section:
        if key not in (*_REDIS_INTS, "name", "node_id", "advertise"):
            raise ConfigError(f'[faktory_py.redis] unknown key "{key}"')
    name = query.get("name", section.get("name", RedisConfig.name))
    if not isinstance(name, str) or not _REDIS_NAME.fullmatch(name):
        raise ConfigError("--store: name must be 1-64 letters, digits, '.', '_' or '-'")
    ints: dict[str, int] = {}
    for key, (low, default) in _REDIS_INTS.items():
        value = section.get(key, default)
        if type(value) is not int or value < low:
            raise ConfigError(f"[faktory_py.redis] {key} must be an integer >= {low}")
        ints[key] = value
    if ints["renew_every_ms"] * 2 > ints["lease_ttl_ms"]:
        raise ConfigError("[faktory_py.redis] renew_every_ms must be at most half of lease_ttl_ms")
    node_id = section.get("node_id")
    if node_id is not None and (not isinstance(node_id, str) or not node_id or ":" in node_id):
        raise ConfigError("[faktory_py.redis] node_id must be a non-empty string without ':'")
    advertise = section.get("advertise")
    if advertise is not None:
        where, _, number = advertise.rpartition(":") if isinstance(advertise, str) else ("", "", "")
        if not where.strip("[]") or not number.isdigit() or not 0 < int(number) < 65536:
            raise ConfigError('[faktory_py.redis] advertise must be "host:port" (this node\'s command port as '
                              "other nodes reach it)")
    return RedisConfig(host=host, port=port, db=int(db_text),
                       username=unquote(parts.username) if parts.username else None,
                       password=unquote(parts.password) if parts.password is not None else None,
                       tls=parts.scheme == "rediss", name=name, node_id=node_id, advertise=advertise,
                       **ints)


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
                        "redis://host:port[/db]?name=N or rediss://… (preview, see README)")
    p.add_argument("--max-connections", type=int, default=None, help=f"connection limit (default {Config.max_connections})")
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


def load_toml(conf_dir: Path) -> dict[str, Any]:
    """Read `conf.d/*.toml` alphabetically, concatenated into one document like Faktory."""
    files = sorted((conf_dir / "conf.d").glob("*.toml"))
    text = "".join(f.read_text() + "\n" for f in files)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse {conf_dir / 'conf.d'}/*.toml: {exc}") from None


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


def tls_files(conf_dir: Path) -> TlsFiles | None:
    """`private.key.pem` and `public.cert.pem` when both are in the config dir."""
    key, cert = conf_dir / "private.key.pem", conf_dir / "public.cert.pem"
    return TlsFiles(key, cert) if key.is_file() and cert.is_file() else None


def _positive_int(section: Mapping[str, Any], name: str, default: int) -> int:
    value = section.get(name, default)
    if type(value) is not int or value < 1:
        raise ConfigError(f"[faktory_py] {name} must be a positive integer")
    return value


def _web(section: Mapping[str, Any]) -> WebConfig:
    names = section.get("allowed_hosts")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(name, str) and name.strip() for name in names):
            raise ConfigError('[web] allowed_hosts must be a list of host names, e.g. ["faktory.example.com"]')
        names = tuple(names)
    return WebConfig(password=section.get("password") or None, allowed_hosts=names)


def _metrics(section: Mapping[str, Any]) -> MetricsConfig:
    binding = section.get("binding")
    if binding is not None and (not isinstance(binding, str) or not binding.strip()):
        raise ConfigError('[faktory_py.metrics] binding must be a binding like "127.0.0.1:7421"')
    if binding is not None:
        split_binding(binding, DEFAULT_METRICS_PORT)  # ConfigError if it is none
    max_queues = section.get("max_queues", MetricsConfig.max_queues)
    if type(max_queues) is not int or max_queues < 0:
        raise ConfigError("[faktory_py.metrics] max_queues must be an integer >= 0")
    return MetricsConfig(binding=binding, max_queues=max_queues, timings=_metrics_timings(section))


def _metrics_timings(section: Mapping[str, Any]) -> bool:
    """`[faktory_py.metrics] timings`: whether the command path is timed (its cost is
    measured by the bench's `faktory_py-notimings` server)."""
    timings = section.get("timings", MetricsConfig.timings)
    if type(timings) is not bool:
        raise ConfigError("[faktory_py.metrics] timings must be true or false")
    return timings


#: DataDog's rule for a tag (protocol/spec.md §15)
_STATSD_TAG = re.compile(r"[a-zA-Z][\w\-:./]*")
_STATSD_RESERVED_TAGS = ("host", "device", "source", "service")
_STATSD_KEYS = ("location", "namespace", "tags", "bufferSize", "queueLatency")


def statsd(section: Any) -> StatsdConfig:
    """`[statsd]` (Faktory Enterprise's `conf.d/statsd.toml`); a bad value raises
    `config: statsd.<key>: <reason>`. Without `location` nothing is sent, whatever else is set."""
    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(f"config: statsd.{key}: {reason}")

    if not isinstance(section, dict):
        raise ConfigError('config: statsd: must be a table, e.g. [statsd] location = "127.0.0.1:8125"')
    warnings = tuple(f'config: statsd: unknown key "{key}" ignored' for key in section if key not in _STATSD_KEYS)
    location = section.get("location")
    if location is not None:
        host, sep, port = location.rpartition(":") if isinstance(location, str) else ("", "", "")
        if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise fail("location", 'must be "host:port", e.g. "127.0.0.1:8125"')
    namespace = section.get("namespace", StatsdConfig.namespace)
    if not isinstance(namespace, str) or any(c in namespace for c in ":|@#\n "):
        raise fail("namespace", 'must be a string without ":", "|", "@", "#" or spaces, e.g. "faktory."')
    tags = section.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise fail("tags", 'must be a list of "name:value" strings')
    for tag in tags:
        if not _STATSD_TAG.fullmatch(tag):
            raise fail("tags", f"{tag!r} is not a DataDog tag (a letter, then letters, digits, _-:./)")
        if tag.partition(":")[0] in _STATSD_RESERVED_TAGS:
            raise fail("tags", f"{tag!r}: {', '.join(_STATSD_RESERVED_TAGS)} are reserved tag names")
    size = section.get("bufferSize", StatsdConfig.buffer_size)
    if type(size) is not int or not 1 <= size <= 1000:
        raise fail("bufferSize", "must be an integer from 1 to 1000")
    queues = section.get("queueLatency", [])
    every = queues is True
    if isinstance(queues, bool):
        queues = []
    if not isinstance(queues, list) or not all(isinstance(q, str) and _QUEUE_NAME.fullmatch(q) for q in queues):
        raise fail("queueLatency", 'must be a list of queue names, e.g. ["critical", "default"], or true')
    return StatsdConfig(location, namespace, tuple(tags), size, tuple(queues), every, warnings)


def _batches(section: Mapping[str, Any]) -> BatchesConfig:
    policy = section.get("policy", BatchesConfig.policy)
    if policy not in BATCH_POLICIES:
        raise ConfigError(f"[batches] policy must be one of {', '.join(BATCH_POLICIES)}, not {policy!r}")
    return BatchesConfig(policy=policy,
                         uncommitted_ttl=_seconds(section, "batches", "uncommitted_ttl", BatchesConfig.uncommitted_ttl),
                         retention=_seconds(section, "batches", "retention", BatchesConfig.retention))


def _seconds(section: Mapping[str, Any], table: str, name: str, default: float) -> float:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"[{table}] {name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _count(section: Mapping[str, Any], table: str, name: str, default: int) -> int:
    value = section.get(name, default)
    if type(value) is not int or value < 1:
        raise ConfigError(f"[{table}] {name} must be a positive integer, not {value!r}")
    return value


def _workflows(section: Mapping[str, Any]) -> WorkflowsConfig:
    table = "faktory_py.workflows"
    key = section.get("dependency_key", WorkflowsConfig.dependency_key)
    if not isinstance(key, str):
        raise ConfigError(f"[{table}] dependency_key must be a string (\"\" turns dependencies off), not {key!r}")
    return WorkflowsConfig(dependency_key=key,
                           unknown_timeout=_seconds(section, table, "unknown_timeout", WorkflowsConfig.unknown_timeout),
                           max_deps=_count(section, table, "max_deps", WorkflowsConfig.max_deps))


def _results(section: Mapping[str, Any]) -> ResultsConfig:
    table = "faktory_py.results"
    from_desc = section.get("from_track_desc", ResultsConfig.from_track_desc)
    if not isinstance(from_desc, bool):
        raise ConfigError(f"[{table}] from_track_desc must be true or false, not {from_desc!r}")
    return ResultsConfig(from_track_desc=from_desc,
                         ttl=_seconds(section, table, "ttl", ResultsConfig.ttl),
                         max_bytes=_count(section, table, "max_bytes", ResultsConfig.max_bytes),
                         inject_max_bytes=_count(section, table, "inject_max_bytes", ResultsConfig.inject_max_bytes))


#: Faktory's queue names (a throttle names the queue it applies to)
_QUEUE_NAME = re.compile(r"[a-zA-Z0-9._-]+")
#: keys of a throttle entry this version reads; any other is warned about and ignored
_THROTTLE_KEYS = ("concurrency", "worker", "timeout", "slot_release", "on_worker_lost", "rate", "partition")
#: keys of a `[faktory_py.limits.<name>]` entry (any other is refused: it is our section)
_LIMIT_KEYS = (*_THROTTLE_KEYS, "jobtypes", "queues")
#: a partition selector: a job's jobtype, its queue, or a path into its custom or args
_SELECTOR = re.compile(r"jobtype|queue|(custom|args)(\.[^.]+)+")
#: the values of the modes of a throttle entry, its default first (protocol/spec.md §11.7)
_THROTTLE_MODES = {"slot_release": ("timeout", "job_end"), "on_worker_lost": ("fail", "keep")}
#: bounds of `rate = { limit = L, period = P }` (protocol/spec.md §11.5)
_RATE_LIMITS = (1, 100_000)
_RATE_PERIODS = (0.001, 86_400)


def throttles(section: Any, defaults: Any = None, limits: Any = None) -> ThrottlesConfig:
    """`[throttles]`, in either TOML spelling (inline tables or `[throttles.<queue>]`
    sub-tables are the same document), with `[faktory_py.throttles]`'s `defaults` for the
    modes an entry does not set. A bad entry raises `config: throttles.<queue>: <reason>`
    (protocol/spec.md §11.1); an unknown key only warns, so a configuration Faktory
    Enterprise accepts still boots."""
    if not isinstance(section, dict):
        raise ConfigError("config: throttles: must be a table of queue = { ... } entries")
    default_modes = _default_modes({} if defaults is None else defaults)
    limits = {} if limits is None else limits
    entries: list[Throttle] = []
    warnings: list[str] = []
    for queue, entry in section.items():
        def fail(reason: str, queue: str = queue) -> ConfigError:
            return ConfigError(f"config: throttles.{queue}: {reason}")

        if not _QUEUE_NAME.fullmatch(queue):
            raise fail("invalid queue name")
        if not isinstance(entry, dict):
            raise fail("must be a table, e.g. { concurrency = 4, timeout = 60 }")
        for key in entry:
            if key not in _THROTTLE_KEYS:
                warnings.append(f'config: throttles.{queue}: unknown key "{key}" ignored')
        if "timeout" not in entry:
            raise fail("timeout is required")
        entries.append(Throttle(queue, **_limits(entry, default_modes, fail)))
    named: list[NamedLimit] = []
    if not isinstance(limits, dict):
        raise ConfigError("config: faktory_py.limits: must be a table of name = { ... } entries")
    for name, entry in limits.items():
        def fail(reason: str, name: str = name) -> ConfigError:
            return ConfigError(f"config: faktory_py.limits.{name}: {reason}")

        if not _QUEUE_NAME.fullmatch(name):
            raise fail("invalid limit name")
        if name in section:
            raise fail(f"the name is taken by [throttles.{name}]")
        _own_table(entry, _LIMIT_KEYS, '{ jobtypes = ["RenderPDF"], concurrency = 2 }', fail)
        selectors = {key: _names(entry[key], key, fail) for key in ("jobtypes", "queues") if key in entry}
        if not selectors:
            raise fail("needs jobtypes or queues")
        named.append(NamedLimit(name, **selectors, **_limits(entry, default_modes, fail)))
    return ThrottlesConfig(tuple(entries), tuple(warnings), tuple(named))


def _limits(entry: dict[str, Any], default_modes: dict[str, str],
            fail: Callable[[str], ConfigError]) -> dict[str, Any]:
    """The limits and modes of a throttle or named limit entry, checked."""
    limits: dict[str, Any] = {}
    for key in ("timeout", "concurrency", "worker"):
        value = entry.get(key)
        if value is not None and (type(value) is not int or value < 1):
            raise fail(f"{key} must be an integer >= 1")
        limits[key] = value
    limits["rate"] = None if "rate" not in entry else _rate(entry["rate"], fail)
    if limits["concurrency"] is None and limits["worker"] is None and limits["rate"] is None:
        raise fail("needs concurrency, worker or rate")
    for key, values in _THROTTLE_MODES.items():
        limits[key] = entry.get(key, default_modes[key])
        if limits[key] not in values:
            raise fail(_mode_error(key, values))
    if "partition" in entry:
        limits["partition"] = _partition(entry["partition"], fail)
    return limits


def _partition(value: Any, fail: Callable[[str], ConfigError]) -> tuple[str, ...]:
    """`partition = [selector, ...]` (protocol/spec.md §11.8)."""
    usage = 'partition must be a list of "jobtype", "queue", "custom.<path>" or "args.<path>"'
    if not isinstance(value, list) or not value:
        raise fail(usage)
    for selector in value:
        if not isinstance(selector, str) or not _SELECTOR.fullmatch(selector):
            raise fail(f"{usage}, not {selector!r}")
    if len(set(value)) != len(value):
        raise fail("partition names a selector twice")
    return tuple(value)


def _names(value: Any, key: str, fail: Callable[[str], ConfigError]) -> tuple[str, ...]:
    """`jobtypes = [...]` or `queues = [...]` of a named limit: a non-empty list of names."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise fail(f"{key} must be a non-empty list of names")
    if key == "queues" and not all(_QUEUE_NAME.fullmatch(v) for v in value):
        raise fail("queues: invalid queue name")
    return tuple(value)


def _default_modes(section: Any) -> dict[str, str]:
    """`[faktory_py.throttles]`: the modes of every throttle entry that does not set its own
    (protocol/spec.md §11.7). Our own section, so an unknown key is refused, not ignored."""
    def fail(reason: str) -> ConfigError:
        return ConfigError(f"config: faktory_py.throttles: {reason}")

    _own_table(section, _THROTTLE_MODES, '{ slot_release = "job_end" }', fail)
    modes: dict[str, str] = {}
    for key, values in _THROTTLE_MODES.items():
        modes[key] = section.get(key, values[0])
        if modes[key] not in values:
            raise fail(_mode_error(key, values))
    return modes


def _own_table(value: Any, keys: Container[str], example: str, fail: Callable[[str], ConfigError],
               name: str = "") -> None:
    """Check a table of our own (`[faktory_py.*]`, our extension keys): a table, and an unknown
    key refused, not ignored (one ignored would not do what it says). `name`: the key the table
    is under, prefixed to the messages."""
    prefix = f"{name} " if name else ""
    if not isinstance(value, dict):
        raise fail(f"{prefix}must be a table, e.g. {example}")
    for key in value:
        if key not in keys:
            raise fail(f'{name + ": " if name else ""}unknown key "{key}"')


def _mode_error(key: str, values: tuple[str, ...]) -> str:
    return f"{key} must be " + " or ".join(f'"{value}"' for value in values)


def _rate(value: Any, fail: Callable[[str], ConfigError]) -> tuple[int, float]:
    """`rate = { limit = L, period = P }` as (L, P). Any other key is refused, not ignored:
    it is our extension, and a key ignored there would not limit what it says."""
    _own_table(value, ("limit", "period"), "{ limit = 100, period = 60 }", fail, "rate")
    limit, period = value.get("limit"), value.get("period")
    low, high = _RATE_LIMITS
    if type(limit) is not int or not low <= limit <= high:
        raise fail(f"rate.limit must be an integer from {low} to {high}")
    low, high = _RATE_PERIODS
    if type(period) not in (int, float) or not low <= period <= high:
        raise fail(f"rate.period must be a number of seconds from {low} to {high}")
    return limit, float(period)


def _read_secret(value: str) -> str:
    """A password starting with `/` names a file holding it (Docker-secrets style)."""
    if value.startswith("/"):
        try:
            return Path(value).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read password file {value}: {exc.strerror}") from None
    return value


def resolve_password(
    environment: str, toml: Mapping[str, Any], env: Mapping[str, str],
    default_file: Path = DEFAULT_PASSWORD_FILE,
) -> str | None:
    """FAKTORY_PASSWORD, else `[faktory] password`; staging/production require one.

    Outside development `default_file` is the last resort, as in Faktory.
    """
    value = env.get("FAKTORY_PASSWORD") or toml.get("faktory", {}).get("password") or ""
    skip = env.get("FAKTORY_SKIP_PASSWORD", "").lower() in ("1", "true", "yes")
    if not value and environment != "development" and not skip:
        if default_file.is_file():
            value = str(default_file)
        else:
            raise ConfigError(
                "faktory requires a password to be set in staging or production, "
                "see the Security wiki page"
            )
    return _read_secret(value) if value else None


def split_binding(binding: str, default_port: int) -> tuple[str, int]:
    """`host:port`, `:port` (all interfaces) or `[::1]:port` → (host, port)."""
    host, sep, port = binding.rpartition(":")
    if not sep:
        host, port = binding, str(default_port)
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"invalid binding {binding!r}: expected host:port") from None


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
