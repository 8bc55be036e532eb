"""The Cron tab (the cron feature's `WebPage("cron", ...)`): every entry with its next run,
last fire and counts, read from the same `describe()` CRON STATUS answers with
(protocol/spec.md §12.4), a red warning on an entry whose next tick is overdue (a timer that
stopped, Faktory #282), and the last rejected reload's error; `/cron/<id>`: the entry's last
fires with their outcome, and "Enqueue now" (a POST, behind the web UI's cross-origin guard
like every action). The routes exist from the start, since a reload may add entries; the
tab answers 404 while it is not shown (`Cron.tab_shown`), like a page never routed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import ClientError
from ...features.cron.feature import Cron, NoSuchEntry
from .. import urls
from . import Site


def routes(cron: Cron, site: Site) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        if not cron.tab_shown:
            return PlainTextResponse("Not Found", 404)
        now = site.state.now()
        entries = [{**cron.describe(entry_id, now), "explain": entry.schedule.explain()}
                   for entry_id, entry in cron.entries.items()]
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
        now = site.state.now()
        return site.render(request, "cron_entry.html", entry={**cron.describe(entry_id, now),
                                                               "explain": entry.schedule.explain()},
                           history=cron.history(entry_id), error=error, nav="cron")

    return [Route("/cron", listing), Route("/cron/{id}", detail, methods=["GET", "POST"])]
