"""The throttles configuration the client harnesses run against (protocol/spec.md §11): one entry
of each kind — `concurrency`, `worker`, `rate` — so every client's INFO parsing meets every shape
of `faktory.throttles` (A-T14), plus an unknown key, which the server logs and ignores."""

from __future__ import annotations

CLIENT_THROTTLES = """
[throttles]
bulk = { concurrency = 2, timeout = 60 }
"image-processing" = { worker = 1, timeout = 30, colour = "red" }
api = { rate = { limit = 100, period = 60 }, timeout = 60 }
"""


def configure_throttles(server) -> None:
    """Writes CLIENT_THROTTLES into a not-yet-started server's conf.d."""
    (server.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (server.conf_dir / "conf.d" / "throttles.toml").write_text(CLIENT_THROTTLES)
