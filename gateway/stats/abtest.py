"""The statistics of an A/B test: is variant B better than A, by how much, how surely.

Two comparisons, both computed by kept libraries rather than by hand:

* **Per-user means** (coupons used per claimer, GMV per user): Welch's t-test
  (``scipy.stats.ttest_ind(..., equal_var=False)``), which does not assume both variants
  spread alike, with scipy's confidence interval of the difference of means on Welch's
  degrees of freedom.
* **Rates** (claim rate, use rate): the two-proportion z-test with the pooled proportion
  (``statsmodels.stats.proportion.proportions_ztest``), the textbook test of "same rate",
  and the Wald interval of the difference (``confint_proportions_2indep``, method
  ``wald``). Near the significance edge the pooled test and the unpooled interval can
  disagree by a hair; the verdict follows the p-value.

Every difference is B minus A. A result is significant when p < alpha (0.05 by default,
the design documents' threshold); then the better variant is the winner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

ALPHA = 0.05


class Comparison(msgspec.Struct, rename="camel"):
    """B against A on one figure."""

    metric: str
    test: str  # "welch_t" or "two_proportion_z"
    a: float  # A's mean or rate
    b: float
    difference: float  # b - a
    relative: float | None  # (b - a) / a; None when a is 0
    ci_low: float | None  # confidence interval of the difference (None: not computable)
    ci_high: float | None
    confidence: float
    statistic: float | None
    p_value: float | None
    significant: bool
    winner: str | None  # "a", "b", or None when not significant
    n_a: int
    n_b: int


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _verdict(metric: str, test: str, a: float, b: float, low: float | None, high: float | None,
             statistic: float | None, p: float | None, alpha: float, n_a: int,
             n_b: int) -> Comparison:  # fmt: skip
    significant = p is not None and p < alpha
    winner = ("b" if b > a else "a") if significant and a != b else None
    return Comparison(
        metric=metric,
        test=test,
        a=a,
        b=b,
        difference=b - a,
        relative=(b - a) / a if a else None,
        ci_low=low,
        ci_high=high,
        confidence=1 - alpha,
        statistic=statistic,
        p_value=p,
        significant=significant,
        winner=winner,
        n_a=n_a,
        n_b=n_b,
    )


def welch(metric: str, a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> Comparison:
    """Welch's t-test of mean(b) - mean(a), with its confidence interval.

    Fewer than two values on a side, or no spread on either, leaves nothing to test:
    the means are given, the test's figures are None and the result is not significant.
    """
    mean_a = sum(a) / len(a) if a else 0.0
    mean_b = sum(b) / len(b) if b else 0.0
    if len(a) < 2 or len(b) < 2 or (min(a) == max(a) and min(b) == max(b)):
        return _verdict(metric, "welch_t", mean_a, mean_b, None, None, None, None, alpha,
                        len(a), len(b))  # fmt: skip
    result = stats.ttest_ind(b, a, equal_var=False)
    interval = result.confidence_interval(1 - alpha)
    return _verdict(
        metric,
        "welch_t",
        mean_a,
        mean_b,
        _finite(interval.low),
        _finite(interval.high),
        _finite(result.statistic),
        _finite(result.pvalue),
        alpha,
        len(a),
        len(b),
    )


def two_proportions(
    metric: str, hits_a: int, n_a: int, hits_b: int, n_b: int, alpha: float = ALPHA
) -> Comparison:
    """The pooled two-proportion z-test of rate(b) - rate(a), with the Wald interval.

    An empty side, or a pooled rate of 0 or 1 (nothing varies), leaves nothing to test.
    """
    if not 0 <= hits_a <= n_a or not 0 <= hits_b <= n_b:
        raise ValueError("hits must lie between 0 and the trials")
    rate_a = hits_a / n_a if n_a else 0.0
    rate_b = hits_b / n_b if n_b else 0.0
    pooled = (hits_a + hits_b) / (n_a + n_b) if n_a + n_b else 0.0
    if n_a == 0 or n_b == 0 or pooled in (0.0, 1.0):
        return _verdict(metric, "two_proportion_z", rate_a, rate_b, None, None, None, None,
                        alpha, n_a, n_b)  # fmt: skip
    statistic, p_value = proportions_ztest([hits_b, hits_a], [n_b, n_a])
    low, high = confint_proportions_2indep(
        hits_b, n_b, hits_a, n_a, method="wald", compare="diff", alpha=alpha
    )
    return _verdict(
        metric,
        "two_proportion_z",
        rate_a,
        rate_b,
        _finite(low),
        _finite(high),
        _finite(statistic),
        _finite(p_value),
        alpha,
        n_a,
        n_b,
    )
