"""The statistics of the conclusions against values from textbooks or computed once with scipy
(scipy 1.x: stats.t.sf, stats.ttest_ind(equal_var=False), stats.binomtest, special.betainc) and
written down here: labreport itself does not depend on scipy."""

from __future__ import annotations

import math

import pytest

from labreport.science.stats import (
    betainc,
    binom_sf,
    detectable_difference,
    discordant,
    holm,
    mcnemar_exact,
    paired_se,
    smallest_rejecting_k,
    t_two_sided_p,
    welch_t,
    wilson_interval,
)


def test_wilson_interval_known_values():
    # k=0, n=10 -> (0, 0.2775); k=5, n=10 -> (0.2366, 0.7634) (Newcombe 1998, table I method 3)
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(5, 10) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_binomial_tail_and_the_smallest_k_that_rejects():
    assert binom_sf(0, 10, 0.1) == pytest.approx(1.0)
    assert binom_sf(3, 10, 0.1) == pytest.approx(0.0702, abs=1e-4)
    assert binom_sf(4, 10, 0.1) == pytest.approx(0.0128, abs=1e-4)
    # with 10 seeds, 4 or more trained runs reject "rate <= 10 %" at 5 %; one seed never can
    assert smallest_rejecting_k(10, 0.1, 0.05) == 4
    assert smallest_rejecting_k(2, 0.1, 0.05) == 2  # P(X >= 2 | 2, 0.1) = 0.01
    assert smallest_rejecting_k(1, 0.1, 0.05) is None


def test_mcnemar_exact_against_the_binomial_test():
    # scipy.stats.binomtest(3, 15, 0.5).pvalue = 0.03515625 = 2 * 576 / 2**15
    assert mcnemar_exact(12, 3) == pytest.approx(0.03515625, abs=1e-12)
    assert mcnemar_exact(3, 12) == mcnemar_exact(12, 3)  # symmetric
    assert mcnemar_exact(1, 9) == pytest.approx(0.021484375, abs=1e-12)
    assert mcnemar_exact(60, 40) == pytest.approx(0.05688793364098089, rel=1e-9)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0


def test_discordant_pairs_count_only_images_where_one_is_right():
    labels = "0123456789"
    first = "0123400000"   # right on 0-4
    second = "0000456789"  # right on 0, 4-9
    assert discordant(first, second, labels) == (3, 5)  # first only: 1, 2, 3; second only: 5..9
    with pytest.raises(ValueError):
        discordant("01", "012", "012")


def test_student_t_and_incomplete_beta_against_scipy():
    assert betainc(2.5, 0.5, 0.3) == pytest.approx(0.018927124071945658, rel=1e-9)
    assert t_two_sided_p(2.0, 5) == pytest.approx(0.10193947882985835, rel=1e-9)
    assert t_two_sided_p(-2.0, 5) == pytest.approx(0.10193947882985835, rel=1e-9)
    assert t_two_sided_p(1.5, 7.3) == pytest.approx(0.1755630928030861, rel=1e-9)
    assert t_two_sided_p(0.3, 30) == pytest.approx(0.7662461052843528, rel=1e-9)
    assert t_two_sided_p(10, 2) == pytest.approx(0.00985245702332569, rel=1e-9)
    assert t_two_sided_p(0.0, 4) == pytest.approx(1.0)


def test_welch_against_scipy_ttest_ind():
    w = welch_t([0.81, 0.83, 0.80], [0.78, 0.79, 0.77, 0.80])
    assert w.t == pytest.approx(2.592475695654303, rel=1e-9)
    assert w.df == pytest.approx(3.9593147751606113, rel=1e-9)
    assert w.p == pytest.approx(0.06114410196916134, rel=1e-8)
    assert welch_t([0.8], [0.7, 0.75]) is None  # one seed: no spread to test against
    same = welch_t([0.5, 0.5], [0.5, 0.5])
    assert same.p == 1.0
    apart = welch_t([0.6, 0.6], [0.5, 0.5])  # no spread, different means
    assert apart.p == 0.0 and math.isinf(apart.t)


def test_holm_against_a_worked_example():
    # p = (0.01, 0.04, 0.03, 0.005): sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 =
    # 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06 (statsmodels multipletests 'holm' agrees)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]
    assert holm([0.6, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_detectable_difference_and_paired_se():
    # (1.96 + 0.8416) * se: the textbook 2.8 standard errors for 80 % power at 5 %
    assert detectable_difference(1.0, 0.05) == pytest.approx(2.8016, abs=1e-3)
    # 300 discordant images of 1,000: se = sqrt(300) / 1000
    assert paired_se(150, 150, 1000) == pytest.approx(math.sqrt(300) / 1000)
    assert paired_se(0, 0, 0) == math.inf


# --- at the size of a full study: 10,000 test images, thousands of discordant pairs ----------------------
# Written down from SciPy 1.17: scipy.stats.binom.sf(k - 1, n, p) and scipy.stats.binomtest(min(b, c), b + c).pvalue
SCIPY_SF = [((3, 10, 0.1), 0.0701908264), ((100, 1030, 0.1), 0.637359701658881),
            ((150, 1000, 0.1), 4.489442859450041e-07), ((1100, 10_000, 0.1), 0.0005299417355567868),
            ((1200, 10_000, 0.1), 4.802632937312988e-11), ((5200, 10_000, 0.5), 3.2967577993361714e-05),
            ((130_000, 1_000_000, 0.125), 2.2466405780278485e-51)]
SCIPY_MCNEMAR = [((5, 1), 0.21875), ((100, 160), 0.00023894190306813953), ((1500, 1700), 0.00043334035939974455),
                 ((2400, 2600), 0.004883649737517494), ((3000, 2000), 1.3002310005205326e-45),
                 ((499_000, 501_000), 0.0456082998653896)]


@pytest.mark.parametrize("args, want", SCIPY_SF)
def test_binom_sf_matches_scipy_at_any_n(args, want):
    assert binom_sf(*args) == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize("bc, want", SCIPY_MCNEMAR)
def test_mcnemar_exact_matches_scipy_at_any_n(bc, want):
    assert mcnemar_exact(*bc) == pytest.approx(want, rel=1e-8)
    assert mcnemar_exact(*bc[::-1]) == mcnemar_exact(*bc)


def test_tails_at_the_edges_and_beyond_a_float():
    assert binom_sf(11, 10, 0.1) == 0.0 and binom_sf(-3, 10, 0.1) == 1.0 and binom_sf(1, 1, 0.5) == 0.5
    assert mcnemar_exact(2500, 2500) == 1.0 and mcnemar_exact(1, 0) == 1.0
    assert mcnemar_exact(0, 5000) == 0.0  # 2 / 2^5000: below the smallest float, not an OverflowError
    assert binom_sf(2000, 100_000, 0.1) == 1.0


def test_smallest_rejecting_k_at_large_n_is_the_boundary():
    k = smallest_rejecting_k(100_000, 0.1, 0.05)
    assert binom_sf(k, 100_000, 0.1) < 0.05 <= binom_sf(k - 1, 100_000, 0.1)
