"""Summaries that small, noisy samples can bear: median, IQR, Mann-Whitney U, and the smallest
change a comparison of such samples can resolve (docs/reuseport.md, docs/nightly.md)."""

from __future__ import annotations

import math
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


def min_p(n: int, m: int) -> float:
    """The smallest two-sided p Mann-Whitney can give for n against m values (no ties)."""
    return min(1.0, 2 / math.comb(n + m, n))


def trial_resolution(
    tonight: Sequence[float],
    base: Sequence[float],
    center: float,
    direction: str,
    alpha: float,
) -> float | None:
    """The smallest change (a fraction of `center`) in the bad direction that Mann-Whitney
    tells from `base` at `alpha`, for a night spread like `tonight`; None if none can."""
    if len(tonight) < 2 or len(base) < 2 or min_p(len(tonight), len(base)) >= alpha:
        return None
    mid = statistics.median(tonight)
    if mid <= 0 or center <= 0:
        return None

    def flagged(step: float) -> bool:
        level = center * (1 - step if direction == "higher" else 1 + step)
        p = mann_whitney_p([v / mid * level for v in tonight], base)
        return p is not None and p < alpha

    low, high = 0.0, 0.99 if direction == "higher" else 99.0
    if not flagged(high):
        return None
    for _ in range(14):
        mid_step = (low + high) / 2
        low, high = (low, mid_step) if flagged(mid_step) else (mid_step, high)
    return high
