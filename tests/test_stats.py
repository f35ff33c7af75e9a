"""Protocol statistics against hand-computed values (formulas and exact counts, not scipy's own output)."""

from __future__ import annotations

import math

import pytest

from gradprom.analysis.stats import paired, spread, wilcoxon_floor

T_975_DF4 = 2.7764451051977987  # the two-sided 95 % point of Student's t with 4 degrees of freedom (tables)


def t4_two_sided_p(t: float) -> float:
    """Two-sided p of Student's t with 4 degrees of freedom, closed form: F(t) = 1/2 + (3/4)·s·(1 − s²/3),
    s = t/√(t² + 4)."""
    s = t / math.sqrt(t * t + 4)
    return 2 * (1 - (0.5 + 0.75 * abs(s) * (1 - s * s / 3)))


def test_spread_is_mean_sample_std_and_t_interval() -> None:
    found = spread([1.0, 2.0, 3.0, 4.0, 5.0, math.nan])  # the NaN (a failed seed) is left out
    assert found.n == 5 and found.mean == 3.0
    assert found.std == pytest.approx(math.sqrt(2.5))  # Σ(x − 3)² / 4 = 10 / 4
    half = T_975_DF4 * math.sqrt(2.5) / math.sqrt(5)
    assert (found.ci_low, found.ci_high) == pytest.approx((3 - half, 3 + half))
    assert math.isnan(spread([1.0]).std) and spread([]).n == 0


def test_paired_t_and_wilcoxon_on_a_small_sample() -> None:
    strategy, baseline = [1.1, 2.2, 2.7, 4.4, 5.5], [1.0, 2.0, 3.0, 4.0, 5.0]  # diffs 0.1, 0.2, −0.3, 0.4, 0.5
    diffs = [0.1, 0.2, -0.3, 0.4, 0.5]
    mean = sum(diffs) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 4)
    found = paired(strategy, baseline)
    assert found.n == 5 and found.mean_diff == pytest.approx(mean)
    assert found.t == pytest.approx(mean / (sd / math.sqrt(5)))
    assert found.p_t == pytest.approx(t4_two_sided_p(found.t), abs=1e-9)
    assert found.d_z == pytest.approx(mean / sd)
    # Wilcoxon: |diffs| rank 1..5, the negative one has rank 3, so W = 3; the subsets of {1..5} with rank sum
    # ≤ 3 are {}, {1}, {2}, {3}, {1,2}: P(W ≤ 3) = 5/32, two-sided p = 10/32
    assert found.w == 3 and found.p_wilcoxon == pytest.approx(10 / 32)
    assert found.significant() == (False, False)


def test_five_seeds_of_one_sign_hit_the_wilcoxon_floor() -> None:
    found = paired([2.0, 3.5, 4.1, 5.0, 6.3], [1.0, 2.0, 3.0, 4.0, 5.0])  # all better, by 1, 1.5, 1.1, 1, 1.3
    assert found.w == 0 and found.p_wilcoxon == pytest.approx(2 / 32) == wilcoxon_floor(5)
    assert found.p_t < 0.001  # t = 1.18 / (0.217/√5) ≈ 12.2, far past the 95 % point
    assert found.significant() == (True, False)


def test_identical_samples_and_missing_pairs() -> None:
    same = paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.mean_diff == 0 and same.p_t == 1.0 and same.p_wilcoxon == 1.0
    assert paired([1.0, math.nan, 3.0, 4.0], [0.5, 2.0, 2.5, 3.0]).n == 3  # the NaN pair is dropped
    assert math.isnan(paired([1.0], [0.0]).p_t)
