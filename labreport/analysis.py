"""Pure functions: run results -> conclusions. No I/O, no matplotlib, no torch.

Every number a sentence of the report states comes from here, and every function is unit-tested
on hand-made numbers. Accuracy means the test accuracy at the epoch chosen on validation
(`test_acc_at_best`), never the best test epoch.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from .catalog import CATALOG
from .results import RunView

METRIC = "test_acc_at_best"


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------
def _z(confidence: float) -> float:
    """Two-sided normal quantile, e.g. 1.96 for 0.95 (statistics.NormalDist: no scipy needed)."""
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (good for small n and k = 0 or n)."""
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the exact one-sided p-value against 'rate <= p'."""
    return min(1.0, sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for the std of a single value)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


# --------------------------------------------------------------------------------------------
# Groups: runs that differ only by seed
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    label: str
    experiment: str
    task: str | None
    model: str
    coords: tuple[tuple[str, object], ...]  # grid coordinates without the seed
    runs: tuple[RunView, ...]

    @property
    def n_total(self) -> int:
        return len(self.runs)

    @property
    def finished(self) -> tuple[RunView, ...]:
        return tuple(r for r in self.runs if r.finished)

    @property
    def values(self) -> tuple[float, ...]:
        """The metric of every finished run (a diverged run before its first epoch has none)."""
        return tuple(v for r in self.finished if (v := r.metric(METRIC)) is not None)

    @property
    def mean(self) -> float | None:
        return mean_std(self.values)[0]

    @property
    def std(self) -> float | None:
        return mean_std(self.values)[1]

    @property
    def complete(self) -> bool:
        return len(self.finished) == self.n_total

    def coord(self, name: str):
        return dict(self.coords).get(name)

    def mean_of(self, metric: str) -> float | None:
        return mean_std([v for r in self.finished if (v := r.metric(metric)) is not None])[0]


def group_runs(views: Iterable[RunView]) -> list[Group]:
    """Group by experiment and grid point (seed excluded), in matrix order."""
    order: dict[tuple, list[RunView]] = {}
    for v in views:
        order.setdefault((v.experiment, v.config_label), []).append(v)
    groups = []
    for (exp, label), runs in order.items():
        coords = tuple((k, val) for k, val in runs[0].varying.items() if k != "seed")
        groups.append(Group(label, exp, runs[0].task, runs[0].spec["model"], coords, tuple(runs)))
    return groups


# --------------------------------------------------------------------------------------------
# Conclusions
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Best:
    groups: tuple[Group, ...]  # the best, several when tied
    mean: float
    considered: int  # groups with at least one finished run


def best_group(groups: Iterable[Group], tol: float = 1e-12) -> Best | None:
    """The group(s) with the highest mean accuracy; None when nothing has finished."""
    scored = [(g.mean, g) for g in groups if g.mean is not None]
    if not scored:
        return None
    top = max(m for m, _ in scored)
    return Best(tuple(g for m, g in scored if top - m <= tol), top, len(scored))


def best_per_task(groups: Sequence[Group]) -> dict[str, Best]:
    tasks = sorted({g.task or "" for g in groups}, key=lambda t: (t == "", t))
    return {t: b for t in tasks if (b := best_group(g for g in groups if (g.task or "") == t))}


@dataclass(frozen=True)
class Effect:
    """Mean accuracy per level of one factor, averaged over the other factors' levels."""

    factor: str
    levels: tuple[tuple[object, float | None], ...]
    best_level: object | None
    worst_level: object | None
    spread: float | None  # best mean - worst mean (accuracy, 0..1)
    direction: str  # "increasing" | "decreasing" | "mixed" | "flat" | "n/a"


def factor_effect(groups: Sequence[Group], factor: str, flat: float = 0.002) -> Effect:
    """How accuracy moves with `factor` over a grid (flat: spreads below 0.2 points)."""
    by_level: dict[object, list[float]] = {}
    for g in groups:
        if (lvl := g.coord(factor)) is not None and g.mean is not None:
            by_level.setdefault(lvl, []).append(g.mean)
    levels = tuple((lvl, statistics.fmean(v)) for lvl, v in sorted(by_level.items(), key=lambda kv: kv[0]))
    if len(levels) < 2:
        return Effect(factor, levels, None, None, None, "n/a")
    means = [m for _, m in levels]
    best = max(levels, key=lambda lm: lm[1])
    worst = min(levels, key=lambda lm: lm[1])
    spread = best[1] - worst[1]
    diffs = [b - a for a, b in zip(means, means[1:])]
    if spread < flat:
        direction = "flat"
    elif all(d >= 0 for d in diffs):
        direction = "increasing"
    elif all(d <= 0 for d in diffs):
        direction = "decreasing"
    else:
        direction = "mixed"
    return Effect(factor, levels, best[0], worst[0], spread, direction)


@dataclass(frozen=True)
class SuccessRate:
    """How often an arm 'trains': best validation accuracy above the threshold."""

    label: str
    k: int  # trained
    n: int  # finished runs (diverged ones count, as not trained)
    pending: int  # runs of the arm not finished yet: never silently dropped
    rate: float | None
    ci: tuple[float, float]
    p_value: float | None  # exact binomial P(X >= k | claim_rate)
    verdict: str  # "supported" | "contradicted" | "inconclusive" | "no data"
    per_run: tuple[tuple[int | None, float | None, bool], ...]  # (seed, best val acc, trained)


def trained(view: RunView, threshold: float) -> bool:
    """A run trains when its best validation accuracy beats the threshold; diverged runs do not."""
    if view.status != "done":
        return False
    acc = view.metric("best_val_acc")
    if acc is None:  # no validation split: fall back to the chosen epoch's test accuracy
        acc = view.metric(METRIC)
    return acc is not None and acc > threshold


def success_rate(label: str, runs: Sequence[RunView], threshold: float, claim_rate: float,
                 confidence: float = 0.95) -> SuccessRate:
    """k/N trained, Wilson interval, exact test of 'trains in at most claim_rate of cases'."""
    fin = [r for r in runs if r.finished]
    per_run = tuple((r.varying.get("seed", r.spec.get("seed")), r.metric("best_val_acc"), trained(r, threshold))
                    for r in fin)
    n, k = len(fin), sum(t for *_, t in per_run)
    alpha = 1 - confidence
    if n == 0:
        return SuccessRate(label, 0, 0, len(runs), None, (0.0, 1.0), None, "no data", per_run)
    p = binom_sf(k, n, claim_rate)
    rate = k / n
    if p < alpha:
        verdict = "contradicted"  # significantly more runs train than the claim allows
    elif rate <= claim_rate and claim_rate ** n < alpha:
        verdict = "supported"  # as few as claimed, with enough runs that a violation could show
    else:
        verdict = "inconclusive"
    return SuccessRate(label, k, n, len(runs) - n, rate, wilson_interval(k, n, confidence), p, verdict, per_run)


@dataclass(frozen=True)
class PaperRow:
    model: str
    depth: int
    paper_error: float
    ours_error: float | None  # mean test error %, at the validation-chosen epoch
    ours_std: float | None
    n: int
    epochs: int
    paper_mean: float | None = None  # the paper's mean and std over its runs: ResNet-110 only
    paper_std: float | None = None
    paper_runs: int | None = None
    within: bool | None = None  # our mean within the paper's mean ± std (None: no published std)
    within_yardstick: bool | None = None  # within Table 6's number ± ResNet-110's std, borrowed
    recipe: bool = False  # our runs used the paper's training recipe (profile paper)


# He et al. 2015 sec. 4.2: SGD, momentum 0.9, wd 1e-4, batch 128, lr 0.1 / 10 at 32k and 48k, stop at 64k.
PAPER_RECIPE = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 128,
                "schedule": "step", "milestones": [32000, 48000], "gamma": 0.1, "schedule_unit": "iter",
                "max_iters": 64000, "augment": True}
YARDSTICK_STD = 0.16  # ResNet-110's std in Table 6, the only spread the paper publishes


def paper_recipe(spec: dict) -> bool:
    """Did a run train with the paper's recipe (any warm-up allowed)?"""
    return all(spec.get(k) == v for k, v in PAPER_RECIPE.items())


def within_spread(ours: float | None, centre: float | None, std: float | None) -> bool | None:
    """|ours - centre| <= std; None when a number is missing."""
    if ours is None or centre is None or std is None:
        return None
    return abs(ours - centre) <= std + 1e-9


def paper_comparison(groups: Sequence[Group]) -> list[PaperRow]:
    """Our error next to He et al. 2015 Table 6 for every CIFAR ResNet depth that was run (BN on,
    best configuration of that depth). Only ResNet-110 has a published spread (mean ± std over 5
    runs); for the other depths `within_yardstick` borrows it, and says so by its name."""
    rows = []
    for model, info in CATALOG.items():
        if info.paper_error is None:
            continue
        cand = [g for g in groups if g.model == model and g.runs[0].spec.get("norm") == "batch"]
        if not cand:
            continue
        best = best_group(cand)
        g = best.groups[0] if best else cand[0]
        err = None if g.mean is None else 100 * (1 - g.mean)
        std = None if g.std is None else 100 * g.std
        rows.append(PaperRow(model, info.depth, info.paper_error, err, std, len(g.values), g.runs[0].spec["epochs"],
                             info.paper_mean, info.paper_std, info.paper_runs,
                             within_spread(err, info.paper_mean, info.paper_std),
                             within_spread(err, info.paper_error, YARDSTICK_STD),
                             all(paper_recipe(r.spec) for r in g.runs)))
    return rows


@dataclass(frozen=True)
class Resource:
    label: str
    model: str
    params: int | None
    epoch_time_s: float | None
    images_per_s: float | None
    peak_mem_mib: float | None
    gap: float | None  # final train accuracy - final test accuracy (overfitting)


def resources(groups: Sequence[Group]) -> list[Resource]:
    out = []
    for g in groups:
        runs = g.finished
        params = next((r.metric("params") for r in runs if r.metric("params")), None)
        ips = [h["images_per_s"] for r in runs for h in r.history if h.get("images_per_s")]
        gaps = [tr - te for r in runs if (tr := r.metric("final_train_acc")) is not None
                and (te := r.metric("final_test_acc")) is not None]
        out.append(Resource(g.label, g.model, int(params) if params else None, g.mean_of("mean_epoch_time_s"),
                            statistics.fmean(ips) if ips else None, g.mean_of("peak_mem_alloc_mib"),
                            statistics.fmean(gaps) if gaps else None))
    return out


def progress_counts(views: Sequence[RunView]) -> dict[str, int]:
    counts = {s: 0 for s in ("done", "diverged", "partial", "failed", "missing")}
    for v in views:
        counts[v.status] = counts.get(v.status, 0) + 1
    return counts


# --------------------------------------------------------------------------------------------
# The whole study
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskResult:
    task: str  # "" for experiments that name no task
    groups: tuple[Group, ...]
    best: Best | None
    factors: tuple[Effect, ...]  # grid factors with >= 2 levels in this task
    heatmap: tuple[str, str] | None  # (row factor, column factor) when the task is a 2-factor grid


@dataclass(frozen=True)
class Study:
    counts: dict[str, int]
    groups: tuple[Group, ...]
    tasks: tuple[TaskResult, ...]
    best: Best | None
    arms: tuple[SuccessRate, ...]  # per (model, norm) where a model ran with and without BN
    claim: SuccessRate | None  # the BN-less arm of the deepest such model
    paper: tuple[PaperRow, ...]
    resources: tuple[Resource, ...]
    threshold: float
    claim_rate: float
    confidence: float


def _task_result(task: str, groups: Sequence[Group]) -> TaskResult:
    names: list[str] = []
    for g in groups:
        names += [k for k, _ in g.coords if k not in names]
    effects = tuple(factor_effect(groups, f) for f in names
                    if len({repr(g.coord(f)) for g in groups if g.coord(f) is not None}) >= 2)
    grid = [e.factor for e in effects]
    heat = (grid[0], grid[1]) if len(grid) == 2 else None
    return TaskResult(task, tuple(groups), best_group(groups), effects, heat)


def conclude(views: Sequence[RunView], threshold: float, claim_rate: float, confidence: float = 0.95) -> Study:
    groups = group_runs(views)
    tasks = sorted({g.task or "" for g in groups}, key=lambda t: (t == "", t))
    task_results = tuple(_task_result(t, [g for g in groups if (g.task or "") == t]) for t in tasks)
    arms: list[SuccessRate] = []
    claim = None
    models = [m for m in CATALOG if {v.spec.get("norm") for v in views if v.spec["model"] == m} >= {"batch", "none"}]
    for m in sorted(models, key=lambda m: CATALOG[m].depth or 0):
        for norm in ("batch", "none"):
            runs = [v for v in views if v.spec["model"] == m and v.spec.get("norm") == norm]
            label = f"{m}, {'BN' if norm == 'batch' else 'no BN'}"
            arm = success_rate(label, runs, threshold, claim_rate, confidence)
            arms.append(arm)
            if norm == "none":
                claim = arm  # the deepest model's BN-less arm is the one the claim is about
    return Study(progress_counts(views), tuple(groups), task_results, best_group(groups), tuple(arms), claim,
                 tuple(paper_comparison(groups)), tuple(resources(groups)), threshold, claim_rate, confidence)
