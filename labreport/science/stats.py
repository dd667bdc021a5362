"""Pure statistics for the conclusions: intervals, exact tests, multiple-comparison correction.

No I/O, no numpy, no scipy: every function is a few lines of the standard library, and
tests/science/test_stats.py checks each against values from textbooks or computed once with scipy and
written down. Probabilities are plain floats in [0, 1]; accuracies are fractions, not percent.

- wilson_interval, binom_sf: a success rate k/n (how often BN-less ResNet-110 trains).
- binom_sf, binom_cdf: binomial tails through the regularised incomplete beta function, exact
  and fast at any n (a McNemar test on 10,000 test images has thousands of discordant pairs).
- mcnemar_exact: two classifiers scored on the same test images; only the images where exactly one
  of them is right (the discordant pairs) carry information (McNemar 1947; the exact form is a
  two-sided binomial test of b against b + c at 1/2).
- welch_t: two sets of seeds (unequal variances; Welch 1947), with Student's t distribution
  through the regularised incomplete beta function.
- holm: the step-down correction for m comparisons (Holm 1979): controls the family-wise error
  rate at alpha without assuming the tests are independent.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

POWER = 0.8  # the power at which a "detectable difference" is quoted (the usual 80 %)


def z_two_sided(confidence: float) -> float:
    """Two-sided normal quantile, e.g. 1.96 for 0.95."""
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (good for small n and k = 0 or n)."""
    if n == 0:
        return 0.0, 1.0
    z = z_two_sided(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the exact one-sided p-value against 'rate <= p'.
    The tail is the regularised incomplete beta I_p(k, n - k + 1): exact for any n, microseconds
    per call (a sum of n terms overflows a float from n ~ 1,030 and takes seconds at 10^5)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return min(1.0, betainc(k, n - k + 1, p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p): I_{1-p}(n - k, k + 1)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, betainc(n - k, k + 1, 1.0 - p))


def smallest_rejecting_k(n: int, p: float, alpha: float) -> int | None:
    """The fewest successes out of n that make binom_sf < alpha (None: no k can, n is too small).
    binom_sf falls as k grows: a bisection, so it answers at any n."""
    if binom_sf(n, n, p) >= alpha:
        return None
    lo, hi = 0, n  # binom_sf(lo) >= alpha (it is 1 at k = 0 > alpha), binom_sf(hi) < alpha
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if binom_sf(mid, n, p) < alpha else (mid, hi)
    return hi


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value. b: images only the first classifier gets right, c: only
    the second. Under 'both are equally accurate' each discordant image goes either way with
    probability 1/2, so p = 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1."""
    if b + c == 0:
        return 1.0
    return min(1.0, 2 * binom_cdf(min(b, c), b + c, 0.5))


def discordant(first: str, second: str, labels: str) -> tuple[int, int]:
    """(b, c) for two prediction strings on the same labelled images: b = images only the first
    gets right, c = only the second (the strings hold one character per image, see trainer.digits)."""
    if not len(first) == len(second) == len(labels):
        raise ValueError("predictions and labels must cover the same images")
    b = c = 0
    for p, q, t in zip(first, second, labels):
        if (p == t) != (q == t):
            if p == t:
                b += 1
            else:
                c += 1
    return b, c


# --------------------------------------------------------------------------------------------
# Student's t through the regularised incomplete beta function
# --------------------------------------------------------------------------------------------
MAX_TERMS = 20_000  # of the continued fraction: it needs ~sqrt(max(a, b)) of them, ~1,400 at a = 10^6


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz; converges for
    x < (a + 1) / (a + b + 2), which betainc arranges by symmetry, in O(sqrt(max(a, b))) terms)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, MAX_TERMS):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom (df may be fractional: Welch)."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


@dataclass(frozen=True)
class Welch:
    t: float
    df: float
    p: float  # two-sided
    se: float  # standard error of the difference of the means


def welch_t(a: Sequence[float], b: Sequence[float]) -> Welch | None:
    """Welch's unequal-variance t-test of mean(a) = mean(b); None unless both have >= 2 values."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if se == 0.0:  # identical seeds on both sides: equal means are no evidence, different ones are
        return Welch(0.0 if diff == 0 else math.copysign(math.inf, diff), math.inf, 1.0 if diff == 0 else 0.0, 0.0)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = diff / se
    return Welch(t, df, t_two_sided_p(t, df), se)


# --------------------------------------------------------------------------------------------
# Several comparisons at once
# --------------------------------------------------------------------------------------------
def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order: sort ascending, multiply the
    i-th smallest (from 0) by m - i, keep the sequence non-decreasing, cap at 1. A comparison is
    significant at family-wise level alpha when its adjusted p < alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def detectable_difference(se: float, alpha: float, power: float = POWER) -> float:
    """The smallest true difference a two-sided test at level alpha detects with the given power,
    for an estimate with standard error se (normal approximation: (z_{1-alpha/2} + z_power) se)."""
    nd = statistics.NormalDist()
    return (nd.inv_cdf(1 - alpha / 2) + nd.inv_cdf(power)) * se


def paired_se(b: int, c: int, n: int) -> float:
    """Standard error of a paired accuracy difference (b - c) / n on n images, under 'no difference':
    sqrt(b + c) / n (each discordant image is a +-1 coin flip)."""
    return math.sqrt(b + c) / n if n else math.inf
