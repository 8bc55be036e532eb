"""The process's file-descriptor limit, and the share of it client sockets may use.

A server that runs out of descriptors fails wherever the next one is needed: the journal's
fsync, a compaction's snapshot file, the web UI. So, like Go's runtime, the CLI raises the
soft `RLIMIT_NOFILE` to the hard limit at start, and the command port keeps `reserve`
descriptors out of the clients' reach (server/tcp.py `Connections`): at the limit a new
connection is refused, never the server's own work.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("faktory_py.fdlimit")

#: descriptors kept for the journal, compaction, the web UI, worker threads and the like
MIN_RESERVE = 64
_UNLIMITED = 1 << 20


def raise_soft_limit() -> tuple[int, int]:
    """Raise the soft limit to the hard one (where the kernel allows); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit above fs.nr_open
            log.warning("could not raise the open-file limit from %s to %s: %s", soft, hard, exc)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    log.info("open-file limit: %s (hard %s)", _show(soft), _show(hard))
    return soft, hard


def socket_budget() -> int:
    """How many client sockets the command port may hold under the current soft limit:
    all but a reserve of max(64, 1/16 of the limit)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = _UNLIMITED
    return max(soft - max(MIN_RESERVE, soft // 16), 1)


def _show(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
