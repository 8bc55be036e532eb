"""The bench's pinned rows keep the load generator, and every process it starts, on one CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.machine import load_cpu, pinned_to

#: a child that starts a grandchild, as the fleet program starts its workers: both print their CPUs
_TREE = ("import os, subprocess, sys; print(sorted(os.sched_getaffinity(0)));"
         "subprocess.run([sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'])")


def test_a_pinned_load_generator_and_its_children_run_on_that_cpu_only() -> None:
    cpu = load_cpu()
    if cpu is None:
        pytest.skip("one usable CPU: the bench runs no pinned rows")
    out = subprocess.run([sys.executable, "-c", _TREE], preexec_fn=pinned_to(cpu), capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out == [f"[{cpu}]", f"[{cpu}]"]
    assert cpu == max(os.sched_getaffinity(0))  # the last CPU this process may use


def test_an_unpinned_load_generator_keeps_every_cpu() -> None:
    assert pinned_to(None) is None
    out = subprocess.run([sys.executable, "-c", "import os; print(len(os.sched_getaffinity(0)))"],
                         preexec_fn=pinned_to(None), capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout) == len(os.sched_getaffinity(0))
