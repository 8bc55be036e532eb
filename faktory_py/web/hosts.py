"""Which `Host` names the web UI answers to: protection against DNS rebinding.

A page on another site can point its own DNS name at 127.0.0.1 and then read and drive the
UI as if it were same-origin; only the `Host` header gives it away. `[web] allowed_hosts`
lists the names the UI is reached by (any port; `"*"` means any name). Without the list:
a UI bound to a loopback address with no password answers only to `localhost`,
`127.0.0.1` and `[::1]`, the names a local browser or an SSH tunnel uses; any other UI
answers to every name (a password already keeps a rebinding page out, and the names of a
UI bound to all interfaces cannot be guessed). `/health` is exempt, as it is from auth,
so load balancers probe it under any name.
"""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import DEFAULT_WEB_PORT, Config, split_binding
from .auth import OPEN_PATHS, web_password
from .proxy import route_path

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


def host_name(authority: str) -> str:
    """The name part of a `Host` value or a list entry: lower case, no port, IPv6 in brackets."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[:authority.find("]") + 1] or authority
    if authority.count(":") > 1:  # a bare IPv6 address (list entries may be written so)
        return f"[{authority}]"
    return authority.partition(":")[0].rstrip(".")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(config: Config) -> frozenset[str] | None:
    """The names the UI answers to, None for any (see the module docstring).

    `[web] allowed_hosts` was checked when the configuration was loaded (config/security.py)."""
    names = config.web.allowed_hosts
    if names is not None:
        return None if "*" in names else frozenset(host_name(name) for name in names)
    host, _port = split_binding(config.web_binding, DEFAULT_WEB_PORT)
    if web_password(config) is None and _loopback(host):
        return LOOPBACK_NAMES
    return None


class HostGuard:
    """403 for a request whose `Host` is not one the UI answers to."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.allowed is not None and route_path(scope) not in OPEN_PATHS:
            name = host_name(Headers(scope=scope).get("host", ""))
            if name not in self.allowed:
                await PlainTextResponse(f"Forbidden: this server does not answer to host {name!r} "
                                        "(see [web] allowed_hosts)", 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)
