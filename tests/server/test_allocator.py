"""server/allocator.py: free heap pages go back to the kernel within a second of commits,
and an idle server does not wake for it.

The task's timing runs under trio's MockClock against an op log stand-in with a counting
trim; what glibc's `malloc_trim` does to the heap runs in a fresh interpreter (RSS is the
process's)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import trio
import trio.testing

from faktory_py.server import allocator


class Log:
    """The two things the task asks of an op log: the last commit, and waiting for one."""

    def __init__(self) -> None:
        self.appended = 0
        self._written = trio.Event()

    def commit(self) -> None:
        self.appended += 1
        self._written.set()
        self._written = trio.Event()

    async def wait_written(self, sequence: int) -> None:
        while self.appended < sequence:
            await self._written.wait()


async def test_trims_once_a_second_while_commits_come_in_and_never_when_idle(
        monkeypatch: Any, autojump_clock: trio.testing.MockClock) -> None:
    trims: list[float] = []
    monkeypatch.setattr(allocator, "malloc_trim", lambda: lambda pad: trims.append(trio.current_time()) or 1)
    log = Log()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(allocator.release_free_heap, log)
        await trio.sleep(3600)
        assert trims == []  # idle: not even woken
        start = trio.current_time()
        for _ in range(25):  # 2.5 s of commits
            log.commit()
            await trio.sleep(0.1)
        await trio.sleep(3600)
        # a second after the first commit, then a second after the first commit after a trim
        assert [round(t - start, 1) for t in trims] == [1.0, 2.1, 3.2]
        nursery.cancel_scope.cancel()


SCRIPT = """
from faktory_py.server.allocator import malloc_trim

def rss():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) // 1024

kept, transient = [], []
for _ in range(1000):  # chunks of queued jobs between large transient blocks, as a PUSHB load leaves them
    kept.append(b"k" * 48_000)
    transient.append(bytearray(70_000))
transient.clear()
before = rss()
malloc_trim()(0)
print(before - rss())
"""


@pytest.mark.skipif(allocator.malloc_trim() is None, reason="glibc only")
def test_malloc_trim_gives_back_the_pages_of_holes_between_live_blocks() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    assert int(done.stdout) > 30  # MiB: most of the ~68 MiB of holes
