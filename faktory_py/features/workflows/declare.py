"""What a pushed job declares under `custom.after` (protocol/spec.md §14.2), checked with
the texts users see. Pure: nothing here reads the server's state except the cycle search,
which is handed the held jobs' unresolved dependencies."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from ...errors import ClientError
from ...store.api import Job
from ...util.jsoncodec import compact_json

POLICIES = ("success", "complete")
#: A batch dependency `{"bid": b}` is the edge `bid:b` wherever jids are keys (held jobs'
#: dependencies, the reverse edges, outcome records), so a batch and a job never share one
#: (a Go jid may itself start with `b-`); a jid dependency starting with it is refused.
BID_PREFIX = "bid:"


def bid_key(bid: str) -> str:
    return BID_PREFIX + bid


def batch_of(dep: str) -> str | None:
    """The bid a dependency edge names, None for a jid."""
    return dep[len(BID_PREFIX):] if dep.startswith(BID_PREFIX) else None


def shown(dep: str) -> str:
    """A dependency as users name it: its jid, or its bid."""
    return batch_of(dep) or dep


@dataclass(frozen=True, slots=True)
class Declaration:
    """A job's dependencies (jids, and `bid_key`s for batches, each once, in the order
    given) and how it treats them."""

    deps: tuple[str, ...]
    policy: str
    #: seconds to wait for a dependency jid the server has never seen
    timeout: float


def declaration(job: Job, key: str, max_deps: int, default_timeout: float) -> Declaration | None:
    """The job's declaration; None when it has none (or the feature is off: `key` is "").
    Raises ClientError with protocol/spec.md §14.2's texts."""
    custom = job.get("custom")
    if not key or not isinstance(custom, dict) or custom.get(key) is None:
        return None
    after = custom[key]
    shape = ClientError(f'custom.{key} must be an array of job ids or {{"jid"|"bid": id}} objects')
    if not isinstance(after, list) or not after:
        raise shape
    deps: dict[str, None] = {}
    for item in after:
        if isinstance(item, dict) and set(item) == {"bid"}:
            if not isinstance(item["bid"], str) or not item["bid"]:
                raise shape
            deps[bid_key(item["bid"])] = None
            continue
        jid = item.get("jid") if isinstance(item, dict) and set(item) == {"jid"} else item
        if not isinstance(jid, str) or len(jid) < 8 or jid.startswith(BID_PREFIX):
            raise shape
        deps[jid] = None
    if len(after) > max_deps:
        raise ClientError(f"custom.{key}: too many dependencies ({len(after)} > {max_deps})")
    if job["jid"] in deps:
        raise ClientError(f"custom.{key}: a job cannot depend on itself")
    own = custom.get("bid")
    if isinstance(own, str) and own and bid_key(own) in deps:
        raise ClientError(f"custom.{key}: a job cannot depend on its own batch {own}")
    policy = custom.get(f"{key}_policy")
    if policy is None:
        policy = "success"
    if policy not in POLICIES:
        raise ClientError(f'custom.{key}_policy must be "success" or "complete"')
    timeout = custom.get(f"{key}_timeout")
    if timeout is None:
        timeout = default_timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise ClientError(f"custom.{key}_timeout must be a positive number of seconds: {compact_json(timeout)}")
    return Declaration(tuple(deps), policy, float(timeout))


def cycle(jid: str, deps: Collection[str], waits_on: Callable[[str], Collection[str]]) -> list[str] | None:
    """The dependency path `jid -> … -> jid` that pushing `jid` with `deps` would close, or
    None. `waits_on(x)` is what held job `x` still waits for (empty for any other jid): a
    cycle can only close through jids that were unknown when a held job was pushed."""
    parent: dict[str, str] = {}
    stack = [(dep, jid) for dep in deps]
    while stack:
        node, came_from = stack.pop()
        if node in parent:
            continue
        parent[node] = came_from
        if node == jid:
            path = [jid]
            step = came_from
            while step != jid:
                path.append(step)
                step = parent[step]
            path.append(jid)
            return path[::-1]
        stack.extend((nxt, node) for nxt in waits_on(node))
    return None


def cycle_error(key: str, path: list[str]) -> ClientError:
    return ClientError(f"custom.{key}: dependency cycle {' -> '.join(path)}")
