"""The thin adapter that runs the web UI on Hypercorn's trio worker, inside the server's loop.

Same process, same event loop, same objects as the command port: a click in the UI and
a command on the wire change one store. It reports the URLs it is bound to through
`task_status.started`, so tests bind port 0 and learn the port.
"""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from ..config import DEFAULT_METRICS_PORT, DEFAULT_WEB_PORT, Config, split_binding
from .app import create_app
from .metrics import create_metrics_app
from .state import WebState

log = logging.getLogger("faktory_py.web")

def hypercorn_config(config: Config, binding: str, default_port: int) -> HypercornConfig:
    """Bind like the command port; TLS with the same certificate and key when present.

    `localhost` binds the IPv4 loopback (Hypercorn binds one address per entry, and with
    port 0 two entries would get two different ports).
    """
    host, port = split_binding(binding, default_port)
    if host == "localhost":
        host = "127.0.0.1"
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    hc = HypercornConfig()
    hc.bind = [bind]
    hc.errorlog = log
    hc.graceful_timeout = config.timers.shutdown_grace
    if config.tls is not None:
        hc.keyfile, hc.certfile = str(config.tls.key), str(config.tls.cert)
    return hc


async def serve_web(state: WebState, config: Config, bindings: dict[str, str], *,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the UI until cancelled; reports the bound URLs (e.g. `http://127.0.0.1:7420`)."""
    await serve(create_app(state, config, bindings), hypercorn_config(config, config.web_binding, DEFAULT_WEB_PORT),
                task_status=task_status)


async def serve_metrics(state: WebState, config: Config, binding: str, *,
                        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `/metrics` alone, without auth, on `binding` (`[faktory_py.metrics] binding`)
    until cancelled; reports the bound URLs."""
    await serve(create_metrics_app(state, config.metrics.max_queues),
                hypercorn_config(config, binding, DEFAULT_METRICS_PORT), task_status=task_status)
