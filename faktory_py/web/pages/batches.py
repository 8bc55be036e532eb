"""The Batches pages (the batches feature's `WebPage("batches", ...)`): the list, newest
first, and one batch with its counts and callbacks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ...features.batches.feature import Batches
from .. import views
from . import Site


def routes(batches: Batches, site: Site) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        data = views.batch_page(batches, views.page_number(request.query_params.get("page")))
        return site.render(request, "batches.html", batches=data, nav="batches")

    async def detail(request: Request) -> Response:
        found = batches.get(request.path_params["bid"])
        if found is None:
            return PlainTextResponse("No such batch", 404)
        return site.render(request, "batch.html", batch=found, status=found.status(), nav="batches")

    return [Route("/batches", listing), Route("/batches/{bid}", detail)]
