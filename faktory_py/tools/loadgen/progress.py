"""A one-line progress display for long runs (only on a terminal, on stderr)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`update(done, elapsed)` redraws `label: done/total rate elapsed` at most 4 times a second."""

    def __init__(self, label: str, total: int, unit: str = "jobs", stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label, self.total, self.unit = label, total, unit
        self._last = 0.0
        self._width = 0

    def update(self, done: int, elapsed: float) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.25:
            return
        self._last = now
        rate = done / elapsed if elapsed > 0 else 0.0
        pct = f" {100 * done / self.total:5.1f}%" if self.total else ""
        text = f"{self.label}: {done:,}/{self.total:,} {self.unit}{pct}  {rate:,.0f}/s  {elapsed:5.1f}s"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def note(self, text: str) -> None:
        """A line that stays (the progress line is redrawn after it)."""
        self.close()
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()
