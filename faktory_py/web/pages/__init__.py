"""The pages features add to the web UI: one module here per `WebPage` name.

A feature names its pages in its `Feature` record (`core.registry.WebPage`); the module of
the same name here builds their routes with `routes(owner, site)`, where `owner` is the
object the feature registered (its state and methods) and `site` what every page renders
with. So a feature's routes exist only while it is registered, and a new feature adds its
menu entry and pages with its record and one module, without touching `web.app`. A page
named by a record but without its module fails the web UI's start, not a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..state import WebState


class Render(Protocol):
    """The app's page renderer: a template in the layout (menu, footer, links under the
    request's root path) with the page's own `context`."""

    def __call__(self, request: Request, template: str, **context: Any) -> Response: ...


@dataclass(frozen=True)
class Site:
    """What a feature's page module builds its routes from."""

    state: WebState
    render: Render


def feature_routes(site: Site) -> list[BaseRoute]:
    """The routes of every page the registered features name, in registry order."""
    routes: list[BaseRoute] = []
    for feature in site.state.features:
        for page in feature.pages:
            routes += import_module(f"{__name__}.{page.name}").routes(feature.owner, site)
    return routes
