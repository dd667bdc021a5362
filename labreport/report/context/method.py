"""Section 2, the method: the data and its splits, the models, the hyperparameters, how noise is
told from effects, and the hardware the runs used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from labreport.config import Config
from labreport.models import MODELS
from labreport.ownmodels import model_id
from labreport.report import labels as lb
from labreport.report import provenance as prov
from labreport.report.i18n import Lang
from labreport.science.conclusions import Study
from labreport.science.runs import RunView
from labreport.spec import CIFAR10_TEST, DATASET_TITLES, NUM_CLASSES, train_images


@dataclass(frozen=True)
class OtherData:
    """A data set besides the lab's (CIFAR-100) and the experiments that train on it."""

    title: str
    classes: int
    experiments: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    experiment: str
    train: int  # images
    val: int
    test: int


@dataclass(frozen=True)
class ModelRow:
    name: str
    description: str
    params: int | None  # the BatchNorm variant's; None: not known before a run counted it
    paper_params_m: float | None  # He et al. 2015, millions
    own: bool  # the author's own implementation
    implements: str | None  # the catalogue model an own one is compared as


@dataclass(frozen=True)
class Hyper:
    """One experiment in the hyperparameters table: each setting as the values its grid takes."""

    experiment: str
    models: tuple[str, ...]  # by name
    norm: tuple
    init: tuple
    dropout: tuple
    weight_decay: tuple
    optimizers: tuple[str, ...]  # by name
    lr: tuple
    schedules: tuple  # () where every run keeps its learning rate constant
    batch_size: tuple
    epochs: tuple
    seeds: int


@dataclass(frozen=True)
class Method:
    dataset: str  # the lab's data set (the matrix's first), by its title
    classes: int
    val_size: int  # the validation split (the first experiment's: the same for every run)
    other_data: tuple[OtherData, ...]
    splits: tuple[Split, ...]
    fingerprints: tuple[str, ...]  # of the data the runs read
    unofficial_data: bool  # some run read files that are not the official ones
    fixup: bool  # some experiment initialises with Fixup: the models paragraph says what it is
    own: bool  # some model is the author's own
    implements: bool  # ... and is compared as a catalogue model
    models: tuple[ModelRow, ...]
    thresholds: str  # the threshold of "trained" per data set, in words
    chance: str  # chance per data set, in words
    hyper: tuple[Hyper, ...]
    test_images: tuple[int, ...]  # distinct test-set sizes of the finished runs
    alpha: float
    confidence: float
    claim_rate: float
    devices: tuple[str, ...]  # each device the runs used, in words
    torch: tuple[str, ...]
    precision: tuple[str, ...]


def model_rows(config: Config, views: Sequence[RunView], L: Lang, own: Mapping | None = None) -> list[ModelRow]:
    """The models table: every model the matrix uses (per data set, where it uses several; one's own
    per model_args), in its order, with its parameter count (the BatchNorm variant's) and the paper's;
    the catalogue's count is for 10 classes, so a model of one's own or one on CIFAR-100 is counted
    by its runs. `own`: Study.own, what the student calls each own model and what it implements."""
    used = list(dict.fromkeys((model_id(r.spec.to_dict()), r.spec.dataset) for r in config.runs))
    several = len({d for _, d in used}) > 1
    rows = []
    for m, d in used:
        info, twin = MODELS.get(m), own[m].implements if own and m in own else None
        name = lb.model_name(m, L, own) + (f" ({DATASET_TITLES[d]})" if several else "")
        rows.append(ModelRow(name, lb.model_description(m, L, own),
                             info.params if info and d == "cifar10" else _counted_params(m, d, views),
                             _paper_params(info or MODELS.get(twin or ""), d), not info, twin))
    return rows


def _paper_params(info, dataset: str) -> float | None:
    """The paper's count (millions) of a catalogue model (the one an own model implements), on CIFAR-10."""
    return info.paper_params_m if info and dataset == "cifar10" else None


def _counted_params(model: str, dataset: str, views: Sequence[RunView]) -> int | None:
    """The parameters the model's runs counted (a BatchNorm run's where there is one)."""
    counted = [(v.spec.get("norm") != "batch", v.result["params"]) for v in views
               if model_id(v.spec) == model and v.spec.get("dataset", "cifar10") == dataset
               and v.result and v.result.get("params")]
    return min(counted)[1] if counted else None


METHOD_KEYS = ("model", "norm", "init", "dropout", "optimizer", "lr", "weight_decay", "batch_size", "epochs",
               "schedule", "augment", "precision", "dataset")


def experiment_rows(config: Config) -> list[dict]:
    """Per experiment: every setting the method table shows, grids as their list of values (a model
    as its model_id: one's own with its model_args)."""
    rows = []
    for exp in config.experiments:
        specs = [r.spec.to_dict() for r in config.runs if r.experiment == exp.name]
        row = {"name": exp.name, "task": exp.task, "runs": len(specs), "seeds": list(exp.seeds)}
        for k in METHOD_KEYS:
            vals: list = []
            for sp in specs:
                v = model_id(sp) if k == "model" else sp[k]
                if v not in vals:
                    vals.append(v)
            row[k] = vals
        s0 = specs[0]
        row["split"] = (train_images(s0["val_size"], s0["train_subset"]), s0["val_size"],
                        min(s0["test_subset"] or CIFAR10_TEST, CIFAR10_TEST))
        rows.append(row)
    return rows


def hyper_row(e: dict, L: Lang, own: Mapping) -> Hyper:
    """`e`: one of experiment_rows."""
    return Hyper(e["name"], tuple(lb.model_name(m, L, own) for m in e["model"]), tuple(e["norm"]), tuple(e["init"]),
                 tuple(e["dropout"]), tuple(e["weight_decay"]), tuple(lb.optimizer_name(o) for o in e["optimizer"]),
                 tuple(e["lr"]), tuple(e["schedule"]) if e["schedule"] != ["constant"] else (),
                 tuple(e["batch_size"]), tuple(e["epochs"]), len(e["seeds"]))


def _other_data(config: Config, datasets: Sequence[str]) -> tuple[OtherData, ...]:
    return tuple(OtherData(DATASET_TITLES[d], NUM_CLASSES[d],
                           tuple(dict.fromkeys(r.experiment for r in config.runs if r.spec.dataset == d)))
                 for d in datasets[1:])


def method_of(config: Config, study: Study, views: Sequence[RunView], L: Lang) -> Method:
    experiments = experiment_rows(config)
    datasets = list(dict.fromkeys(r.spec.dataset for r in config.runs))
    models = model_rows(config, views, L, study.own)
    facts = prov.facts(views)
    return Method(
        DATASET_TITLES[datasets[0]], NUM_CLASSES[datasets[0]], experiments[0]["split"][1],
        _other_data(config, datasets),
        tuple(Split(e["name"], *e["split"]) for e in experiments),
        tuple(facts["data_fingerprint"]), False in facts["data_official"],
        any("fixup" in e["init"] for e in experiments),
        any(m.own for m in models), any(m.implements for m in models), tuple(models),
        lb.per_dataset(study.thresholds, L), lb.per_dataset([(d, 1 / NUM_CLASSES[d]) for d in study.datasets], L),
        tuple(hyper_row(e, L, study.own) for e in experiments), study.test_images,
        study.alpha, study.confidence, study.claim_rate,
        tuple(prov.device_phrase(d, L) for d in prov.devices(views)), tuple(facts["torch"]), tuple(facts["precision"]))
