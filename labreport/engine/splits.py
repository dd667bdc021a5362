"""The three splits a spec trains and evaluates on, cut from its data set and put on the device.

The validation split and the subsets come from one fixed seed (SPLIT_SEED), not the run's: every
run of a study is scored on the same images, which is what makes two runs comparable image by image
(compare.py's McNemar tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from labreport.engine.data import split_train_val, subset_indices
from labreport.engine.datasets import CifarData
from labreport.spec import TrainSpec

SPLIT_SEED = 0  # the validation split and the subsets are the same for every run: comparable numbers


@dataclass
class Split:
    x: torch.Tensor  # uint8 (N,3,32,32) on the device
    y: torch.Tensor  # int64 (N,)
    mean: tuple[float, ...]  # the data set's, per channel: how its batches are normalised
    std: tuple[float, ...]


@dataclass
class Prepared:
    """The three splits a spec trains and evaluates on, already on the device."""

    train: Split
    val: Split
    test: Split
    fingerprint: str
    official: bool
    num_classes: int


def prepare(data: CifarData, spec: TrainSpec, device: torch.device) -> Prepared:
    if data.info.name != spec.dataset:
        raise ValueError(f"{spec.dataset} asked for, {data.info.name} given")
    train_idx, val_idx = split_train_val(len(data.train_y), spec.val_size, SPLIT_SEED)
    if spec.train_subset and spec.train_subset < len(train_idx):
        train_idx = train_idx[subset_indices(len(train_idx), spec.train_subset, SPLIT_SEED)]
    test_idx = torch.arange(len(data.test_y))
    if spec.test_subset and spec.test_subset < len(test_idx):
        test_idx = subset_indices(len(test_idx), spec.test_subset, SPLIT_SEED)

    def split(x, y, idx):
        return Split(x[idx].to(device), y[idx].to(device), data.info.mean, data.info.std)

    return Prepared(split(data.train_x, data.train_y, train_idx), split(data.train_x, data.train_y, val_idx),
                    split(data.test_x, data.test_y, test_idx), data.fingerprint, data.official, data.info.num_classes)


def prepare_key(spec: TrainSpec) -> tuple:
    """Specs with equal prepare_key share one Prepared (the runner caches it between runs)."""
    return (spec.dataset, spec.val_size, spec.train_subset, spec.test_subset)
