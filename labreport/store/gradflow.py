"""Gradient-flow measurements in the store (task 1 of the lab): what a measurement is, which ones
the [gradflow] settings ask for, and reading them back. No torch: `build` reads only these files.

    <store>/gradflow-<16 hex>/result.json     one measurement, keyed by the hash of its Cell

The feature, layer by layer: engine/gradflow.py measures (and says so), this module keeps,
science/gradflow.py concludes (its facts), report/diagrams.py draws and templates/gradflow.html.j2
writes; `labreport gradflow` and `labreport run` (cluster/local.py) call the engine's `measure`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from labreport.config.sections import GradflowSettings
from labreport.store.files import read_json

# Bump when what a measurement computes changes: every key changes, old results stay on disk unused.
GRADFLOW_VERSION = 1
NETWORKS = (("resnet", "batch"), ("resnet", "none"), ("plain", "batch"), ("plain", "none"))  # (family, norm) measured
SEED = 0  # initial weights, the probe batch and the training images: the same for every network
DIR_PREFIX = "gradflow-"


@dataclass(frozen=True)
class Cell:
    """One measurement: one network, one init, under the [gradflow] settings."""

    model: str  # resnetN or plainN
    norm: str  # "batch" | "none"
    init: str  # "he" | "torch" | "fixup" (resnet, norm none only)
    steps: int  # Adam steps between the two measurements
    batch: int  # images per training step
    images: int  # training images the steps cycle over (disjoint from the probe batch)
    probe: int  # images in the fixed batch the gradient norms are measured on
    lr: float  # Adam learning rate of the training steps
    seed: int = SEED

    @property
    def key(self) -> str:
        canon = json.dumps({"cell": asdict(self), "version": GRADFLOW_VERSION}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    @property
    def family(self) -> str:
        return "resnet" if self.model.startswith("resnet") else "plain"

    @property
    def depth(self) -> int:
        return int(self.model.removeprefix("resnet").removeprefix("plain"))


def cells(settings: GradflowSettings) -> list[Cell]:
    """Every measurement the [gradflow] settings ask for: per depth, per network, per init."""
    common = {k: getattr(settings, k) for k in ("steps", "batch", "images", "probe", "lr")}
    return [Cell(f"{family}{depth}", norm, init, **common)
            for depth in settings.depths for family, norm in NETWORKS for init in settings.inits
            if init != "fixup" or (family, norm) == ("resnet", "none")]  # Fixup: residual nets without BN only


def cell_dir(store_root: str | Path, cell: Cell) -> Path:
    return Path(store_root) / f"{DIR_PREFIX}{cell.key}"


def read_cell(store_root: str | Path, cell: Cell) -> dict | None:
    """The cached measurement, or None when it is missing, damaged or of other settings."""
    res = read_json(cell_dir(store_root, cell) / "result.json")
    if not isinstance(res, dict) or res.get("key") != cell.key or res.get("cell") != asdict(cell):
        return None
    if not all(isinstance(res.get(k), list) for k in ("layers", "grad_init")):
        return None
    return res


def cached(store_root: str | Path, settings: GradflowSettings) -> dict:
    """What the store holds for these settings: {"settings", "cells": [results], "missing": [Cell]}.
    Reads JSON only (no torch, no data): what `build` uses."""
    found, missing = [], []
    for cell in cells(settings):
        res = read_cell(store_root, cell)
        (found.append(res) if res is not None else missing.append(cell))
    return {"settings": asdict(settings), "cells": found, "missing": missing}


