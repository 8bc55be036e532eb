"""`X-Script-Name`: the web UI behind a reverse proxy that mounts it under a path prefix.

The proxy names the prefix in the header; every link, form action and redirect the UI
emits starts with it (templates and redirects build URLs from the ASGI `root_path`), and
a request path may arrive with or without it, as in Faktory (which strips it if present).
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

#: a path of plain segments; anything else is ignored rather than echoed into every link
_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def script_name(header: str | None) -> str:
    """The usable prefix from the header ("" for none or an unusable one), without a trailing /."""
    prefix = (header or "").strip().rstrip("/")
    return prefix if _PREFIX.fullmatch(prefix) else ""


def route_path(scope: Scope) -> str:
    """The request path without the prefix: what the routes match."""
    path, prefix = scope["path"], scope.get("root_path", "")
    return path[len(prefix):] if prefix and path.startswith(prefix) else path


class ScriptName:
    """Sets `root_path` from `X-Script-Name`; `path` then always starts with it (ASGI's rule)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            prefix = script_name(Headers(scope=scope).get("x-script-name"))
            if prefix:
                path = scope["path"]
                if not (path == prefix or path.startswith(prefix + "/")):
                    path = prefix + path
                scope = {**scope, "root_path": prefix, "path": path}
        await self.app(scope, receive, send)
