"""Mann-Whitney's reach at small n: the smallest p there is, and the repeats that reach alpha."""

from __future__ import annotations

import math

import pytest
from scipy.stats import mannwhitneyu

from labctl.results.power import (
    MIN_SIDE,
    assess,
    repeats_against,
    repeats_per_side,
    smallest_p,
)


@pytest.mark.parametrize("n", range(2, 9))
@pytest.mark.parametrize("m", [2, 3, 5, 8, 12])
def test_the_smallest_p_is_the_exact_one_of_perfectly_separated_samples(n: int, m: int) -> None:
    low, high = list(range(n)), [n + i for i in range(m)]
    exact = mannwhitneyu(low, high, alternative="two-sided", method="exact").pvalue
    assert smallest_p(n, m) == pytest.approx(exact, rel=1e-12)
    assert smallest_p(n, m) == pytest.approx(min(1.0, 2 / math.comb(n + m, n)), rel=1e-12)
    assert smallest_p(n, m) == smallest_p(m, n)


def test_no_outcome_at_all_is_smaller() -> None:
    """Every way to split 3 + 3 ranks: none gives less than the separated one."""
    from itertools import combinations

    values = range(6)
    ps = [
        mannwhitneyu(list(a), [v for v in values if v not in a], alternative="two-sided").pvalue
        for a in combinations(values, 3)
    ]
    assert min(ps) == pytest.approx(smallest_p(3, 3)) == pytest.approx(0.1)


def test_beyond_scipys_exact_range_it_is_what_labctl_would_compute() -> None:
    # both sides over 8: scipy's normal approximation, whose floor is above 2 / C(n+m, n)
    assert smallest_p(9, 9) > 2 / math.comb(18, 9)
    assert smallest_p(9, 9) == pytest.approx(
        mannwhitneyu(range(9), range(9, 18), alternative="two-sided").pvalue
    )


def test_a_side_of_fewer_than_two_has_no_test() -> None:
    assert MIN_SIDE == 2
    assert smallest_p(1, 30) == smallest_p(30, 1) == smallest_p(0, 0) == 1.0


@pytest.mark.parametrize(
    ("alpha", "per_side"), [(0.05, 4), (0.1, 4), (0.2, 3), (0.34, 2), (0.01, 5), (0.001, 7)]
)
def test_repeats_per_side_is_the_first_n_that_reaches_alpha(alpha: float, per_side: int) -> None:
    assert repeats_per_side(alpha) == per_side
    assert smallest_p(per_side, per_side) < alpha <= smallest_p(per_side - 1, per_side - 1) or (
        per_side == MIN_SIDE
    )


def test_repeats_against_a_fixed_baseline() -> None:
    assert repeats_against(3, 0.05) == 5  # 2/C(8,3) = 0.036; 2/C(7,3) = 0.057
    assert repeats_against(8, 0.05) == 2  # 2/C(10,2) = 0.044
    assert repeats_against(2, 0.05) == 8
    assert repeats_against(1, 0.05) is None  # no test with one trial on a side
    # against 9 (scipy's normal approximation beyond 8 a side) p never falls below ~2e-7
    assert repeats_against(9, 1e-9) is None
    assert repeats_per_side(1e-9) is not None


def test_the_note_says_why_and_how_many() -> None:
    three = assess(3, 3, 0.05)
    assert not three.reachable and three.smallest_p == pytest.approx(0.1)
    assert three.note() == (
        "n=3 vs 3: the smallest possible p is 0.1 > alpha 0.05; 4 repeats per side needed "
        "(or 5 against the baseline's 3)"
    )
    six = assess(6, 6, 0.05)
    assert (
        six.reachable and six.note() == "n=6 vs 6: the smallest possible p is 0.00216 < alpha 0.05"
    )
    one = assess(1, 3, 0.05)
    assert one.note().startswith("n=1 vs 3: Mann-Whitney needs 2 trials a side; 4 repeats")
    equal = assess(3, 3, 0.1)  # p < alpha is the rule: 0.1 is not below 0.1
    assert not equal.reachable and "is 0.1 = alpha 0.1; 4 repeats per side needed" in equal.note()
    assert "(or" not in equal.note()  # 4 against 3 reaches 0.1 too: nothing more to say
