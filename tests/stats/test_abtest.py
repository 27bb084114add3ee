"""The A/B statistics against figures worked out by hand, and against scipy/statsmodels
called directly on the same data."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from gateway.stats.abtest import two_proportions, welch

A = [1.0, 2.0, 3.0, 4.0]
B = [2.0, 3.0, 5.0, 7.0, 9.0]


def test_welch_matches_the_hand_computed_fixture():
    # mean A 2.5, sample variance 5/3; mean B 5.2, variance 32.8/4 = 8.2
    # se^2 = (5/3)/4 + 8.2/5 = 2.056667; t = 2.7 / sqrt(se^2) = 1.882703
    # df = se^4 / ((5/12)^2 / 3 + 1.64^2 / 4) = 5.792208 (Welch-Satterthwaite)
    # 95 % interval: 2.7 -/+ t(0.975, 5.792208) * se = (-0.839879, 6.239879)
    se = math.sqrt((5 / 3) / 4 + 8.2 / 5)
    assert se == pytest.approx(1.434108, abs=1e-6)
    result = welch("used_per_user", A, B)
    assert (result.a, result.b) == (2.5, 5.2)
    assert result.difference == pytest.approx(2.7)
    assert result.relative == pytest.approx(2.7 / 2.5)
    assert result.statistic == pytest.approx(1.882703, abs=1e-6)
    assert result.ci_low == pytest.approx(-0.839879, abs=1e-6)
    assert result.ci_high == pytest.approx(6.239879, abs=1e-6)
    assert result.p_value == pytest.approx(0.110496, abs=1e-6)
    assert (result.significant, result.winner, result.n_a, result.n_b) == (False, None, 4, 5)


def test_welch_matches_scipy_on_random_data():
    rng = random.Random(11)
    a = [rng.gauss(100, 30) for _ in range(400)]
    b = [rng.gauss(115, 45) for _ in range(300)]
    direct = stats.ttest_ind(b, a, equal_var=False)
    interval = direct.confidence_interval(0.95)
    result = welch("gmv_per_user", a, b)
    assert result.statistic == pytest.approx(direct.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(direct.pvalue, rel=1e-12)
    assert result.ci_low == pytest.approx(interval.low, rel=1e-12)
    assert result.ci_high == pytest.approx(interval.high, rel=1e-12)
    assert result.significant
    assert result.winner == "b"


def test_welch_with_too_little_data_is_not_significant():
    assert welch("m", [1.0], [2.0, 3.0]).p_value is None
    flat = welch("m", [1.0, 1.0], [2.0, 2.0])
    assert (flat.a, flat.b, flat.p_value, flat.significant) == (1.0, 2.0, None, False)
    empty = welch("m", [], [])
    assert (empty.a, empty.b, empty.significant) == (0.0, 0.0, False)


def z_by_hand(hits_a, n_a, hits_b, n_b):
    pooled = (hits_a + hits_b) / (n_a + n_b)
    z = (hits_b / n_b - hits_a / n_a) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p = 2 * (1 - NormalDist().cdf(abs(z)))
    se = math.sqrt(
        hits_a / n_a * (1 - hits_a / n_a) / n_a + hits_b / n_b * (1 - hits_b / n_b) / n_b
    )
    half = NormalDist().inv_cdf(0.975) * se
    diff = hits_b / n_b - hits_a / n_a
    return z, p, diff - half, diff + half


def test_two_proportions_match_the_hand_computed_fixture():
    # A 30/1000, B 45/1000: pooled 0.0375, se sqrt(0.0375*0.9625*0.002) = 0.0084963,
    # z = 0.015 / 0.0084963 = 1.765470, p = 0.077485; Wald interval 0.015 -/+ 1.959964 *
    # sqrt(0.03*0.97/1000 + 0.045*0.955/1000) = (-0.001640, 0.031640)
    result = two_proportions("claim_rate", 30, 1000, 45, 1000)
    assert (result.a, result.b) == (0.03, 0.045)
    assert result.statistic == pytest.approx(1.765470, abs=1e-6)
    assert result.p_value == pytest.approx(0.077485, abs=1e-6)
    assert result.ci_low == pytest.approx(-0.001640, abs=1e-6)
    assert result.ci_high == pytest.approx(0.031640, abs=1e-6)
    assert not result.significant
    assert result.winner is None
    assert (result.statistic, result.p_value, result.ci_low, result.ci_high) == pytest.approx(
        z_by_hand(30, 1000, 45, 1000), rel=1e-9
    )


def test_a_significant_rate_difference_names_the_winner():
    # A 150/1000 against B 100/1000: z = -0.05 / sqrt(0.125*0.875*0.002) = -3.380617
    result = two_proportions("use_rate", 150, 1000, 100, 1000)
    assert result.statistic == pytest.approx(-3.380617, abs=1e-6)
    assert result.p_value == pytest.approx(z_by_hand(150, 1000, 100, 1000)[1], rel=1e-9)
    assert result.p_value is not None
    assert result.p_value < 0.05
    assert (result.significant, result.winner) == (True, "a")
    assert result.ci_high is not None
    assert result.ci_high < 0
    direct = proportions_ztest([100, 150], [1000, 1000])
    assert (result.statistic, result.p_value) == pytest.approx(tuple(direct), rel=1e-12)


def test_two_proportions_without_variation_or_data_test_nothing():
    assert two_proportions("r", 0, 100, 0, 100).p_value is None
    assert two_proportions("r", 5, 5, 7, 7).p_value is None
    assert two_proportions("r", 0, 0, 3, 10).significant is False
    with pytest.raises(ValueError, match="hits"):
        two_proportions("r", 11, 10, 1, 10)
