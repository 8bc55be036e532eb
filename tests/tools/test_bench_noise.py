"""bench/report.py's noise gauge: faktory_py against itself (timings on / off) under R1."""

from __future__ import annotations

from bench.report import self_noise_warning


def _run(*ratios: float) -> dict[str, object]:
    return {"timings_cost": {f"r1_t{t}.jobs_per_s": {"value": r} for t, r in zip((10, 50, 200), ratios)}
            | {"b_push.jobs_per_s": {"value": 0.5}}}  # a pipelined row does not count


def test_a_run_that_measures_itself_within_ten_percent_carries_no_noise_line() -> None:
    assert self_noise_warning(_run(1.02, 0.95, 1.09)) is None
    assert self_noise_warning({}) is None  # timings off did not run


def test_a_run_that_strays_further_says_so_with_its_spread() -> None:
    warning = self_noise_warning(_run(1.26, 0.88, 1.05))
    assert warning is not None and "0.88–1.26× itself" in warning
