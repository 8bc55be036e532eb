"""The Throttles tab (the throttles feature's `WebPage("throttles", ...)`, named only when
throttles are configured): one row per throttle, read from the same `status()` THROTTLE
STATUS answers with (protocol/spec.md §11.4), so the tab and the wire never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from starlette.requests import Request
from starlette.responses import Response
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
        rows.append(ThrottleRow(queue, entry["concurrency"], entry["worker"], entry["timeout"], entry["in_use"],
                                entry["waiting"], entry["slot_release"], entry["overdue"], holders,
                                throttles.warnings_about(queue)))
    return rows


def routes(throttles: Throttles, site: Site) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        rows = throttle_rows(throttles, site.state.now())
        return site.render(request, "throttles.html", throttles=rows, nav="throttles")

    return [Route("/throttles", listing)]
