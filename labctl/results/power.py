"""Can the trial test ever say yes? Mann-Whitney's smallest p for n trials against m.

Mann-Whitney's p is a rank statistic: with n trials against m and no ties, the most extreme
outcome (every trial of one side beyond every trial of the other) gives the smallest p there
is, two-sided 2 / C(n + m, n). Three repeats against three give 0.1 at best, so at alpha 0.05
no change whatever can be significant, and a verdict that says "not significant" or "within
noise" would claim what the test could never have found (issue 17). So every judging summary
asks this module first and, when alpha is out of reach, says so and how many repeats reach it.

The smallest p is taken from the test as labctl runs it (`labctl.stats.mann_whitney_p`, two-
sided, scipy's method="auto") on perfectly separated samples: exactly 2 / C(n + m, n) where
scipy computes the exact distribution (either side 8 or fewer), its normal approximation
beyond that, whose smallest p is larger. With tied values that approximation can print a
smaller p than the exact test allows; labctl does not trust it where the exact one says no.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from labctl.stats import figure, mann_whitney_p

MIN_SIDE = 2  # mann_whitney_p gives no p with fewer trials on a side
_LAST_SMALL = 9  # up to here searched one by one (scipy's exact/normal switch lies below)
_CAP = 1 << 20  # beyond this many repeats: "never"


@lru_cache(maxsize=1024)
def smallest_p(n: int, m: int) -> float:
    """The smallest two-sided p Mann-Whitney can give for n values against m, no ties; 1.0
    when a side has fewer than MIN_SIDE (no test at all)."""
    if n < MIN_SIDE or m < MIN_SIDE:
        return 1.0
    p = mann_whitney_p([float(i) for i in range(n)], [float(n + i) for i in range(m)])
    return 1.0 if p is None else p


def _first(reaches: Callable[[int], bool]) -> int | None:
    """The smallest k >= MIN_SIDE with reaches(k); None below _CAP. One by one while scipy
    may switch methods (where the smallest p is not monotone in k), then by doubling and
    bisection (it falls with k from there on)."""
    for k in range(MIN_SIDE, _LAST_SMALL + 1):
        if reaches(k):
            return k
    low, high = _LAST_SMALL, _LAST_SMALL * 2
    while not reaches(high):
        low, high = high, high * 2
        if high > _CAP:
            return None
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


@lru_cache(maxsize=256)
def repeats_per_side(alpha: float) -> int | None:
    """The fewest trials, the same number on each side, that can reach p < alpha."""
    return _first(lambda k: smallest_p(k, k) < alpha)


@lru_cache(maxsize=1024)
def repeats_against(m: int, alpha: float) -> int | None:
    """The fewest trials that can reach p < alpha against a fixed baseline of m; None when
    none can (a baseline of fewer than 2, or one too small for alpha however many)."""
    if m < MIN_SIDE:
        return None
    return _first(lambda k: smallest_p(k, m) < alpha)


@dataclass(frozen=True)
class Power:
    """What the trial test can reach at these sample sizes."""

    n: int  # the judged run's valid trials (tonight, run B)
    m: int  # the baseline's (the history's pooled trials, run A)
    alpha: float
    smallest_p: float  # 1.0 when a side has fewer than MIN_SIDE
    per_side: int | None  # equal repeats per side that can reach alpha
    against_baseline: int | None  # trials that can reach alpha against the baseline's m

    @property
    def reachable(self) -> bool:
        """Whether any outcome at all could be significant (p < alpha, as the rule asks)."""
        return self.smallest_p < self.alpha

    def note(self) -> str:
        """ "n=3 vs 3: the smallest possible p is 0.1 > alpha 0.05; 4 repeats per side
        needed (or 5 against the baseline's 3)"."""
        head = f"n={self.n} vs {self.m}"
        if self.n < MIN_SIDE or self.m < MIN_SIDE:
            said = f"{head}: Mann-Whitney needs {MIN_SIDE} trials a side"
        else:
            sign = "<" if self.reachable else ">" if self.smallest_p > self.alpha else "="
            best = figure(self.smallest_p)
            said = f"{head}: the smallest possible p is {best} {sign} alpha {self.alpha:g}"
        if self.reachable:
            return said
        if self.per_side is None:
            return f"{said}; no number of repeats reaches it"
        need = f"{said}; {self.per_side} repeats per side needed"
        if self.against_baseline is not None and self.against_baseline != self.per_side:
            need += f" (or {self.against_baseline} against the baseline's {self.m})"
        return need


def assess(n: int, m: int, alpha: float) -> Power:
    """The trial test's reach for n trials against a baseline of m at level alpha."""
    return Power(n, m, alpha, smallest_p(n, m), repeats_per_side(alpha), repeats_against(m, alpha))
