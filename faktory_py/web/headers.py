"""Security headers on every response of the web UI: no framing, no sniffing, a tight CSP.

The pages load their scripts and styles from `/static` only (the dashboard's data is a
`<script type="application/json">` block, which is not executed), so the policy allows
nothing inline and nothing from another origin. `frame-ancestors 'none'` and
`X-Frame-Options: DENY` stop clickjacking of the action buttons. The referrer policy is
`same-origin`, not `no-referrer`: with `no-referrer` a browser sends `Origin: null` on a
same-origin form post, which the cross-origin guard's `Origin` fallback would refuse.

The wrapper goes around the whole app (outside Starlette's own error handler), so 401,
403, 404, 500 and static files carry the headers too.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
_NAMES = {name for name, _value in SECURITY_HEADERS}


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every HTTP response start (replacing any the app set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _NAMES]
                message = {**message, "headers": headers + SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)
