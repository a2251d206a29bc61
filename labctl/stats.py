"""Summaries that small, noisy samples can bear: median, IQR, Mann-Whitney U (docs/reuseport.md)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def figure(value: float) -> str:
    """A measured value as labctl prints it: whole with thousands separators from 100 up
    (224,447), else three significant digits (0.0827, 5.3)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    q1: float
    q3: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("no values to summarize")
    if len(values) == 1:
        v = float(values[0])
        return Summary(1, v, v, v)
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(len(values), statistics.median(values), q1, q3)


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value that `a` and `b` come from one distribution; None if too few."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import mannwhitneyu  # imported late: scipy costs ~0.3 s to import

    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
