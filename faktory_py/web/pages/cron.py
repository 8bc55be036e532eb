"""The Cron tab (the cron feature's `WebPage("cron", ...)`): every entry with its next run,
last fire and counts, read from the same `describe()` CRON STATUS answers with
(protocol/spec.md §12.4), a red warning on an entry whose next tick is overdue (a timer that
stopped, Faktory #282), and the last rejected reload's error; `/cron/<id>`: the entry's last
fires with their outcome, and "Enqueue now" (a POST, behind the web UI's cross-origin guard
like every action). The routes exist from the start, since a reload may add entries; the
tab answers 404 while it is not shown (`Cron.tab_shown`), like a page never routed."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import ClientError
from ...features.cron.feature import Cron, NoSuchEntry
from ...util.timefmt import parse_time
from .. import urls
from . import Site


def countdown(seconds: float) -> str:
    """`in 2d 3h`, `in 5m 10s`: the two largest units (a past time: `overdue by …`)."""
    whole = int(abs(seconds))
    parts = [(whole // 86400, "d"), (whole // 3600 % 24, "h"), (whole // 60 % 60, "m"), (whole % 60, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2] or ["0s"]
    return ("in " if seconds >= 0 else "overdue by ") + " ".join(shown)


def shown(cron: Cron, entry_id: str, now: float) -> dict[str, Any]:
    """CRON STATUS's view of the entry, with what the page adds: the schedule's reading, the
    next run in the entry's own zone and as a countdown."""
    entry = cron.entries[entry_id]
    described = cron.describe(entry_id, now)
    described["explain"] = entry.schedule.explain()
    described["next_local"] = described["countdown"] = None
    if described["next_at"] is not None:
        next_at = parse_time(described["next_at"])
        described["countdown"] = countdown(next_at - now)
        if entry.schedule.timezone != "UTC":
            local = datetime.fromtimestamp(next_at, ZoneInfo(entry.schedule.timezone))
            described["next_local"] = local.strftime("%Y-%m-%d %H:%M:%S %Z")
    return described


def routes(cron: Cron, site: Site) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        if not cron.tab_shown:
            return PlainTextResponse("Not Found", 404)
        now = site.state.now()
        entries = [shown(cron, entry_id, now) for entry_id in cron.entries]
        return site.render(request, "cron.html", entries=entries, reload_error=cron.reload_error,
                           warnings=cron.warnings, nav="cron")

    async def detail(request: Request) -> Response:
        entry_id = request.path_params["id"]
        entry = cron.entries.get(entry_id)
        if entry is None:
            return PlainTextResponse("No such cron entry", 404)
        error = None
        if request.method == "POST":
            if (problem := site.state.refusal()) is not None:
                return PlainTextResponse(problem, 503)
            try:
                await site.state.commit(cron.enqueue_now(entry_id, site.state.now()))
            except NoSuchEntry:
                return PlainTextResponse("No such cron entry", 404)
            except ClientError as exc:
                error = exc.line
            else:
                root = request.scope.get("root_path", "")
                return RedirectResponse(urls.url(root, f"/cron/{entry_id}"), status_code=302)
        return site.render(request, "cron_entry.html", entry=shown(cron, entry_id, site.state.now()),
                           history=cron.history(entry_id), error=error, nav="cron")

    return [Route("/cron", listing), Route("/cron/{id}", detail, methods=["GET", "POST"])]
