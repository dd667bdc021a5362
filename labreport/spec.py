"""What a run is: the training settings, their checks, and the frozen TrainSpec and Run.

A TrainSpec is data (hashable, printable, JSON-able); its key hashes the canonical JSON of the
settings and TRAIN_VERSION, nothing else. config.py reads experiments.toml into these.
Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

# Bump when train.py changes what a run computes (not how fast): every key changes, so old
# results are kept on disk but no longer count as done.
TRAIN_VERSION = 1

# --------------------------------------------------------------------------------------------
# The training settings: name -> (type, default, check, what it means)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    type: type | tuple[type, ...]
    default: Any
    check: Any = None  # callable(value) -> error text or None
    help: str = ""


CIFAR10_TRAIN, CIFAR10_TEST = 50_000, 10_000  # images in the data set's training and test files


def train_images(val_size: int, train_subset: int = 0) -> int:
    """Training images a run sees on CIFAR-10: the training file less the validation split, at
    most train_subset (0: all). Lets max_iters and time estimates work without the data set."""
    n = CIFAR10_TRAIN - val_size
    return min(n, train_subset) if train_subset else n


def _choice(*options):
    return lambda v: None if v in options else f"must be one of {', '.join(map(repr, options))}"


def _range(lo=None, hi=None, lo_open=False, hi_open=False):
    def check(v):
        if isinstance(v, float) and not math.isfinite(v):
            return "must be a finite number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo}"
        if hi is not None and (v >= hi if hi_open else v > hi):
            return f"must be {'<' if hi_open else '<='} {hi}"
        return None
    return check


def _milestones(v):
    if not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in v):
        return "must be a list of positive integers"
    if list(v) != sorted(set(v)):
        return "must be strictly increasing"
    return None


FIELDS: dict[str, Field] = {
    "model": Field(str, None, None, "a name from `labreport models`"),
    "norm": Field(str, "batch", _choice("batch", "none"), "BatchNorm everywhere, or none at all"),
    "dropout": Field(float, 0.0, _range(0.0, 1.0, hi_open=True), "dropout probability"),
    "init": Field(str, "he", _choice("he", "torch", "fixup"),
                  "He init (paper), PyTorch's layer defaults, or Fixup (Zhang et al. 2019; CIFAR ResNets, norm = none)"),
    "optimizer": Field(str, "adam", _choice("adam", "sgd")),
    "lr": Field(float, 1e-4, _range(0.0, 10.0, lo_open=True), "peak learning rate"),
    "momentum": Field(float, 0.9, _range(0.0, 1.0, hi_open=True), "SGD momentum (ignored by Adam)"),
    "nesterov": Field(bool, False),
    "weight_decay": Field(float, 0.0, _range(0.0, 1.0), "L2 through the optimizer's weight_decay"),
    "schedule": Field(str, "constant", _choice("constant", "step", "cosine")),
    "milestones": Field(list, [], _milestones, "step schedule: lr *= gamma at each (epochs or iterations)"),
    "gamma": Field(float, 0.1, _range(0.0, 1.0, lo_open=True)),
    "schedule_unit": Field(str, "epoch", _choice("epoch", "iter"), "unit of milestones and warm-up"),
    "warmup_lr": Field(float, 0.0, _range(0.0), "lr during warm-up (0: no warm-up)"),
    "warmup": Field(int, 0, _range(0), "length of the warm-up, in schedule_unit"),
    "epochs": Field(int, 50, _range(1, 100_000)),
    "max_iters": Field(int, 0, _range(0, 10_000_000),
                       "stop after this many optimizer steps (0: after `epochs`); epochs then follow from it"),
    "batch_size": Field(int, 128, _range(1, 65_536), "images per optimizer step"),
    "augment": Field(bool, True, None, "pad 4 + random 32x32 crop + horizontal flip"),
    "val_size": Field(int, 5000, _range(0, 49_999), "training images held out to choose the epoch"),
    "train_subset": Field(int, 0, _range(0), "train on this many images (0: all)"),
    "test_subset": Field(int, 0, _range(0), "evaluate on this many test images (0: all 10,000)"),
    # Adding "fp16" and auto's GPU rule (issue 14) keeps TRAIN_VERSION: a key hashes the value as
    # written, and what an existing spec computes where it has run (auto on a CPU: fp32) is unchanged.
    "precision": Field(str, "auto", _choice("auto", "fp32", "bf16", "fp16"),
                       "auto: bf16 on compute capability >= 8.0, fp16 (loss scaling) on 7.x except "
                       "norm = none (fp32: fp16's range is too small for it), fp32 on older GPUs and CPUs"),
    "deterministic": Field(bool, False, None, "bit-exact reproducibility (slower)"),
}
GRID_KEYS_WITH_LIST_VALUES = {"milestones"}
# Training settings added after TRAIN_VERSION 1: left out of the spec dict (and so of the key) while
# at their default, so that the keys and results of existing runs stay valid.
OMITTED_AT_DEFAULT = ("max_iters",)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class TrainSpec:
    """Everything that changes what a training run computes. Hashable, printable, JSON-able."""

    model: str
    norm: str = "batch"
    dropout: float = 0.0
    init: str = "he"
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    schedule_unit: str = "epoch"
    warmup_lr: float = 0.0
    warmup: int = 0
    epochs: int = 50
    max_iters: int = 0  # > 0: stop after this many steps; `epochs` is then ceil(max_iters / steps per epoch)
    batch_size: int = 128
    augment: bool = True
    val_size: int = 5000
    train_subset: int = 0
    test_subset: int = 0
    precision: str = "auto"
    deterministic: bool = False
    seed: int = 0
    dataset: str = "cifar10"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        for k in OMITTED_AT_DEFAULT:
            if d[k] == FIELDS[k].default:
                del d[k]
        return d

    @property
    def key(self) -> str:
        """Stable 16-hex-digit id: sha256 of the canonical JSON of the spec and TRAIN_VERSION."""
        canon = json.dumps({"spec": self.to_dict(), "train_version": TRAIN_VERSION},
                           sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainSpec":
        d = dict(d)
        d["milestones"] = tuple(d.get("milestones", ()))
        return cls(**d)


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
    def label(self) -> str:
        coords = ", ".join(f"{k}={_fmt(v)}" for k, v in self.varying)
        return f"{self.experiment}[{coords}]" if coords else self.experiment
