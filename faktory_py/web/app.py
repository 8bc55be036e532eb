"""The web UI's routes: Faktory's pages and form actions over the running server's state.

The app holds no state of its own: it reads and acts through `state.WebState`, the server's
own store, workers and features, and every action runs the same semantics a wire command
would (so it is journaled, and answered only once durable, like a `+OK`). Pages are data
from `views` rendered by Jinja2 templates; links are built from the request's root path
so the UI works behind a prefixing proxy (`proxy.ScriptName`), and name a queue or a set
entry in the query string so every name the server accepts is reachable (`urls`). The pages
features add (Batches, Throttles) are routed by `pages`, from the features' records.
`/metrics` (Prometheus, `metrics`) sits behind the same guards as the pages.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jinja2 import pass_context
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from .. import FAKTORY_VERSION
from ..config import Config
from ..errors import ClientError
from ..util.timefmt import format_time, utc_clock
from . import pages, urls, views
from .auth import BasicAuth, CrossOriginGuard, web_password
from .headers import SecurityHeaders
from .hosts import HostGuard, allowed_hosts
from .metrics import metrics_endpoint
from .proxy import ScriptName
from .state import WebState

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
templates.env.filters["time"] = format_time
templates.env.filters["form_value"] = urls.form_value
templates.env.globals["callback_state"] = views.callback_state
templates.env.globals["url"] = pass_context(lambda context, path, **params: urls.url(context["root"], path, **params))

#: per set page: form action → what it does (Faktory's names; `key=all` for every entry)
SET_ACTIONS = {
    "retries": ("retry", "delete", "kill"),
    "scheduled": ("add_to_queue", "delete"),
    "morgue": ("retry", "delete"),
}


class _Static(StaticFiles):
    """Assets are versioned with the package: let browsers keep them for an hour."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response


def create_app(state: WebState, config: Config, bindings: dict[str, str]) -> ASGIApp:
    """The ASGI app: security headers around routes behind (outermost first) the proxy
    prefix, the Host allow-list, the cross-origin guard and auth. `bindings` (label →
    binding) are shown in the footer and on the Debug page."""

    def render(request: Request, template: str, **context: Any) -> Response:
        now = state.now()
        context.update(root=request.scope.get("root_path", ""), server_time=utc_clock(now),
                       bindings=bindings, version=FAKTORY_VERSION,
                       feature_pages=state.feature_pages, now=now)
        return templates.TemplateResponse(request, template, context)

    def back(request: Request, path: str, **params: str) -> RedirectResponse:
        return RedirectResponse(urls.url(request.scope.get("root_path", ""), path, **params), status_code=302)

    def refused() -> Response | None:
        """While the journal cannot be written, actions are refused before they change anything."""
        problem = state.refusal()
        return None if problem is None else PlainTextResponse(problem, 503)

    def page(request: Request) -> int:
        return views.page_number(request.query_params.get("page"))

    # --- pages --------------------------------------------------------------------------

    async def dashboard(request: Request) -> Response:
        days = views.history_days(request.query_params.get("days"))
        now = state.now()
        info = state.info(now)
        series = state.history(days, now)
        return render(request, "dashboard.html", info=info, days=days, day_choices=views.HISTORY_DAYS,
                      history=Markup(json.dumps(series)), nav="dashboard")

    async def stats(request: Request) -> Response:
        return JSONResponse(state.info(state.now()), headers={"Cache-Control": "no-cache"})

    async def health(request: Request) -> Response:
        info = state.info(state.now())
        server = info["server"]
        return JSONResponse({"now": info["now"], "server": {
            key: server[key] for key in ("description", "faktory_version", "connections", "command_count")}})

    async def health_primary(request: Request) -> Response:
        """200 only on the node that serves (for a load balancer in front of a Redis-backed
        cluster: protocol/spec.md §7.1); 503 on a standby or a fenced node."""
        role = state.role()
        return PlainTextResponse(role, 200 if role == "primary" else 503, headers={"Cache-Control": "no-cache"})

    async def busy(request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            if "action" in form:
                return await working_action(request, form.get("action"), form.getlist("jid"))
            signal, wid = form.get("signal"), form.get("wid", "")
            if signal not in ("quiet", "terminate"):
                return PlainTextResponse("Unknown signal", 400)
            state.signal_workers(str(signal), str(wid))
            return back(request, "/busy")
        data = state.busy(page(request))
        return render(request, "busy.html", busy=data, nav="busy")

    async def working_action(request: Request, action: Any, jids: list[Any]) -> Response:
        """A reservation's button on the Busy page: MUTATE requeue / kill / discard on `working`."""
        if (refusal := refused()) is not None:
            return refusal
        if action not in views.WORKING_ACTIONS:
            return PlainTextResponse(f"Unknown action {action}", 400)
        if not jids:
            return PlainTextResponse("Nothing selected", 400)
        await state.end_reservations(str(action), [urls.from_form(str(j)) for j in jids])
        return back(request, "/busy")

    async def queues(request: Request) -> Response:
        """The list of queues; with `?name=` that queue's page (or an action on it)."""
        name = request.query_params.get("name")
        if name is not None:
            return await queue(request, name)
        if request.method == "POST":
            return PlainTextResponse("No queue named", 400)
        return render(request, "queues.html", queues=state.queue_rows(state.now()), nav="queues")

    async def queue(request: Request, name: str) -> Response:
        if not state.has_queue(name):
            return PlainTextResponse(f"No such queue {name}", 404)
        if request.method == "POST":
            if (refusal := refused()) is not None:
                return refusal
            form = await request.form()
            action = form.get("action")
            if action in ("delete", "pause", "resume"):
                operation = {"delete": state.remove_queue, "pause": state.pause, "resume": state.resume}[action]
                await operation(name)
                return back(request, "/queues")
            jids = [urls.from_form(str(j)) for j in form.getlist("jid")]
            if not jids:
                return PlainTextResponse("Nothing selected", 400)
            await state.delete_queued(name, jids)
            return back(request, "/queues", name=name)
        data = state.queue_page(name, page(request))
        return render(request, "queue.html", name=name, paused=state.is_paused(name), jobs=data, nav="queues")

    def set_page(kind: str) -> Callable[[Request], Awaitable[Response]]:
        """A set's listing; with `?key=` one entry's page (or an action on that entry)."""
        set_name = views.SET_PAGES[kind]

        async def endpoint(request: Request) -> Response:
            key = request.query_params.get("key")
            if request.method == "POST":
                return await set_action(request, kind, key)
            if key is not None:
                entry = state.set_entry(set_name, key)
                if entry is None:
                    return PlainTextResponse("No such job (it may have moved on)", 404)
                return render(request, "entry.html", kind=kind, entry=entry, actions=SET_ACTIONS[kind], nav=kind)
            data = state.set_page(set_name, page(request))
            return render(request, "set.html", kind=kind, entries=data, actions=SET_ACTIONS[kind], nav=kind)
        return endpoint

    def faktory_path(path: str, param: str) -> Callable[[Request], Awaitable[Response]]:
        """Faktory's `/queues/<name>` and `/<set>/<key>` (bookmarks, links in alerts) move to
        the query form; names a path cannot carry never arrive here, which is why it moved."""
        async def endpoint(request: Request) -> Response:
            target = urls.url(request.scope.get("root_path", ""), path, **{param: request.path_params["rest"] or None})
            return RedirectResponse(target, status_code=301)
        return endpoint

    async def set_action(request: Request, kind: str, key: str | None = None) -> Response:
        if (refusal := refused()) is not None:
            return refusal
        target = views.SET_PAGES[kind]
        form = await request.form()
        action = form.get("action")
        if action not in SET_ACTIONS[kind]:
            return PlainTextResponse(f"Unknown action {action}", 400)
        keys = [key] if key is not None else [urls.from_form(str(k)) for k in form.getlist("key")]
        try:
            await state.change_set(target, str(action), keys)
        except ClientError as exc:
            return PlainTextResponse(str(exc), 400)
        return back(request, f"/{kind}")

    async def debug(request: Request) -> Response:
        facts = views.debug_facts(config.data_dir, config.conf_dir, bindings)
        return render(request, "debug.html", facts=facts, nav="debug")

    both = ["GET", "POST"]
    routes = [
        Route("/", dashboard),
        Route("/stats", stats),
        Route("/health", health),
        Route("/health/primary", health_primary),
        Route("/metrics", metrics_endpoint(state, config.metrics.max_queues)),
        Route("/busy", busy, methods=both),
        Route("/queues", queues, methods=both),
        Route("/queues/{rest:path}", faktory_path("/queues", "name")),
        *pages.feature_routes(pages.Site(state, render)),
        Route("/debug", debug),
        Mount("/static", _Static(directory=HERE / "static"), name="static"),
    ]
    for kind in SET_ACTIONS:
        routes.append(Route(f"/{kind}", set_page(kind), methods=both))
        routes.append(Route(f"/{kind}/{{rest:path}}", faktory_path(f"/{kind}", "key")))
    middleware = [Middleware(ScriptName), Middleware(HostGuard, allowed=allowed_hosts(config)),
                  Middleware(CrossOriginGuard), Middleware(BasicAuth, password=web_password(config))]
    return SecurityHeaders(Starlette(routes=routes, middleware=middleware))
