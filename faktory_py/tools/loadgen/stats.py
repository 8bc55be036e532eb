"""Percentiles of samples and the median and spread of repeated measurements."""

from __future__ import annotations

import math
import statistics
from typing import Any


def percentile(sorted_samples: list[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted samples (nan when there are none)."""
    if not sorted_samples:
        return math.nan
    rank = math.ceil(pct / 100 * len(sorted_samples))
    return sorted_samples[min(len(sorted_samples), max(1, rank)) - 1]


def latency_summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {"samples": len(ordered), "p50_ms": percentile(ordered, 50), "p99_ms": percentile(ordered, 99),
            "p999_ms": percentile(ordered, 99.9), "max_ms": ordered[-1] if ordered else math.nan}


def spread(values: list[float]) -> dict[str, Any]:
    """Median of repeated measurements, their range, and the range relative to the median."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return {"median": None, "min": None, "max": None, "n": 0, "rel_spread": None}
    median = statistics.median(finite)
    rel = (max(finite) - min(finite)) / median if median else None
    return {"median": median, "min": min(finite), "max": max(finite), "n": len(finite), "rel_spread": rel}
