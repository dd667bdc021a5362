"""Section 4, the conclusions: every item follows from the numbers of the study (science/), and
here is decided which items there are and which sentence each says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from labreport.report import labels as lb
from labreport.report.context.paper import PaperLine, paper_line
from labreport.report.context.results import Configuration, NamedValue, configuration
from labreport.report.document import Section
from labreport.report.i18n import Lang
from labreport.science.compare import Effect
from labreport.science.conclusions import Study, TaskResult


@dataclass(frozen=True)
class Overall:
    """Task 6: the best result of the work."""

    best: Configuration
    ties: tuple[str, ...]  # indistinguishable from it, by name
    better: bool  # tested against every other configuration, and better beyond the noise
    unfinished: int  # runs of the matrix not finished: the conclusion may change


@dataclass(frozen=True)
class FactorFinding:
    kind: str  # "effect" (beyond the noise) | "agree" (every level right on the same images) | "detectable" | "none"
    factor: str  # in words
    best: str | None = None  # the best level, an effect's
    other: str | None = None  # the first level significantly worse
    diff: float | None = None
    detectable: float | None = None  # the difference the budget could detect


def factor_finding(e: Effect, L: Lang) -> FactorFinding | None:
    """What a task's item says of a factor; None where nothing could be tested."""
    factor = lb.factor_name(e.factor, L)
    if e.detected:
        s = e.significant[0]
        return FactorFinding("effect", factor, lb.factor_value(e.factor, e.best_level, L),
                             lb.factor_value(e.factor, s.level, L), s.diff)
    if e.detected is None:
        return None
    if e.agree:
        return FactorFinding("agree", factor)
    if e.detectable:
        return FactorFinding("detectable", factor, detectable=e.detectable)
    return FactorFinding("none", factor)


@dataclass(frozen=True)
class TaskFinding:
    title: str
    best: Configuration
    table: str  # the task's table, where more configurations than a sentence names are listed
    ties: tuple[str, ...]
    worse: str | None  # without ties and untested ones: "one" (the other is worse), "all" (the others are)
    factors: tuple[FactorFinding, ...]


def task_finding(t: TaskResult, outline: Mapping[str, Section], names: lb.Labels, L: Lang) -> TaskFinding:
    r, key = t.ranking, t.task or "extra"
    worse = None if r.ties or r.untested else "one" if len(r.comparisons) == 1 else "all"
    return TaskFinding(outline[f"task-{key}"].title, configuration(r.best, names), f"groups-{key}",
                       tuple(names(g) for g in r.ties), worse,
                       tuple(f for e in t.factors if (f := factor_finding(e, L)) is not None))


@dataclass(frozen=True)
class ArmFinding:
    """A BN-less arm with finished runs, against the lab's claim."""

    model: str
    init: str
    k: int
    n: int
    rate: float | None
    ci_low: float
    ci_high: float
    verdict: str


class Overfit(NamedTuple):
    most: NamedValue  # the configuration with the largest gap between final train and test accuracy
    least: NamedValue


@dataclass(frozen=True)
class Conclusions:
    finished: bool  # some run finished: there is anything to conclude
    skip_gain: float | None  # orders of magnitude the shortcut adds to the first layer's gradient (> 0)
    depth: int | None  # of the measured networks
    own: bool  # the author has models of their own: the measured one is called built-in
    overall: Overall | None
    tasks: tuple[TaskFinding, ...]  # the tasks with a comparison
    arms: tuple[ArmFinding, ...]
    claim_rate: float
    overfit: Overfit | None
    paper: tuple[PaperLine, ...]  # the depths with a finished run


def overall(study: Study, names: lb.Labels) -> Overall | None:
    r, c = study.ranking, study.counts
    if r is None:
        return None
    return Overall(configuration(r.best, names), tuple(names(g) for g in r.ties),
                   bool(r.comparisons) and not r.untested, c["partial"] + c["missing"] + c["failed"])


def overfitting(study: Study, names: lb.Labels) -> Overfit | None:
    """Over the configurations whose every run trained (a network at chance does not overfit, it
    does not learn): the largest and the smallest gap between final training and test accuracy."""
    gaps = sorted((r for r in study.resources if r.gap is not None and r.trained), key=lambda r: r.gap)
    if len(gaps) < 2:
        return None
    return Overfit(NamedValue(names.of(gaps[-1].label), gaps[-1].gap), NamedValue(names.of(gaps[0].label), gaps[0].gap))


def conclusions_of(study: Study, outline: Mapping[str, Section], gf: Mapping[str, Any] | None,
                   names: lb.Labels, L: Lang) -> Conclusions:
    """`gf`: the gradient-flow facts (None: not measured)."""
    gain = (gf or {}).get("gain_nobn")
    arms = tuple(ArmFinding(lb.model_phrase(cl.model, L, study.own), lb.init_name(a.init, L), a.k, a.n, a.rate,
                            a.ci[0], a.ci[1], a.verdict) for cl in study.bn for a in cl.arms if a.n)
    return Conclusions(
        study.counts["done"] + study.counts["diverged"] > 0, gain if gain is not None and gain > 0 else None,
        (gf or {}).get("depth"), bool(study.own), overall(study, names),
        tuple(task_finding(t, outline, names, L) for t in study.tasks if t.ranking and t.ranking.comparisons),
        arms, study.claim_rate, overfitting(study, names),
        tuple(paper_line(p, L, study.own) for p in study.paper if p.ours_error is not None))
