"""Means with 95 % confidence intervals (Student's t), for per-item evaluation summaries."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided 95 % quantiles of Student's t for 1-30 degrees of freedom; beyond, the normal's.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(df: int) -> float:
    if df < 1:
        return math.nan
    if df <= len(_T95):
        return _T95[df - 1]
    return 1.96 + 2.4 / df  # within 0.01 of the true quantile above 30 degrees of freedom


@dataclass(frozen=True, slots=True)
class MeanCI:
    mean: float | None
    low: float | None
    high: float | None
    n: int

    def to_json(self) -> dict[str, object]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {"mean": r(self.mean), "ci95": [r(self.low), r(self.high)], "n": self.n}


def mean_ci(values: Sequence[float]) -> MeanCI:
    """The mean and its 95 % interval; one value has no interval, none has no mean."""
    n = len(values)
    if n == 0:
        return MeanCI(None, None, None, 0)
    mean = statistics.fmean(values)
    if n == 1:
        return MeanCI(mean, None, None, 1)
    half = t95(n - 1) * statistics.stdev(values) / math.sqrt(n)
    return MeanCI(mean, mean - half, mean + half, n)
