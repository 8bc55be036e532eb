"""`--store` and `[faktory_py.redis]`: where the op log lives, the data directory's journal
or Redis (protocol/spec.md §7.1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..errors import ConfigError


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
    #: `redis+sentinel://`: the Sentinels (host, port) asked where the master of `service` is;
    #: empty for a plain URL (then `host` and `port` are the Redis itself)
    sentinels: tuple[tuple[str, int], ...] = ()
    #: the master's name in the Sentinels' configuration (`sentinel monitor <service> …`)
    service: str = ""
    #: the Sentinels' own password (`?sentinel_password=`), when they require one
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def safe_url(self) -> str:
        """The URL for logs and INFO: never the password."""
        if self.sentinels:
            where = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.sentinels)
            return f"redis+sentinel://{where}/{self.service}/{self.db}?name={self.name}"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}?name={self.name}"

    def url(self) -> str:
        """The URL a Redis client dials, credentials included (a plain URL's Redis; with
        Sentinels the client asks them for the master instead: server/ha/client.py)."""
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
    `redis://[user:pw@]host[:port][/db][?name=N]` or `rediss://…` (TLS) the op log in Redis;
    `redis+sentinel://[user:pw@]host[:port][,host[:port]…]/<service>[/db][?name=N]` the op
    log on the master Sentinels name `service` (their default port 26379; `min_replicas`
    defaults to 1 there, since failing over is the reason to run Sentinels). The rest comes
    from `[faktory_py.redis]`'s `section`."""
    section = {} if section is None else section
    if url in ("", "local"):
        return None
    parts = urlsplit(url)
    if parts.scheme == "redis+cluster":
        raise ConfigError("--store redis+cluster:// is not supported: use redis://, rediss:// or redis+sentinel://")
    if parts.scheme not in ("redis", "rediss", "redis+sentinel"):
        raise ConfigError("--store must be local, redis://host:port[/db]?name=N, rediss://… or "
                          f"redis+sentinel://host:port[,host:port]/<service>[/db]?name=N, not {parts.scheme or url!r}")
    sentinel = parts.scheme == "redis+sentinel"
    hosts = _hosts(parts.netloc.rpartition("@")[2], 26379 if sentinel else 6379)
    if not sentinel and len(hosts) > 1:
        raise ConfigError(f"--store: one host in a {parts.scheme}:// URL (several Sentinels: redis+sentinel://)")
    path = parts.path.strip("/").split("/") if parts.path.strip("/") else []
    service = path.pop(0) if sentinel and path else ""
    if sentinel and not _REDIS_NAME.fullmatch(service):
        raise ConfigError("--store: redis+sentinel:// needs the master's name after the hosts: "
                          "redis+sentinel://host:26379/<service>[/db]")
    db_text = path[0] if len(path) == 1 else "0" if not path else "/".join(path)
    if not db_text.isdigit():
        raise ConfigError(f"--store: the Redis database must be a number, not {db_text!r}")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    allowed = ("name", "sentinel_password") if sentinel else ("name",)
    for key in query:
        if key not in allowed:
            raise ConfigError(f"--store: unknown URL parameter {key!r} (only {', '.join(k + '=…' for k in allowed)})")
    for key in section:
        if key not in (*_REDIS_INTS, "name", "node_id", "advertise"):
            raise ConfigError(f'[faktory_py.redis] unknown key "{key}"')
    name = query.get("name", section.get("name", RedisConfig.name))
    if not isinstance(name, str) or not _REDIS_NAME.fullmatch(name):
        raise ConfigError("--store: name must be 1-64 letters, digits, '.', '_' or '-'")
    ints: dict[str, int] = {}
    for key, (low, default) in _REDIS_INTS.items():
        value = section.get(key, 1 if sentinel and key == "min_replicas" else default)
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
    (host, port), *_ = hosts
    return RedisConfig(host=host, port=port, db=int(db_text),
                       username=unquote(parts.username) if parts.username else None,
                       password=unquote(parts.password) if parts.password is not None else None,
                       tls=parts.scheme == "rediss", name=name, node_id=node_id, advertise=advertise,
                       sentinels=tuple(hosts) if sentinel else (), service=service,
                       sentinel_password=query.get("sentinel_password"), **ints)


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    """`host[:port][,host[:port]…]` (`[v6]:port` too) as (host, port) pairs."""
    hosts = []
    for item in netloc.split(","):
        try:
            parts = urlsplit(f"//{item}")
            host, port = parts.hostname, parts.port or default_port
        except ValueError:
            raise ConfigError("--store: invalid port in the Redis URL") from None
        if not host:
            raise ConfigError("--store: the Redis URL needs a host")
        hosts.append((host, port))
    return hosts
