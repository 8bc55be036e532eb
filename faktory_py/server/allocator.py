"""Free heap pages given back to the kernel: what keeps a full server's memory its jobs'.

A server's large blocks are mostly transient: socket reads, a PUSHB line and the jobs
decoded from it, a journal write. glibc serves them from the heap (once a large block has
been freed it raises its mmap threshold), between the long-lived chunks of queued jobs
(store/job_queue.py), and frees them there; the heap only ever shrinks from its top, so the
pages of those holes stay resident. Measured with 1,000,000 jobs queued by PUSHB: 36 bytes
per job of free heap on top of the jobs' 196. glibc's `malloc_trim` hands such pages back
(`MADV_DONTNEED`: they are mapped again, zeroed, if a later block uses them), as jemalloc
purges its free pages in the background; we call it once a second while commits come in,
never while the server is idle. A call walks the free blocks of the heap: under a
millisecond with a million jobs queued.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import trio

from ..store.oplog import OpLog
from .durability import JournalFailed

#: seconds between two trims while commits come in
INTERVAL = 1.0


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim(pad)`, None where the C library has none.

    Looked up among the symbols the process has loaded already (the C library's among
    them), not by `ctypes.util.find_library`, which runs `ldconfig` in a child process: a
    server should not fork at start, and a benchmark taking the server's processes then
    could count a child that is gone a moment later.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = (ctypes.c_size_t,)
    return trim  # type: ignore[no-any-return]


async def release_free_heap(oplog: OpLog, interval: float = INTERVAL) -> None:
    """Background task: after each commit, within `interval`, give the heap's free pages
    back; waits without waking while nothing is committed. Returns at once without glibc."""
    trim = malloc_trim()
    if trim is None:
        return
    while True:
        try:
            await oplog.wait_written(oplog.appended + 1)
        except JournalFailed:  # the server stops
            return
        await trio.sleep(interval)
        trim(0)
