"""Pure functions: run results -> the study's conclusions. No I/O, no matplotlib, no torch.

Every number a sentence of the report states comes from here (and from compare.py: which
differences are noise; bnclaim.py: the BatchNorm claim; stats.py: the tests), and every function
is unit-tested on hand-made numbers. Accuracy means the test accuracy at the epoch chosen on
validation (`test_acc_at_best`), never the best test epoch.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from labreport.science.bnclaim import BnClaim, bn_claims, trained
from labreport.models import MODELS, ModelInfo
from labreport.ownmodels import Declared, model_id
from labreport.science.compare import ALPHA, Effect, Ranking, factor_effect, rank
from labreport.science.identity import OwnModel, identify
from labreport.spec import NUM_CLASSES
from labreport.science.runs import RUN_STATES, RunView

METRIC = "test_acc_at_best"


# --------------------------------------------------------------------------------------------
# Groups: runs that differ only by seed
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    label: str
    experiment: str
    task: str | None
    model: str  # ownmodels.model_id: a catalogue name, or one's own with its model_args
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
        groups.append(Group(label, exp, runs[0].task, model_id(runs[0].spec), coords, tuple(runs)))
    return groups


# --------------------------------------------------------------------------------------------
# Conclusions
# --------------------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for the std of a single value)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def best_group(groups: Iterable[Group]) -> Group | None:
    """The group with the highest mean accuracy (the first in matrix order on an exact tie); None
    when nothing has finished. Which others are indistinguishable from it is compare.rank's answer."""
    scored = [g for g in groups if g.mean is not None]
    return max(scored, key=lambda g: g.mean) if scored else None


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
    own: str | None = None  # the student's implementation of `model` this row is (its model_id); None: the catalogue's


YARDSTICK_STD = 0.16  # ResNet-110's std in Table 6, the only spread the paper publishes


def trained_as(spec: dict, recipe: Mapping[str, Any]) -> bool:
    """Did a run train with every setting of `recipe` (the paper's: [profile.paper], report/study.py)?
    An empty recipe is none: no run trained with it."""
    return bool(recipe) and all(spec.get(k) == v for k, v in recipe.items())


def within_spread(ours: float | None, centre: float | None, std: float | None) -> bool | None:
    """|ours - centre| <= std; None when a number is missing."""
    if ours is None or centre is None or std is None:
        return None
    return abs(ours - centre) <= std + 1e-9


def paper_comparison(groups: Sequence[Group], own: Mapping[str, OwnModel] | None = None,
                     recipe: Mapping[str, Any] | None = None) -> list[PaperRow]:
    """Our error next to He et al. 2015 Table 6 for every CIFAR ResNet depth that was run on CIFAR-10
    (BN on, best configuration of that depth): the catalogue's model, then each model of one's own
    that implements it (`own`: science/identity.py), as a row of its own. Only ResNet-110 has a
    published spread (mean ± std over 5 runs); for the other depths `within_yardstick` borrows it,
    and says so by its name. `recipe`: the paper's training settings, to tell runs that used them."""
    own = own or {}
    rows = []
    for model, info in MODELS.items():
        if info.paper_error is None:
            continue
        for mid in [model, *(m.id for m in own.values() if m.implements == model)]:
            cand = [g for g in groups if g.model == mid and g.runs[0].spec.get("norm") == "batch"
                    and dataset_of(g) == "cifar10"]
            if cand:
                rows.append(_paper_row(info, best_group(cand) or cand[0], None if mid == model else mid, recipe or {}))
    return rows


def _paper_row(info: ModelInfo, g: Group, own: str | None, recipe: Mapping[str, Any]) -> PaperRow:
    err = None if g.mean is None else 100 * (1 - g.mean)
    std = None if g.std is None else 100 * g.std
    return PaperRow(info.name, info.depth, info.paper_error, err, std, len(g.values), g.runs[0].spec["epochs"],
                    info.paper_mean, info.paper_std, info.paper_runs,
                    within_spread(err, info.paper_mean, info.paper_std),
                    within_spread(err, info.paper_error, YARDSTICK_STD),
                    all(trained_as(r.spec, recipe) for r in g.runs), own)


@dataclass(frozen=True)
class Resource:
    label: str
    model: str
    params: int | None
    epoch_time_s: float | None
    images_per_s: float | None
    peak_mem_mib: float | None
    gap: float | None  # final train accuracy - final test accuracy (overfitting)
    trained: bool = False  # every finished run beat the "trained" threshold: only then is the gap overfitting


def resources(groups: Sequence[Group], threshold_of: Callable[[str], float] | None = None) -> list[Resource]:
    """Cost and overfitting per configuration; `threshold_of(dataset)` is the "trained" threshold
    (a network at chance has no train-test gap to speak of, and the conclusions leave it out);
    None: each data set's default_threshold."""
    threshold_of = threshold_of or default_threshold
    return [_resource(g, threshold_of(dataset_of(g))) for g in groups]


def _resource(g: Group, threshold: float) -> Resource:
    runs = g.finished
    params = next((r.metric("params") for r in runs if r.metric("params")), None)
    ips = [h["images_per_s"] for r in runs for h in r.history if h.get("images_per_s")]
    gaps = [tr - te for r in runs if (tr := r.metric("final_train_acc")) is not None
            and (te := r.metric("final_test_acc")) is not None]
    return Resource(g.label, g.model, int(params) if params else None, g.mean_of("mean_epoch_time_s"),
                    statistics.fmean(ips) if ips else None, g.mean_of("peak_mem_alloc_mib"),
                    statistics.fmean(gaps) if gaps else None,
                    bool(runs) and all(trained(r, threshold) for r in runs))


def progress_counts(views: Sequence[RunView]) -> dict[str, int]:
    counts = dict.fromkeys(RUN_STATES, 0)
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
    ranking: Ranking | None  # the best configuration and which others are indistinguishable from it
    factors: tuple[Effect, ...]  # grid factors with >= 2 levels in this task
    heatmap: tuple[str, str] | None  # (row factor, column factor) when the task is a 2-factor grid


@dataclass(frozen=True)
class Study:
    counts: dict[str, int]
    groups: tuple[Group, ...]
    tasks: tuple[TaskResult, ...]
    ranking: Ranking | None  # over every configuration of the study: task 6, "which result is best"
    bn: tuple[BnClaim, ...]  # per model (and budget) that ran with and without BN
    claim: BnClaim | None  # the deepest such model's: the one the lab's claim is about
    paper: tuple[PaperRow, ...]
    resources: tuple[Resource, ...]
    threshold: float
    claim_rate: float
    confidence: float
    alpha: float = ALPHA
    test_images: tuple[int, ...] = ()  # distinct test-set sizes of the finished runs
    thresholds: tuple[tuple[str, float], ...] = ()  # (data set, threshold of "trained"), in matrix order
    own: Mapping[str, OwnModel] = field(default_factory=dict)  # the models of one's own, by model_id

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(d for d, _ in self.thresholds) or ("cifar10",)

    @property
    def seeds(self) -> tuple[int, ...]:
        """Distinct numbers of finished seeds per configuration."""
        return tuple(sorted({len(g.values) for g in self.groups if g.values}))


def dataset_of(g: Group) -> str:
    return g.runs[0].spec.get("dataset", "cifar10")


def _same_data(groups: Sequence[Group]) -> list[Group]:
    """The groups on the data set of the first: accuracies on other test sets are not comparable."""
    return [g for g in groups if dataset_of(g) == dataset_of(groups[0])] if groups else []


def _task_result(task: str, groups: Sequence[Group], alpha: float) -> TaskResult:
    names: list[str] = []
    for g in groups:
        names += [k for k, _ in g.coords if k not in names and k != "dataset"]  # a data set is not a treatment
    comparable = _same_data(groups)
    effects = tuple(factor_effect(comparable, f, alpha) for f in names
                    if len({repr(g.coord(f)) for g in comparable if g.coord(f) is not None}) >= 2)
    grid = [e.factor for e in effects]
    heat = (grid[0], grid[1]) if len(grid) == 2 else None
    return TaskResult(task, tuple(groups), rank(comparable, alpha), effects, heat)


def default_threshold(dataset: str) -> float:
    """Twice chance: 0.2 on CIFAR-10, 0.02 on CIFAR-100 ([analysis] trained_threshold sets one for all)."""
    return 2.0 / NUM_CLASSES[dataset]


def conclude(views: Sequence[RunView], threshold: float | None, claim_rate: float, confidence: float = 0.95,
             alpha: float = ALPHA, declared: Mapping[str, Declared] | None = None,
             paper_recipe: Mapping[str, Any] | None = None) -> Study:
    """The study's conclusions; `threshold` None: each data set's default_threshold. The overall
    ranking is over the configurations on the first data set of the matrix (the lab's). `declared`:
    per experiment, what it says of its model of one's own (its name, the catalogue model it implements).
    `paper_recipe`: He et al.'s training settings ([profile.paper]), to tell runs that used them."""
    groups = group_runs(views)
    own = identify(views, declared)
    tasks = sorted({g.task or "" for g in groups}, key=lambda t: (t == "", t))
    task_results = tuple(_task_result(t, [g for g in groups if (g.task or "") == t], alpha) for t in tasks)
    datasets = tuple(dict.fromkeys(v.spec.get("dataset", "cifar10") for v in views)) or ("cifar10",)
    thresholds = tuple((d, threshold if threshold is not None else default_threshold(d)) for d in datasets)
    threshold_of = dict(thresholds).__getitem__
    claims = tuple(bn_claims(views, threshold_of, claim_rate, alpha, confidence))
    deepest = claims[-1] if claims else None
    sizes = tuple(sorted({int(n) for v in views if v.finished and (n := v.metric("n_test"))}))
    return Study(progress_counts(views), tuple(groups), task_results, rank(_same_data(groups), alpha), claims,
                 deepest, tuple(paper_comparison(groups, own, paper_recipe)), tuple(resources(groups, threshold_of)),
                 thresholds[0][1], claim_rate, confidence, alpha, sizes, thresholds, own)
