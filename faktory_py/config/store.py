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
