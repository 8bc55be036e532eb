"""A tool a test needs (a client harness, the real Faktory): there, or skipped with the reason.

Under CI (`CI=true`) a missing or broken tool is a failure, never a skip: the conformance
matrix must not silently shrink.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


@dataclass(frozen=True)
class Toolchain:
    name: str
    path: str = ""  # what to run
    problem: str = ""  # why it cannot run; empty when it can

    def require(self) -> str:
        if self.problem:
            if under_ci():
                pytest.fail(f"{self.name} unavailable under CI: {self.problem}", pytrace=False)
            pytest.skip(f"{self.name} unavailable: {self.problem}")
        return self.path
