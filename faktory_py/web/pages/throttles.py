"""The Throttles tab (the throttles feature's `WebPage("throttles", ...)`): one row per
throttle, read from the same `status()` THROTTLE STATUS answers with (protocol/spec.md
§11.4), so the tab and the wire never disagree, under a banner with the last rejected
reload's error. The route exists from the start, since a reload may configure throttles;
it answers 404 while the tab is not shown (`Throttles.tab_shown`), like a page never routed."""

from __future__ import annotations

from dataclasses import dataclass
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ...features.throttles.feature import Throttles
from . import Site


@dataclass(frozen=True, slots=True)
class ThrottleRow:
    """One throttle as the tab shows it."""

    queue: str
    concurrency: int | None
    worker: int | None
    timeout: int
    in_use: int
    waiting: int
    slot_release: str
    overdue: int
    #: (limit, period) of its rate limit, or None
    rate: tuple[int, float] | None
    #: grants in the rate window ending now, and when a full window opens (RFC 3339) or None
    grants_in_window: int | None
    next_grant_at: str | None
    #: wid → slots held, busiest first
    by_worker: list[tuple[str, int]]
    warnings: list[str]

    @property
    def full(self) -> bool:
        """Every `concurrency` slot is held: FETCH skips the queue."""
        return self.concurrency is not None and self.in_use >= self.concurrency


def throttle_rows(throttles: Throttles, now: float) -> list[ThrottleRow]:
    """Every configured throttle at `now`, in configuration order."""
    rows = []
    for queue, entry in throttles.status((), now).items():
        holders = sorted(entry["by_worker"].items(), key=lambda item: (-item[1], item[0]))
        rate = None if entry["rate"] is None else (entry["rate"]["limit"], entry["rate"]["period"])
        [partition] = entry["by_partition"]
        rows.append(ThrottleRow(queue, entry["concurrency"], entry["worker"], entry["timeout"], entry["in_use"],
                                entry["waiting"], entry["slot_release"], entry["overdue"], rate,
                                partition["grants_in_window"], partition["next_grant_at"], holders,
                                throttles.warnings_about(queue)))
    return rows


def routes(throttles: Throttles, site: Site) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        if not throttles.tab_shown:
            return PlainTextResponse("Not Found", 404)
        rows = throttle_rows(throttles, site.state.now())
        return site.render(request, "throttles.html", throttles=rows, reload_error=throttles.reload_error,
                           nav="throttles")

    return [Route("/throttles", listing)]
