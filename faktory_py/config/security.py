"""Who may connect: the server's password (`FAKTORY_PASSWORD`, `[faktory] password`, the
password file), the web UI's `[web]` password and allowed `Host` names, and the TLS files in
the config directory (protocol/spec.md §8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

DEFAULT_PASSWORD_FILE = Path("/etc/faktory/password")


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files that make both ports speak TLS."""

    key: Path
    cert: Path


def tls_files(conf_dir: Path) -> TlsFiles | None:
    """`private.key.pem` and `public.cert.pem` when both are in the config dir."""
    key, cert = conf_dir / "private.key.pem", conf_dir / "public.cert.pem"
    return TlsFiles(key, cert) if key.is_file() and cert.is_file() else None


@dataclass(frozen=True)
class WebConfig:
    """`[web]`: the UI's own password and the `Host` names it answers to."""

    #: `[web] password`; without it the UI asks for the server's (see web/auth.py)
    password: str | None = None
    #: `[web] allowed_hosts` as written (`"*"` = any name); None when absent, and then
    #: web/hosts.py derives the list from the binding and the password
    allowed_hosts: tuple[str, ...] | None = None


def _web(section: Mapping[str, Any]) -> WebConfig:
    names = section.get("allowed_hosts")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(name, str) and name.strip() for name in names):
            raise ConfigError('[web] allowed_hosts must be a list of host names, e.g. ["faktory.example.com"]')
        names = tuple(names)
    return WebConfig(password=section.get("password") or None, allowed_hosts=names)


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
