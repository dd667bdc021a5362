"""What a run is: the training settings, their checks, and the frozen TrainSpec and Run.

A TrainSpec is data (hashable, printable, JSON-able); its key hashes the canonical JSON of the
settings and TRAIN_VERSION, nothing else. config/ reads experiments.toml into these.
Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from labreport.config.setting import Setting, between, increasing_positive_ints, keyword_table, setting, settings_of

# Bump when the trainer changes what a run computes (not how fast): every key changes, so old
# results are kept on disk but no longer count as done.
TRAIN_VERSION = 1

CIFAR10_TRAIN, CIFAR10_TEST = 50_000, 10_000  # images in the training and test files (CIFAR-100's too)
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}  # the classifier's outputs per data set
DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def train_images(val_size: int, train_subset: int = 0) -> int:
    """Training images a run sees on CIFAR-10: the training file less the validation split, at
    most train_subset (0: all). Lets max_iters and time estimates work without the data set."""
    n = CIFAR10_TRAIN - val_size
    return min(n, train_subset) if train_subset else n


class ModelArgs(tuple):
    """model_args, frozen (a spec is hashable): ((name, value), ...) sorted by name, lists as tuples.
    The TOML gives a table (TOML_TYPE); to_dict() gives it back as one."""

    TOML_TYPE = dict

    @classmethod
    def of(cls, table: "dict | ModelArgs") -> "ModelArgs":
        if isinstance(table, ModelArgs):
            return table
        return cls(sorted((k, _frozen(v)) for k, v in dict(table).items()))

    def as_dict(self) -> dict[str, Any]:
        return {k: _thawed(v) for k, v in self}

    def __str__(self) -> str:  # in a run's label: "depth=110, width=16"
        return ", ".join(f"{k}={v}" for k, v in self.as_dict().items())


def _frozen(v: Any) -> Any:
    if isinstance(v, dict):
        return ModelArgs.of(v)
    return tuple(_frozen(x) for x in v) if isinstance(v, (list, tuple)) else v


def _thawed(v: Any) -> Any:
    if isinstance(v, ModelArgs):
        return v.as_dict()
    return [_thawed(x) for x in v] if isinstance(v, tuple) else v


# The choices of the training settings: the dataclass below takes its checks from these
Norm = Literal["batch", "none"]
Init = Literal["he", "torch", "fixup"]
Optimizer = Literal["adam", "sgd"]
Schedule = Literal["constant", "step", "cosine"]
ScheduleUnit = Literal["epoch", "iter"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Dataset = Literal["cifar10", "cifar100"]


@dataclass(frozen=True)
class TrainSpec:
    """Everything that changes what a training run computes. Hashable, printable, JSON-able.

    Each field with setting() metadata is a training setting of experiments.toml, with its default,
    its check and its help here and nowhere else (SETTINGS lists them)."""

    model: str = setting(help="a name from `labreport models`, or a model of your own: 'FILE.py:Class' "
                              "(relative to experiments.toml) or 'package.module:factory'")
    model_args: ModelArgs = setting(ModelArgs(), "a model of your own: the keyword arguments it is called with, "
                                                 "a table (model_args = { depth = 110 })", keyword_table)
    norm: Norm = setting("batch", "BatchNorm everywhere, or none at all")
    dropout: float = setting(0.0, "dropout probability", between(0.0, 1.0, hi_open=True))
    init: Init = setting("he", "He init (paper), PyTorch's layer defaults, or Fixup (Zhang et al. 2019; "
                               "CIFAR ResNets, norm = none)")
    optimizer: Optimizer = setting("adam", "Adam (the lab's) or SGD with momentum (the paper's)")
    lr: float = setting(1e-4, "peak learning rate", between(0.0, 10.0, lo_open=True))
    momentum: float = setting(0.9, "SGD momentum (ignored by Adam)", between(0.0, 1.0, hi_open=True))
    nesterov: bool = setting(False, "Nesterov momentum (SGD)")
    weight_decay: float = setting(0.0, "L2 through the optimizer's weight_decay", between(0.0, 1.0))
    schedule: Schedule = setting("constant",
                                 "the learning rate over the run: constant, steps at milestones, cosine to 0")
    milestones: tuple[int, ...] = setting((), "step schedule: lr *= gamma at each (epochs or iterations)",
                                          increasing_positive_ints)
    gamma: float = setting(0.1, "step schedule: the factor at each milestone", between(0.0, 1.0, lo_open=True))
    schedule_unit: ScheduleUnit = setting("epoch", "unit of milestones and warm-up")
    warmup_lr: float = setting(0.0, "lr during warm-up (0: no warm-up)", between(0.0))
    warmup: int = setting(0, "length of the warm-up, in schedule_unit", between(0))
    epochs: int = setting(50, "passes over the training images", between(1, 100_000))
    max_iters: int = setting(0, "stop after this many optimizer steps (0: after `epochs`); epochs then follow "
                                "from it", between(0, 10_000_000))
    batch_size: int = setting(128, "images per optimizer step", between(1, 65_536))
    augment: bool = setting(True, "pad 4 + random 32x32 crop + horizontal flip")
    val_size: int = setting(5000, "training images held out to choose the epoch", between(0, 49_999))
    train_subset: int = setting(0, "train on this many images (0: all)", between(0))
    test_subset: int = setting(0, "evaluate on this many test images (0: all 10,000)", between(0))
    # a key hashes the value as written ("auto"), not what it resolves to: a run keeps its key wherever it
    # trains, and what "auto" computes where a run ran (fp32 on a CPU) is in its result's provenance
    precision: Precision = setting("auto", "auto: bf16 on compute capability >= 8.0, fp16 (loss scaling) on 7.x "
                                           "except norm = none (fp32: fp16's range is too small for it), fp32 on "
                                           "older GPUs and CPUs")
    deterministic: bool = setting(False, "bit-exact reproducibility (slower)")
    seed: int = 0  # set by `seeds`, not a setting: the initial weights, dropout masks, data order
    dataset: Dataset = setting("cifar10", "the data set: CIFAR-10 (the lab's) or CIFAR-100 (the same format, 100 "
                                          "classes: its fine labels)")
    model_source: str = ""  # a model of your own: its file's sha256 (ownmodels.py), so that an edit retrains

    def __post_init__(self):
        if not isinstance(self.model_args, ModelArgs):  # a table, from the TOML or a spec.json
            object.__setattr__(self, "model_args", ModelArgs.of(self.model_args))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        d["model_args"] = self.model_args.as_dict()
        for k in OMITTED_AT_DEFAULT:
            if getattr(self, k) == DEFAULTS[k]:
                del d[k]
        return d

    @property
    def key(self) -> str:
        """Stable 16-hex-digit id: sha256 of the canonical JSON of the spec and TRAIN_VERSION."""
        canon = json.dumps({"spec": self.to_dict(), "train_version": TRAIN_VERSION},
                           sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


SETTINGS: dict[str, Setting] = settings_of(TrainSpec)  # the training settings a TOML table may set
# settings whose value is a list (milestones): a list of lists is their grid
GRID_KEYS_WITH_LIST_VALUES = {k for k, s in SETTINGS.items() if s.types == (list,)}
# Settings left out of the spec dict (and so of the key) while at their default: the keys of runs made
# before they existed stay valid (store/legacy.py reads what else such runs left).
OMITTED_AT_DEFAULT = ("max_iters", "model_args", "model_source")
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainSpec)}  # every field's, settings or not


def coords_text(coords, sep: str = ", ") -> str:
    """Grid coordinates as a label writes them: "dropout=0.15, weight_decay=0.0001"; model_args as
    their own arguments: "depth=110"."""
    def text(k, v):
        if k == "model_args":
            return sep.join(text(a, b) for a, b in (v.items() if isinstance(v, dict) else v))
        return f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"

    return sep.join(text(k, v) for k, v in coords)


@dataclass(frozen=True)
class Run:
    """One point of an experiment's grid: the unit that is trained, cached and reported."""

    experiment: str
    task: str | None
    spec: TrainSpec
    varying: tuple[tuple[str, Any], ...]  # the grid coordinates that tell this run apart

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def coords(self) -> dict[str, Any]:
        """The grid coordinates as plain data (model_args a table), for JSON and data frames."""
        return {k: v.as_dict() if isinstance(v, ModelArgs) else v for k, v in self.varying}

    @property
    def label(self) -> str:
        coords = coords_text(self.varying)
        return f"{self.experiment}[{coords}]" if coords else self.experiment
