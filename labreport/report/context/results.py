"""Section 3, the results: per task its configurations, ranking, factor effects and BatchNorm
claims, then the comparison with the paper (paper.py), the best result and the cost of training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from labreport.report import labels as lb
from labreport.report.context.paper import Paper, paper_of
from labreport.report.i18n import Lang
from labreport.science.bnclaim import BnClaim, SuccessRate
from labreport.science.compare import Effect, Ranking
from labreport.science.conclusions import Group, Study, TaskResult


class Configuration(NamedTuple):
    """A configuration as a sentence or a row names it, with its accuracy (mean ± std over seeds)."""

    name: str
    mean: float | None
    std: float | None


def configuration(g: Group, names: lb.Labels) -> Configuration:
    return Configuration(names(g), g.mean, g.std)


class NamedValue(NamedTuple):
    name: str
    value: float


@dataclass(frozen=True)
class RankingText:
    """A ranking (science.compare.Ranking) as its sentences say it."""

    best: Configuration
    compared: bool  # the best was compared with another configuration
    ties: tuple[str, ...]  # not distinguishable from the best
    tests: str  # the tests used, in words
    alpha: float
    worse: str | None  # which sentence names the significantly worse: "one", "all" (every other), "some"
    beaten: tuple[str, ...]
    untested: tuple[str, ...]  # not compared: no per-image predictions on the same images
    agreeing: tuple[str, ...]  # right on exactly the same test images as the best
    detectable: float | None  # the difference the budget could detect, said where there are ties


def ranking_text(r: Ranking | None, names: lb.Labels, L: Lang) -> RankingText | None:
    if r is None:
        return None
    ties, beaten, untested = r.ties, r.beaten, r.untested
    alone = not ties and not untested
    worse = ("one" if len(beaten) == 1 else "all") if beaten and alone else "some" if beaten else None
    return RankingText(configuration(r.best, names), bool(r.comparisons), tuple(names(g) for g in ties),
                       ", ".join(lb.stat_test_name(t, L) for t in r.tests), r.alpha, worse,
                       tuple(names(g) for g in beaten), tuple(names(g) for g in untested),
                       tuple(names(g) for g in r.agreeing), r.detectable if ties else None)


@dataclass(frozen=True)
class GroupRow:
    """A configuration of a task's table."""

    name: str
    best: bool
    finished: int  # runs
    runs: int
    mean: float | None
    std: float | None
    diff: float | None  # the best's accuracy - this one's (None: the best, or not compared)
    p_adj: float | None  # Holm-adjusted
    gap: float | None  # final train - test accuracy
    statuses: tuple[str, ...]  # of its runs, each once


class Significant(NamedTuple):
    level: str  # a level worse than the best one, by name
    diff: float
    p_adj: float


@dataclass(frozen=True)
class EffectText:
    """A grid factor's effect (science.compare.Effect), its levels named."""

    factor: str
    levels: tuple[tuple[str, float | None], ...]  # (level, mean accuracy)
    best_level: str
    detected: bool | None  # a level differs from the best beyond the noise (None: nothing could be tested)
    significant: tuple[Significant, ...]
    tests: str  # the tests used, in words
    spread: float | None  # the best level's mean - the worst's
    smallest_p: float | None  # after Holm's correction
    agree: bool  # every level right on the same test images
    detectable: float | None


def effect_text(e: Effect, L: Lang) -> EffectText:
    def level(v):
        return lb.factor_value(e.factor, v, L)

    tested = [t.p_adj for t in e.tests if t.p_adj is not None]
    return EffectText(lb.factor_name(e.factor, L), tuple((level(v), m) for v, m in e.levels), level(e.best_level),
                      e.detected, tuple(Significant(level(t.level), t.diff, t.p_adj) for t in e.significant),
                      ", ".join(lb.stat_test_name(t, L) for t in e.test_names), e.spread,
                      min(tested) if tested else None, e.agree, e.detectable)


@dataclass(frozen=True)
class Arm:
    """One arm of a BatchNorm claim (science.bnclaim.SuccessRate): how often it trained."""

    control: bool  # the arm with BatchNorm
    init: str  # in words
    init_short: str  # in a table column titled "Initialisation"
    k: int
    n: int
    pending: int
    rate: float | None
    ci_low: float
    ci_high: float
    p_value: float | None
    verdict: str
    diverged: int
    reasons: tuple[str, ...]  # why its runs diverged, in words, each once
    logits: str | None  # what subsection 1.1 measured of the built-in network's logits under its init:
    #                     "zero" (Fixup: zero by construction), "measured" (their std), None (nothing)
    logits_std: float | None


def arm(a: SuccessRate, std: Mapping[str, float], L: Lang) -> Arm:
    reasons = dict.fromkeys(lb.divergence(o.reason, L) for o in a.per_run if o.diverged and o.reason is not None)
    return Arm(a.norm == "batch", lb.init_name(a.init, L), lb.init_short(a.init, L), a.k, a.n, a.pending, a.rate,
               a.ci[0], a.ci[1], a.p_value, a.verdict, a.diverged, tuple(reasons),
               None if a.init not in std else "zero" if a.init == "fixup" else "measured", std.get(a.init))


@dataclass(frozen=True)
class Claim:
    """One model's BatchNorm claim: its table and a paragraph per arm."""

    table: str  # the table's name
    model: str  # in a sentence that compares it with the claim (one's own says so)
    model_name: str
    threshold: float  # of "trained"
    control: Arm | None
    arms: tuple[Arm, ...]  # without BatchNorm, one per init
    rows: tuple[Arm, ...]  # the table: the control first
    narrow_precision: bool  # some BN-less run computed in fp16


def claim(cl: BnClaim, table: str, gf: Mapping[str, Any] | None, own: Mapping, L: Lang) -> Claim:
    """`gf`: the gradient-flow facts; the logits they measured are the built-in network's, said of it alone."""
    gf = gf or {}
    std = gf.get("nobn_logits_std", {}) if cl.model == f"resnet{gf.get('depth')}" else {}
    control = arm(cl.control, std, L) if cl.control else None
    arms = tuple(arm(a, std, L) for a in cl.arms)
    return Claim(table, lb.model_phrase(cl.model, L, own), lb.model_name(cl.model, L, own), cl.threshold, control,
                 arms, ((control,) if control else ()) + arms, cl.narrow_precision)


@dataclass(frozen=True)
class TaskSection:
    heading: str  # its heading's id in the outline
    table: str  # its table of configurations
    refs: tuple[tuple[str, str], ...]  # what its first sentence refers to: ("figure" | "table", name)
    ranking: RankingText | None
    not_run: str | None  # what of the lab's matrix this task leaves out, in words
    rows: tuple[GroupRow, ...]
    curves: str  # its figures' names
    heatmap: str | None
    effects: tuple[EffectText, ...]  # the factors with a best level
    claims: tuple[Claim, ...]  # the BatchNorm claims about its models
    seeds_figure: bool  # the figure of every seed of the claims' arms follows


def group_rows(t: TaskResult, gaps: Mapping[str, float | None], names: lb.Labels) -> tuple[GroupRow, ...]:
    r = t.ranking
    cmp = {x.other.label: x for x in r.comparisons} if r else {}
    return tuple(GroupRow(names(g), r is not None and g is r.best, len(g.finished), g.n_total, g.mean, g.std,
                          x.diff if (x := cmp.get(g.label)) else None, x.p_adj if x else None, gaps[g.label],
                          tuple(dict.fromkeys(run.status for run in g.runs))) for g in t.groups)


def task_section(t: TaskResult, study: Study, figures: Mapping, not_run: Mapping[str, str], gf, names: lb.Labels,
                 L: Lang) -> TaskSection:
    key = t.task or "extra"
    curves, heatmap = f"curves_{key}", f"heatmap_{key}"
    refs = (("table", f"groups-{key}"),) + tuple(("figure", f) for f in (curves, heatmap) if f in figures)
    gaps: dict[str, float | None] = {}
    for res in study.resources:
        gaps.setdefault(res.label, res.gap)
    models = {g.model for g in t.groups}
    claims = tuple(claim(cl, f"arms-{key}-{i}", gf, study.own, L)
                   for i, cl in enumerate((cl for cl in study.bn if cl.model in models), 1))
    return TaskSection(f"task-{key}", f"groups-{key}", refs, ranking_text(t.ranking, names, L),
                       not_run.get(t.task or ""), group_rows(t, gaps, names), curves, heatmap if t.heatmap else None,
                       tuple(effect_text(e, L) for e in t.factors if e.best_level is not None), claims,
                       bool(claims) and "bn_seeds" in figures)


BEST_ROWS = 9  # configurations the best result's table shows below the best; the rest are in appendix A


@dataclass(frozen=True)
class BestRow:
    name: str
    mean: float | None
    std: float | None
    diff: float
    test: str  # in a table cell: "McNemar", "Welch"
    p_adj: float | None
    distinguishable: bool | None  # from the best (None: not compared)


@dataclass(frozen=True)
class Best:
    """Task 6: the best configuration of the work against the others."""

    ranking: RankingText
    considered: int  # configurations compared
    test_images: tuple[int, ...]
    one_tie: str | None  # the one configuration indistinguishable from the best, by name
    ties: int
    rows: tuple[BestRow, ...]
    more: int  # configurations beyond the table's BEST_ROWS


def best(study: Study, names: lb.Labels, L: Lang) -> Best | None:
    r = study.ranking
    if r is None:
        return None
    rows = tuple(BestRow(names(x.other), x.other.mean, x.other.std, x.diff, lb.stat_test_short(x.test, L), x.p_adj,
                         x.distinguishable(r.alpha)) for x in r.comparisons[:BEST_ROWS])
    return Best(ranking_text(r, names, L), r.considered, study.test_images,
                names(r.ties[0]) if len(r.ties) == 1 else None, len(r.ties), rows,
                max(len(r.comparisons) - BEST_ROWS, 0))


@dataclass(frozen=True)
class Cost:
    figure: bool  # the figure of time and memory per configuration was drawn
    longest: NamedValue | None  # the configuration with the longest epoch (s), where several are timed
    shortest: NamedValue | None
    memory: NamedValue | None  # the largest peak device memory (MiB)


def cost(study: Study, figures: Mapping, names: lb.Labels) -> Cost:
    timed = sorted((r for r in study.resources if r.epoch_time_s is not None), key=lambda r: r.epoch_time_s)
    measured = sorted((r for r in study.resources if r.peak_mem_mib), key=lambda r: r.peak_mem_mib)
    memory = NamedValue(names.of(measured[-1].label), measured[-1].peak_mem_mib) if measured else None
    if len(timed) < 2:  # one configuration has no longest and shortest epoch
        return Cost("resources" in figures, None, None, memory)
    return Cost("resources" in figures, NamedValue(names.of(timed[-1].label), timed[-1].epoch_time_s),
                NamedValue(names.of(timed[0].label), timed[0].epoch_time_s), memory)


class Counts(NamedTuple):
    total: int
    done: int
    diverged: int
    partial: int
    failed: int
    missing: int


@dataclass(frozen=True)
class Results:
    counts: Counts
    not_run: str | None  # the lab's tasks this report lacks altogether, in words
    finished: bool  # some run finished
    claim_rate: float
    confidence: float
    tasks: tuple[TaskSection, ...]
    paper: Paper | None
    best: Best | None
    cost: Cost


def results_of(study: Study, figures: Mapping, not_run: Mapping[str, str], gf: Mapping[str, Any] | None,
               names: lb.Labels, L: Lang) -> Results:
    """`not_run`: coverage.texts, per task; `gf`: the gradient-flow facts (None: not measured)."""
    c = study.counts
    counts = Counts(sum(c.values()), c["done"], c["diverged"], c["partial"], c["failed"], c["missing"])
    return Results(counts, not_run.get("-"), c["done"] + c["diverged"] > 0, study.claim_rate, study.confidence,
                   tuple(task_section(t, study, figures, not_run, gf, names, L) for t in study.tasks),
                   paper_of(study, L), best(study, names, L), cost(study, figures, names))
