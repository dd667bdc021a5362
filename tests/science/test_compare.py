"""Which differences are noise, on hand-made predictions: the best and its ties (McNemar on the same
test images, Welch over seeds, Holm across the family), factor effects below and above the noise."""

from __future__ import annotations

import pytest

from labreport.science.conclusions import group_runs
from labreport.science.compare import factor_effect, paired_counts, rank
from labreport.science.stats import holm, mcnemar_exact, welch_t
from views import view

N = 1000  # test images of the hand-made runs


def mask(right: int, offset: int = 0, n: int = N) -> str:
    """A correctness mask with `right` images right, starting at `offset` (wrapping)."""
    bits = ["0"] * n
    for i in range(right):
        bits[(offset + i) % n] = "1"
    return "".join(bits)


def test_paired_counts_match_seeds_and_refuse_other_images():
    a = group_runs([view("a", None, correct=mask(600))])[0]
    b = group_runs([view("b", None, correct=mask(550, offset=100))])[0]
    pc = paired_counts(a, b)
    # a right on 0..599, b on 100..649: only a on 0..99 (100), only b on 600..649 (50)
    assert (pc.b, pc.c, pc.n, pc.pairs) == (100, 50, N, 1)
    other = group_runs([view("c", None, correct=mask(550, n=500))])[0]  # another test set
    assert paired_counts(a, other) is None
    no_preds = group_runs([view("d", 0.5)])[0]
    assert paired_counts(a, no_preds) is None


def test_single_seed_ties_are_found_with_mcnemar_and_holm():
    # best 60.0 %; "close" differs by 5 discordant images net (p ~ 0.6): a tie; "far" by 150 (p ~ 1e-20)
    runs = [view("best", None, correct=mask(600)),
            view("close", None, correct=mask(595, offset=20)),
            view("far", None, correct=mask(450, offset=0))]
    r = rank(group_runs(runs))
    assert r.best.label == "best" and r.considered == 3
    by = {c.other.label: c for c in r.comparisons}
    assert by["close"].test == by["far"].test == "mcnemar"
    pc = by["close"].paired
    assert by["close"].p == pytest.approx(mcnemar_exact(pc.b, pc.c))
    assert by["close"].p_adj == pytest.approx(holm([by["far"].p, by["close"].p])[1])
    assert [g.label for g in r.ties] == ["close"] and [g.label for g in r.beaten] == ["far"]
    assert r.tests == ("mcnemar",) and r.untested == ()
    assert by["far"].diff == pytest.approx(0.15)
    # the difference 1,000 images could detect: a few points, not a tenth of one
    assert 0.01 < r.detectable < 0.1


def test_holm_turns_a_nominal_difference_into_a_tie_among_many():
    # six configurations each 40 discordant images against the best (b=27, c=13: p = 0.038 alone)
    base = mask(600)
    runs = [view("best", None, correct=base)]
    for i in range(5):
        other = list(base)
        for j in range(27):  # best right, other wrong
            other[j + 40 * i] = "0"
        for j in range(13):  # other right, best wrong
            other[600 + j + 20 * i] = "1"
        runs.append(view(f"o{i}", None, correct="".join(other)))
    r = rank(group_runs(runs))
    assert all(c.paired.b == 27 and c.paired.c == 13 for c in r.comparisons)
    assert all(c.p < 0.05 for c in r.comparisons)  # each alone looks significant ...
    assert len(r.ties) == 5  # ... but not after Holm over 5 comparisons (5 x 0.038 > 0.05)


def test_seeds_use_welch_and_say_when_nothing_can_be_tested():
    runs = [view("a", acc, seed=s) for s, acc in enumerate((0.81, 0.83, 0.80))]
    runs += [view("b", acc, seed=s) for s, acc in enumerate((0.78, 0.79, 0.77, 0.80))]
    runs += [view("c", 0.70)]  # one seed, no predictions: no test possible
    r = rank(group_runs(runs))
    by = {c.other.label: c for c in r.comparisons}
    assert by["b"].test == "welch" and by["b"].p == pytest.approx(welch_t([0.81, 0.83, 0.80],
                                                                         [0.78, 0.79, 0.77, 0.80]).p)
    assert by["c"].test == "none" and by["c"].p_adj is None
    assert [g.label for g in r.untested] == ["c"]
    assert [g.label for g in r.ties] == ["b"]  # p = 0.061: not distinguishable at 5 %


def test_factor_effect_below_the_noise_is_called_so():
    # a 3 x 2 grid where dropout moves accuracy by a few images only
    runs = [view("g", None, dropout=d, weight_decay=w, correct=mask(500 + k, offset=7 * k))
            for k, (d, w) in enumerate((d, w) for d in (0.0, 0.15, 0.3) for w in (0.0, 1e-4))]
    e = factor_effect(group_runs(runs), "dropout")
    assert len(e.tests) == 2 and all(t.test == "mcnemar" for t in e.tests)
    assert all(t.paired.pairs == 2 for t in e.tests)  # summed over both weight-decay levels
    assert e.detected is False and e.significant == ()
    assert e.detectable is not None and e.detectable > e.spread  # the budget could not see it


def test_factor_effect_above_the_noise_is_detected():
    # dropout 0.3 loses 100 images in each stratum: a real effect on 2,000 paired images
    runs = []
    for w in (0.0, 1e-4):
        runs.append(view("g", None, dropout=0.0, weight_decay=w, correct=mask(600)))
        runs.append(view("g", None, dropout=0.3, weight_decay=w, correct=mask(500)))
    e = factor_effect(group_runs(runs), "dropout")
    assert e.best_level == 0.0 and e.worst_level == 0.3 and e.spread == pytest.approx(0.1)
    (t,) = e.tests
    assert (t.paired.b, t.paired.c, t.paired.n) == (200, 0, 2 * N)
    assert e.detected is True and e.significant == (t,)


def test_factor_effect_with_seeds_uses_welch_and_a_single_level_is_no_effect():
    runs = [view("g", 0.80 + 0.01 * s, seed=s, dropout=0.0) for s in range(3)]
    runs += [view("g", 0.70 + 0.01 * s, seed=s, dropout=0.3) for s in range(3)]
    e = factor_effect(group_runs(runs), "dropout")
    assert e.tests[0].test == "welch" and e.detected is True
    single = factor_effect(group_runs([view("g", 0.8, dropout=0.0)]), "dropout")
    assert single.tests == () and single.detected is None and single.best_level is None


def test_rank_on_nothing_finished_is_none():
    assert rank(group_runs([view("a", None, status="missing")])) is None


# ---- networks collapsed onto one class: nothing to compare, nothing "detectable" -----------------
LABELS = "".join(str(i % 10) for i in range(N))  # a balanced test set: 100 images of each class


def collapsed(exp: str, seed=None, **coords):
    """A run whose every prediction is class 0: 10 % accuracy, the same images right as any other such run."""
    v = view(exp, 0.1, seed=seed, **coords)
    v.result.update(test_predictions="0" * N, test_labels=LABELS, n_test=N)
    return v


def test_collapsed_networks_agree_on_every_image_and_quote_no_detectable_difference():
    # one seed each: McNemar with b = c = 0
    r = rank(group_runs([collapsed("bn", norm="batch"), collapsed("nobn", norm="none")]))
    (c,) = r.comparisons
    assert (c.test, c.paired.b, c.paired.c, c.p_adj) == ("mcnemar", 0, 0, 1.0)
    assert c.agree and c.detectable is None and r.detectable is None
    assert [g.label for g in r.agreeing] == [g.label for g in r.ties] == ["nobn"]
    # several seeds each: Welch over identical accuracies (no spread), and the images say the same
    runs = [collapsed("g", seed=s, dropout=d) for d in (0.0, 0.3) for s in range(3)]
    e = factor_effect(group_runs(runs), "dropout")
    (t,) = e.tests
    assert t.test == "welch" and t.agree and t.detectable is None
    assert e.detected is False and e.agree and e.detectable is None
    # a grid of one seed each, summed over strata: McNemar, the same
    grid = [collapsed("h", dropout=d, weight_decay=w) for d in (0.0, 0.3) for w in (0.0, 1e-4)]
    e = factor_effect(group_runs(grid), "dropout")
    assert e.tests[0].test == "mcnemar" and e.agree and e.detectable is None


def test_one_discordant_image_is_no_agreement():
    other = "1" + "0" * (N - 1)  # one image right where the collapsed run is wrong
    a, b = collapsed("a"), view("b", None, correct=other)
    b.result["test_labels"] = LABELS
    b.result["test_predictions"] = LABELS[0] + "7" * (N - 1)
    r = rank(group_runs([a, b]))
    (c,) = r.comparisons
    assert not c.agree and c.detectable is not None and c.detectable > 0 and r.agreeing == ()
