"""The Workflows tab (the workflows feature's `WebPage("held", ...)`, protocol/spec.md §14.7):
the held jobs, oldest first — how many of their dependencies they still wait on, the first of
those, how long they have been held — a search by jid showing that job's edges (JOB DEPS: its
dependencies with their outcome or state, the held jobs waiting on it; any jid, held or not),
and the `held` MUTATE actions."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import ClientError
from ...features.workflows.feature import Held, Workflows
from .. import urls, views
from . import Site

#: form action → MUTATE command on the `held` target
ACTIONS = {"requeue": "requeue", "kill": "kill", "delete": "discard"}


@dataclass(frozen=True)
class HeldRow:
    jid: str
    jobtype: str
    queue: str
    waiting: int
    of: int
    first_waiting: str
    held_for: float


def row(held: Held, now: float) -> HeldRow:
    job = held.job
    return HeldRow(held.jid, job.get("jobtype", ""), job.get("queue", ""), len(held.pending), len(held.deps),
                   next(iter(held.pending), ""), max(0.0, now - held.held_at))


def held_page(workflows: Workflows, number: int, search: str, now: float) -> views.Page[HeldRow]:
    """Held jobs in the order they were held (a jid search: that one only)."""
    found = [workflows.held[search]] if search in workflows.held else [] if search else workflows.held.values()
    total = len(found) if search else len(workflows.held)
    page: views.Page[HeldRow] = views.Page([], number, total)
    rows = [row(held, now) for held in islice(found, page.offset, page.offset + views.PAGE_SIZE)]
    return views.Page(rows, number, total)


def routes(workflows: Workflows, site: Site) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        search = request.query_params.get("jid", "").strip()
        now = site.state.now()
        data = held_page(workflows, views.page_number(request.query_params.get("page")), search, now)
        edges = workflows.deps(search) if search else None
        return site.render(request, "held.html", held=data, search=search, edges=edges, nav="held",
                           actions=list(ACTIONS))

    async def act(request: Request) -> Response:
        if (refusal := site.state.refusal()) is not None:
            return PlainTextResponse(refusal, 503)
        form = await request.form()
        action = form.get("action")
        if action not in ACTIONS:
            return PlainTextResponse(f"Unknown action {action}", 400)
        jids = [urls.from_form(str(key)) for key in form.getlist("key")]
        request_ = {"cmd": ACTIONS[str(action)], "target": "held"}
        if jids != ["all"]:
            request_["filter"] = {"jids": jids}
        try:
            position = site.state.manager.mutate(request_, site.state.now())
        except ClientError as exc:
            return PlainTextResponse(str(exc), 400)
        await site.state.durable(position)
        return RedirectResponse(urls.url(request.scope.get("root_path", ""), "/held"), status_code=302)

    async def endpoint(request: Request) -> Response:
        return await (act(request) if request.method == "POST" else listing(request))

    return [Route("/held", endpoint, methods=["GET", "POST"])]
