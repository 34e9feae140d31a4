"""Small statistics helpers shared by the measurements."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

MB = 1_000_000  #: throughput unit: 10**6 bytes
MiB = 1 << 20


def percentile(ascending: Sequence[float], p: float) -> float:
    """Nearest-rank ``p``-th percentile of an ascending sequence (NaN if empty)."""
    if not ascending:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(ascending)))
    return ascending[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median (NaN if empty)."""
    return statistics.median(values) if values else math.nan


def ratio(value: float, ceiling: float) -> float:
    """``value / ceiling``; NaN when either is missing or the ceiling is 0."""
    if not ceiling or math.isnan(value) or math.isnan(ceiling):
        return math.nan
    return value / ceiling
