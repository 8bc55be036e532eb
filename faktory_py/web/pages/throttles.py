"""The Throttles tab (the throttles feature's `WebPage("throttles", ...)`): one row per
throttle and per named limit, with its busiest partitions, read from the same `status()`
THROTTLE STATUS answers with (protocol/spec.md §11.4), so the tab and the wire never disagree, under a banner with the last rejected
reload's error. The route exists from the start, since a reload may configure throttles;
it answers 404 while the tab is not shown (`Throttles.tab_shown`), like a page never routed."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ...features.throttles.feature import Throttles
from ...util.jsoncodec import compact_json
from . import Site


#: partitions a row lists, most waiting first (THROTTLE STATUS has up to 100)
SHOWN_PARTITIONS = 5


@dataclass(frozen=True, slots=True)
class ThrottleRow:
    """One throttle or named limit as the tab shows it."""

    #: the throttle's queue, or the named limit's name
    queue: str
    #: "jobtypes …; queues …" of a named limit, None for a throttle (its queue is its selector)
    selector: str | None
    concurrency: int | None
    worker: int | None
    timeout: int | None
    in_use: int
    waiting: int
    slot_release: str
    overdue: int
    #: (limit, period) of its rate limit, or None
    rate: tuple[int, float] | None
    #: grants in the rate window ending now, and when a full window opens (RFC 3339) or None;
    #: of its one partition (None for a partitioned entry: see `partitions`)
    grants_in_window: int | None
    next_grant_at: str | None
    #: wid → slots held, busiest first
    by_worker: list[tuple[str, int]]
    warnings: list[str]
    #: how many partitions it knows, and the busiest as (key as JSON, in use, waiting)
    partition_count: int = 1
    partitions: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def full(self) -> bool:
        """Every `concurrency` slot is held (of its one partition): FETCH skips its jobs."""
        return self.concurrency is not None and self.in_use >= self.concurrency and not self.partitions


def throttle_rows(throttles: Throttles, now: float) -> list[ThrottleRow]:
    """Every configured throttle and named limit at `now`, in configuration order."""
    rows = []
    for name, entry in throttles.status((), now).items():
        holders = sorted(entry["by_worker"].items(), key=lambda item: (-item[1], item[0]))
        rate = None if entry["rate"] is None else (entry["rate"]["limit"], entry["rate"]["period"])
        selector = None
        if "jobtypes" in entry:
            selector = "; ".join(f"{key} {', '.join(entry[key])}" for key in ("jobtypes", "queues")
                                 if entry[key] is not None)
        by_partition = entry["by_partition"]
        single = by_partition[0] if by_partition and by_partition[0]["key"] is None else None
        partitions = [] if single is not None else [
            (compact_json(p["key"]), p["in_use"], p["waiting"]) for p in by_partition[:SHOWN_PARTITIONS]]
        rows.append(ThrottleRow(name, selector, entry["concurrency"], entry["worker"], entry["timeout"],
                                entry["in_use"], entry["waiting"], entry["slot_release"], entry["overdue"], rate,
                                None if single is None else single["grants_in_window"],
                                None if single is None else single["next_grant_at"], holders,
                                [] if selector is not None else throttles.warnings_about(name),
                                entry["partitions"], partitions))
    return rows


def routes(throttles: Throttles, site: Site) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        if not throttles.tab_shown:
            return PlainTextResponse("Not Found", 404)
        rows = throttle_rows(throttles, site.state.now())
        return site.render(request, "throttles.html", throttles=rows, reload_error=throttles.reload_error,
                           nav="throttles")

    return [Route("/throttles", listing)]
