"""Run-to-run noise: is tonight outside what the history's own night-to-night spread explains?

A lab machine drifts between runs more than the trials of one run spread (docs/nightly.md:
on a 2-core box, clean nights 13-22% apart while one night's trials agree within a few %).
A test that pools every trial as an independent draw turns that drift into significance.
So each past run counts once, by its median:

- the history's center is the median of the past runs' medians (tonight's ratio is to it);
- its run-to-run spread is the robust standard deviation (1.4826 x MAD, corrected for few
  runs) of ln(run median), and never less than the sampling error of one run's median
  (its trials' spread over sqrt(n)): a history of three equal nights does not make every
  small change significant;
- tonight is outside the noise when |ln(tonight / center)| / spread exceeds a limit: the
  Student-t prediction bound for one more run, t(1 - alpha/2, k-1) x sqrt(1 + 1/k), so a
  short history needs a larger step (conbench's z-score, with the uncertainty of a small
  history said out loud).

With fewer than three past runs the spread between runs is not known at all: it is then taken
to be as wide as the threshold (a box can wander that much between nights without anything
changing), with the three-run limit: at the defaults only a step beyond x0.21 or x4.7 is flagged
in a history's first two nights.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

MIN_RUNS = 3  # past runs needed before the run-to-run spread is known
NORMAL_MAD = 1.4826  # MAD x this estimates a normal distribution's standard deviation

# The MAD of k normal draws underestimates sigma for small k; x this makes it unbiased.
# Computed by simulation (10^6 samples each; tests/unit/test_noise.py checks them).
_MAD_CORRECTION = {
    3: 1.488, 4: 1.361, 5: 1.216, 6: 1.190, 7: 1.138, 8: 1.127, 9: 1.101, 10: 1.095,
    11: 1.080, 12: 1.077,
}  # fmt: skip


def mad_correction(k: int) -> float:
    if k in _MAD_CORRECTION:
        return _MAD_CORRECTION[k]
    return k / (k - 0.8) if k > 12 else math.nan


@lru_cache(maxsize=256)
def limit(k: int, alpha: float) -> float:
    """|z| beyond which a new run is outside a k-run history at two-sided level `alpha`."""
    from scipy.stats import t  # imported late: scipy costs ~0.3 s to import

    return float(t.ppf(1 - alpha / 2, k - 1)) * math.sqrt(1 + 1 / k)


def sampling_error(values: Sequence[float]) -> float:
    """Standard error of ln(median) of `values`: their relative spread (IQR / 1.349, a
    normal sigma) x 1.2533 / sqrt(n); 0 for fewer than 2 values."""
    if len(values) < 2:
        return 0.0
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    if med <= 0:
        return 0.0
    return 1.2533 * (q3 - q1) / 1.349 / med / math.sqrt(len(values))


@dataclass(frozen=True)
class RunNoise:
    runs: int  # past runs with a median
    center: float  # the median of their medians
    spread: float  # run-to-run sd of ln(median): max(between runs, within a run)
    between: float  # the robust spread of the past medians (assumed in a short history)
    within: float  # the sampling error of one run's median: the spread's floor
    z: float  # ln(tonight / center) / spread
    limit: float  # |z| beyond this: outside the noise

    @property
    def known(self) -> bool:
        """Whether the history is long enough to know its run-to-run spread."""
        return self.runs >= MIN_RUNS

    @property
    def outside(self) -> bool:
        return abs(self.z) > self.limit

    def resolvable(self, direction: str) -> float:
        """The smallest change in the bad direction (a fraction) this test can flag."""
        step = self.limit * self.spread
        return 1 - math.exp(-step) if direction == "higher" else math.exp(step) - 1

    def describe(self) -> str:
        if not self.known:
            return (
                f"run-to-run spread unknown ({self.runs} of {MIN_RUNS} runs), taken as "
                f"{self.spread * 100:.1f}%: z={self.z:+.1f} (limit {self.limit:.1f})"
            )
        return (
            f"run-to-run: z={self.z:+.1f} (limit {self.limit:.1f}, spread "
            f"{self.spread * 100:.1f}% over {self.runs} runs)"
        )


def run_noise(
    tonight: Sequence[float], past: Sequence[Sequence[float]], alpha: float, unknown: float
) -> RunNoise | None:
    """Tonight's values against the past runs' values (one sequence per run, those with a
    value only); None without a past run, or when a median is not positive. `unknown`: the
    run-to-run spread assumed while fewer than MIN_RUNS past runs say what it is."""
    runs = [list(p) for p in past if p]
    if not tonight or not runs:
        return None
    medians = [statistics.median(p) for p in runs]
    current = statistics.median(tonight)
    if min(medians) <= 0:
        return None
    logs = [math.log(m) for m in medians]
    center = math.log(statistics.median(medians))  # the same center the ratio is taken to
    k = len(logs)
    between = (
        NORMAL_MAD * statistics.median(abs(x - center) for x in logs) * mad_correction(k)
        if k >= MIN_RUNS
        else math.log1p(unknown)
    )
    within = statistics.median([sampling_error(p) for p in [*runs, list(tonight)]])
    spread = max(between, within)
    step = math.log(current) - center if current > 0 else -math.inf
    # every run and trial alike (spread 0): any step at all is outside
    z = step / spread if spread > 0 else 0.0 if step == 0 else math.copysign(math.inf, step)
    bound = limit(max(k, MIN_RUNS), alpha)
    return RunNoise(k, math.exp(center), spread, between, within, z, bound)
