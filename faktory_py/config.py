"""Server configuration: defaults like Faktory's, `conf.d/*.toml`, password rules.

Everything a running server needs is in one frozen `Config`, built by the CLI (or by
tests directly), so the server itself never reads the environment.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .util.ports import DEFAULT_PORT

ENVIRONMENTS = ("development", "staging", "production")
FSYNC_POLICIES = ("always", "everysec", "no")
#: Faktory's ports: a binding without one (`-b host`) gets these (the command port is in
#: util.ports, where the tools' URL parser can use it too)
DEFAULT_WEB_PORT = 7420
#: what the CLI binds when neither a flag nor conf.d says (Faktory's defaults)
DEFAULT_BINDING = f"localhost:{DEFAULT_PORT}"
DEFAULT_WEB_BINDING = f"localhost:{DEFAULT_WEB_PORT}"


class ConfigError(Exception):
    """A configuration the server refuses to start with (message says why)."""


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
    data_dir: Path = Path("~/.faktory/db").expanduser()
    conf_dir: Path = Path("~/.faktory").expanduser()
    password: str | None = None
    fsync: str = "everysec"
    #: compact once the journal has grown past max(this, 2 × the last snapshot)
    compact_min_bytes: int = 64 * 1024 * 1024
    max_line: int = 16 * 1024 * 1024
    max_connections: int = 2000
    #: sockets accepted but not yet through HELLO; over it the oldest is closed (admission.py)
    max_handshakes: int = 1000
    timers: Timers = field(default_factory=Timers)
    toml: dict[str, Any] = field(default_factory=dict)

    @property
    def web_enabled(self) -> bool:
        """`-w 0` and `-w :0` turn the web UI off (`host:0` binds a free port)."""
        return self.web_binding.strip() not in ("0", ":0")

    @property
    def tls_files(self) -> tuple[Path, Path] | None:
        """(key, cert) when both PEM files are in the config dir: both ports speak TLS."""
        key, cert = self.conf_dir / "private.key.pem", self.conf_dir / "public.cert.pem"
        return (key, cert) if key.is_file() and cert.is_file() else None


def load_toml(conf_dir: Path) -> dict[str, Any]:
    """Read `conf.d/*.toml` alphabetically, concatenated into one document like Faktory."""
    files = sorted((conf_dir / "conf.d").glob("*.toml"))
    text = "".join(f.read_text() + "\n" for f in files)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse {conf_dir / 'conf.d'}/*.toml: {exc}") from None


def _read_secret(value: str) -> str:
    """A password starting with `/` names a file holding it (Docker-secrets style)."""
    if value.startswith("/"):
        try:
            return Path(value).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read password file {value}: {exc.strerror}") from None
    return value


DEFAULT_PASSWORD_FILE = Path("/etc/faktory/password")


def resolve_password(
    environment: str, toml: dict[str, Any], env: dict[str, str],
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
