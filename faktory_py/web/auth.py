"""Who may use the web UI: HTTP Basic auth and the cross-origin guard, as ASGI middleware.

Both wrap the whole app so no route can forget them. Faktory's rules (protocol §8): Basic
auth with realm `Faktory` whenever a password is set, the username ignored, and `/health`
(and ours, `/health/primary`) always open so a load balancer can probe it; state-changing requests from another site are
refused the way Go 1.25's `CrossOriginProtection` does it, which needs no tokens in forms.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Config
from .proxy import route_path

OPEN_PATHS = ("/health", "/health/primary")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def web_password(config: Config) -> str | None:
    """`[web] password`, else the server's password (as Faktory)."""
    return config.web.password or config.password


def _basic_password(header: str) -> str | None:
    """The password of a `Basic base64(user:password)` header, None if there is none."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return password if sep else None


class BasicAuth:
    """401 unless the request carries the password (any username); OPEN_PATHS are exempt."""

    def __init__(self, app: ASGIApp, password: str | None) -> None:
        self.app = app
        self.password = password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.password or route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = _basic_password(Headers(scope=scope).get("authorization", ""))
        if given is None:
            response = PlainTextResponse("Authorization required", 401,
                                         headers={"WWW-Authenticate": 'Basic realm="Faktory"'})
        elif not hmac.compare_digest(given.encode(), self.password.encode()):
            response = PlainTextResponse("Authorization failed", 401)
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def cross_origin(method: str, headers: Headers) -> bool:
    """Go 1.25's rule: an unsafe request is cross-origin if the browser says so.

    `Sec-Fetch-Site` (every current browser sends it) must be `same-origin` or `none`;
    without it, an `Origin` header must name the `Host` it was sent to. Requests with
    neither (curl, scripts) are not from a browser page and pass.
    """
    if method in SAFE_METHODS:
        return False
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc != headers.get("host", "")


class CrossOriginGuard:
    """403 for a state-changing request another site's page made a browser send."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and cross_origin(scope["method"], Headers(scope=scope)):
            await PlainTextResponse("Forbidden: cross-origin request", 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)
