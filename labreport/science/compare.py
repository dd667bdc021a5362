"""Which differences between configurations are noise: the best and its ties, and factor effects.

Pure functions over conclusions.Group (no I/O). Two sources of noise, two tests:

- **Test-set noise** (one seed per configuration): two trained models are scored on the same test
  images, so they are compared image by image. McNemar's exact test uses only the discordant
  images (one model right, the other wrong): p = 2 P(X <= min(b, c)), X ~ Bin(b + c, 1/2). It
  says whether *these two models* differ on images like these; it cannot see seed-to-seed
  variation, which one seed does not measure.
- **Training noise** (>= 2 seeds on both sides): Welch's t-test on the seeds' accuracies.

Every family of comparisons (the best against each other configuration; a factor's best level
against each other level) is corrected with Holm's step-down method at `alpha`, so "not
distinguishable from the best" is a statement at family-wise level alpha. Where a comparison
cannot be made (no per-image predictions stored, other test images, one seed against a run
without predictions) it is listed as untested, never silently called a tie or a win.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Sequence

from labreport.science.stats import detectable_difference, discordant, holm, mcnemar_exact, paired_se, welch_t

ALPHA = 0.05  # family-wise significance level of each family of comparisons (see [analysis] alpha)


@dataclass(frozen=True)
class Paired:
    """Counts of a paired comparison on the same test images."""

    b: int  # images only the first side gets right
    c: int  # images only the second side gets right
    n: int  # images compared (summed over pairs of runs)
    pairs: int  # pairs of runs the counts are summed over


def _predicted_runs(group) -> dict:
    """seed -> (predictions, labels) for the finished runs of a group that stored them."""
    out = {}
    for r in group.finished:
        res = r.result or {}
        preds, labels = res.get("test_predictions"), res.get("test_labels")
        if isinstance(preds, str) and isinstance(labels, str) and len(preds) == len(labels) > 0:
            out[r.spec.get("seed", 0)] = (preds, labels)
    return out


def paired_counts(first, second, *, all_seeds: bool = False) -> Paired | None:
    """b, c over the runs of two groups on the same images: seeds matched where both have the seed
    (all of them with all_seeds, else the lowest common one), else each group's lowest seed.
    None when either side has no predictions or the runs were scored on other images."""
    pa, pb = _predicted_runs(first), _predicted_runs(second)
    if not pa or not pb:
        return None
    common = sorted(set(pa) & set(pb))
    pairs = [(pa[s], pb[s]) for s in common] if common else [(pa[min(pa)], pb[min(pb)])]
    if not all_seeds:
        pairs = pairs[:1]
    b = c = n = 0
    for (p1, l1), (p2, l2) in pairs:
        if l1 != l2:  # other test images (another test_subset): not comparable image by image
            return None
        db, dc = discordant(p1, p2, l1)
        b, c, n = b + db, c + dc, n + len(l1)
    return Paired(b, c, n, len(pairs))


@dataclass(frozen=True)
class Comparison:
    """The best configuration against another one."""

    other: object  # conclusions.Group
    diff: float  # best mean - other mean (accuracy, 0..1)
    test: str  # "mcnemar" | "welch" | "none"
    p: float | None
    p_adj: float | None = None  # Holm-adjusted over the family
    paired: Paired | None = None
    t: float | None = None  # Welch
    df: float | None = None
    se: float | None = None  # Welch: the standard error of the difference of the means
    detectable: float | None = None  # smallest true difference found with 80 % power at alpha / m
    agree: bool = False  # both get exactly the same test images right (see same_images_right)

    def distinguishable(self, alpha: float) -> bool | None:
        return None if self.p_adj is None else self.p_adj < alpha


def compare_groups(best, other) -> Comparison:
    """Welch's t-test when both have >= 2 seeds, else McNemar on the same test images."""
    diff = best.mean - other.mean
    agree = same_images_right(paired_counts(best, other, all_seeds=True))
    w = welch_t(best.values, other.values)
    if w is not None:
        return Comparison(other, diff, "welch", w.p, t=w.t, df=w.df, se=w.se, agree=agree)
    pc = paired_counts(best, other)
    if pc is None:
        return Comparison(other, diff, "none", None)
    return Comparison(other, diff, "mcnemar", mcnemar_exact(pc.b, pc.c), paired=pc, agree=agree)


def same_images_right(pc: Paired | None) -> bool:
    """Whether two sides got exactly the same test images right over every matched pair of runs (no
    discordant image: b = c = 0), as two networks collapsed onto one class do. Then no test has
    anything to go on, and no difference it "could detect" is quoted: they agree on every image."""
    return pc is not None and pc.n > 0 and pc.b == pc.c == 0


def _with_holm(items: list, alpha: float, se_of) -> list:
    """Holm-adjust the p-values of the tested items; each gets the difference it could detect at
    the first (strictest) Holm step, alpha / m (None where the standard error says nothing)."""
    tested = [i for i, c in enumerate(items) if c.p is not None]
    adj = holm([items[i].p for i in tested])
    m = max(len(tested), 1)
    out = list(items)
    for i, a in zip(tested, adj):
        se = se_of(items[i])
        usable = se is not None and 0 < se < math.inf  # 0: no spread; inf: no images
        out[i] = replace(items[i], p_adj=a, detectable=detectable_difference(se, alpha / m) if usable else None)
    return out


def _se(c) -> float | None:
    """The standard error a detectable difference scales with; None: none to scale by (seeds without
    spread, or two sides that agree on every image: sqrt(b + c) = 0 is no measure of the noise)."""
    if c.test == "welch":
        return c.se or None
    if c.paired is not None and c.paired.b + c.paired.c > 0:
        return paired_se(c.paired.b, c.paired.c, c.paired.n)
    return None


@dataclass(frozen=True)
class Ranking:
    """The configuration with the highest mean test accuracy, and how every other one compares."""

    best: object  # conclusions.Group
    comparisons: tuple[Comparison, ...]  # in order of decreasing mean
    alpha: float
    considered: int  # configurations with a finished run

    @property
    def ties(self) -> tuple:
        """Configurations not distinguishable from the best at family-wise level alpha."""
        return tuple(c.other for c in self.comparisons if c.distinguishable(self.alpha) is False)

    @property
    def beaten(self) -> tuple:
        return tuple(c.other for c in self.comparisons if c.distinguishable(self.alpha))

    @property
    def untested(self) -> tuple:
        return tuple(c.other for c in self.comparisons if c.p_adj is None)

    @property
    def agreeing(self) -> tuple:
        """Ties that get exactly the same test images right as the best: nothing tells them apart."""
        return tuple(c.other for c in self.comparisons if c.agree and c.distinguishable(self.alpha) is False)

    @property
    def tests(self) -> tuple[str, ...]:
        """The tests used, in a stable order ("mcnemar", "welch")."""
        used = {c.test for c in self.comparisons}
        return tuple(t for t in ("mcnemar", "welch") if t in used)

    @property
    def detectable(self) -> float | None:
        """The median difference the comparisons could detect (None: nothing tested)."""
        d = [c.detectable for c in self.comparisons if c.detectable is not None]
        return statistics.median(d) if d else None


def rank(groups: Sequence, alpha: float = ALPHA) -> Ranking | None:
    """The best configuration (highest mean; the earliest in matrix order on an exact tie) against
    every other finished one, Holm-corrected; None when nothing has finished."""
    scored = [g for g in groups if g.mean is not None]
    if not scored:
        return None
    best = max(scored, key=lambda g: g.mean)  # max keeps the first of equal means
    others = sorted((g for g in scored if g is not best), key=lambda g: -g.mean)
    comparisons = _with_holm([compare_groups(best, g) for g in others], alpha, _se)
    return Ranking(best, tuple(comparisons), alpha, len(scored))


# --------------------------------------------------------------------------------------------
# Factor effects over a grid
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LevelTest:
    """A factor's best level against another level, pooled over the other factors' levels."""

    level: object
    diff: float  # mean accuracy at the best level - at this level
    test: str  # "mcnemar" (stratified: summed over the other factors' levels) | "welch" | "none"
    p: float | None
    p_adj: float | None = None
    paired: Paired | None = None
    t: float | None = None
    df: float | None = None
    se: float | None = None
    detectable: float | None = None
    agree: bool = False  # the two levels get exactly the same test images right (same_images_right)


@dataclass(frozen=True)
class Effect:
    """Mean accuracy per level of one factor, averaged over the other factors' levels, and whether
    the differences between levels exceed the noise."""

    factor: str
    levels: tuple[tuple[object, float | None], ...]
    best_level: object | None
    worst_level: object | None
    spread: float | None  # best level's mean - worst level's mean (accuracy, 0..1)
    tests: tuple[LevelTest, ...] = ()
    alpha: float = ALPHA

    @property
    def detected(self) -> bool | None:
        """Some level differs from the best one beyond the noise; None when nothing could be tested."""
        adj = [t.p_adj for t in self.tests if t.p_adj is not None]
        return None if not adj else any(a < self.alpha for a in adj)

    @property
    def significant(self) -> tuple[LevelTest, ...]:
        return tuple(t for t in self.tests if t.p_adj is not None and t.p_adj < self.alpha)

    @property
    def detectable(self) -> float | None:
        d = [t.detectable for t in self.tests if t.detectable is not None]
        return statistics.median(d) if d else None

    @property
    def agree(self) -> bool:
        """Every level gets exactly the same test images right as the best level: no test can see a
        difference, and no detectable one is quoted."""
        return bool(self.tests) and all(t.agree for t in self.tests)

    @property
    def test_names(self) -> tuple[str, ...]:
        used = {t.test for t in self.tests}
        return tuple(t for t in ("mcnemar", "welch") if t in used)


def _strata(groups: Sequence, factor: str) -> dict:
    """level -> {the other coordinates: group}."""
    out: dict = {}
    for g in groups:
        lvl = g.coord(factor)
        if lvl is not None:
            rest = tuple((k, repr(v)) for k, v in g.coords if k != factor)
            out.setdefault(lvl, {})[rest] = g
    return out


def _level_test(strata: dict, best, level, diff: float) -> LevelTest:
    a, b = strata[best], strata[level]
    shared = [s for s in a if s in b]
    seeds_a = [v for s in shared for v in a[s].values]
    seeds_b = [v for s in shared for v in b[s].values]
    total = _stratified_counts(a, b, shared)
    agree = same_images_right(total)
    if shared and all(len(a[s].values) >= 2 and len(b[s].values) >= 2 for s in shared):
        w = welch_t(seeds_a, seeds_b)  # pooled over strata: their differences only widen the spread
        if w is not None:
            return LevelTest(level, diff, "welch", w.p, t=w.t, df=w.df, se=w.se, agree=agree)
    if total is None:
        return LevelTest(level, diff, "none", None)
    return LevelTest(level, diff, "mcnemar", mcnemar_exact(total.b, total.c), paired=total, agree=agree)


def _stratified_counts(a: dict, b: dict, shared: list) -> Paired | None:
    """b, c summed over the strata both levels have (every matched seed); None when a stratum has no
    comparable predictions or there is no stratum."""
    total = Paired(0, 0, 0, 0)
    for s in shared:
        pc = paired_counts(a[s], b[s], all_seeds=True)
        if pc is None:
            return None
        total = Paired(total.b + pc.b, total.c + pc.c, total.n + pc.n, total.pairs + pc.pairs)
    return total if total.pairs else None


def factor_effect(groups: Sequence, factor: str, alpha: float = ALPHA) -> Effect:
    """Marginal mean accuracy per level of `factor` and the best level tested against each other."""
    by_level: dict[object, list[float]] = {}
    for g in groups:
        if (lvl := g.coord(factor)) is not None and g.mean is not None:
            by_level.setdefault(lvl, []).append(g.mean)
    try:
        ordered = sorted(by_level.items(), key=lambda kv: kv[0])
    except TypeError:  # mixed types: a stable order anyway
        ordered = sorted(by_level.items(), key=lambda kv: str(kv[0]))
    levels = tuple((lvl, statistics.fmean(v)) for lvl, v in ordered)
    if len(levels) < 2:
        return Effect(factor, levels, None, None, None, (), alpha)
    best = max(levels, key=lambda lm: lm[1])
    worst = min(levels, key=lambda lm: lm[1])
    strata = _strata(groups, factor)
    tests = [_level_test(strata, best[0], lvl, best[1] - m) for lvl, m in levels if lvl != best[0]]
    tests = _with_holm(tests, alpha, _se)
    return Effect(factor, levels, best[0], worst[0], best[1] - worst[1], tuple(tests), alpha)
