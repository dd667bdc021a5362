"""Gradient flow, measured (task 1 of the lab): ||dL/dW|| of every conv and linear layer, by depth.

For each network (ResNet and its plain twin, with and without BatchNorm), depth and init, one
measurement is: the per-layer gradient norms of the cross-entropy on one fixed batch of CIFAR-10
training images (normalised, no augmentation) at initialisation, and again after `steps` steps of
Adam on a few hundred other training images. Each measurement is cached in the run store like a
run, keyed by the hash of its settings, and is never computed twice:

    <store>/gradflow-<16 hex>/result.json

`build` must not train or load data, so it reads only these files (`cached`, no torch); the
measurement itself (`ensure`) needs the data set and imports torch. The summary numbers are pure
functions at the bottom (`orders_of_magnitude`, `summary_rows`, `facts`), unit-tested on hand-made
numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labreport.engine import hostmem
from labreport.store import atomic_write_json, read_json

# Bump when what a measurement computes changes: every key changes, old results stay on disk unused.
GRADFLOW_VERSION = 1
NETWORKS = (("resnet", "batch"), ("resnet", "none"), ("plain", "batch"), ("plain", "none"))  # figure order
DEPTHS = (20, 32, 44, 56, 110)  # depths with both a resnetN and a plainN in the model zoo
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


def cells(settings: dict) -> list[Cell]:
    """Every measurement the [gradflow] settings ask for, in figure order: depth, network, init."""
    common = {k: settings[k] for k in ("steps", "batch", "images", "probe", "lr")}
    return [Cell(f"{family}{depth}", norm, init, **common)
            for depth in settings["depths"] for family, norm in NETWORKS for init in settings["inits"]
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


def cached(store_root: str | Path, settings: dict) -> dict:
    """What the store holds for these settings: {"settings", "cells": [results], "missing": [Cell]}.
    Reads JSON only (no torch, no data): what `build` uses."""
    found, missing = [], []
    for cell in cells(settings):
        res = read_cell(store_root, cell)
        (found.append(res) if res is not None else missing.append(cell))
    return {"settings": dict(settings), "cells": found, "missing": missing}


def ensure(store_root: str | Path, settings: dict, data_loader: Callable[[], Any], device: str = "auto",
           on_cell: Callable[[Cell, dict, bool], None] | None = None) -> dict:
    """Measure what is not cached yet, then return `cached(...)`. `data_loader()` (a Cifar10) is
    called at most once, and only when something is missing; `on_cell(cell, result, was_cached)`
    after each measurement (for progress output)."""
    todo = []
    for cell in cells(settings):
        res = read_cell(store_root, cell)
        if res is not None:
            if on_cell:
                on_cell(cell, res, True)
        else:
            todo.append(cell)
    if todo:
        from labreport.engine.device import resolve_device  # torch: only when something is measured

        data, dev = data_loader(), resolve_device(device)
        for cell in todo:
            res = measure_cell(cell, data, dev)
            atomic_write_json(cell_dir(store_root, cell) / "result.json", res)
            if on_cell:
                on_cell(cell, res, False)
    return cached(store_root, settings)


# --------------------------------------------------------------------------------------------
# The measurement (torch)
# --------------------------------------------------------------------------------------------
def _weighted_layers(model) -> list[tuple[str, Any]]:
    """Conv and linear layers in the order the forward pass meets them (module definition order
    in these nets): index 1 is the first layer, the last one is the FC layer."""
    from torch import nn

    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def layer_grad_norms(model, x, y) -> tuple[list[float], float, float]:
    """(||dL/dW|| per weighted layer, loss, std of the logits) for one batch, in training mode
    (BatchNorm on batch statistics). Norms are summed in float64: exploding nets overflow float32."""
    import torch.nn.functional as F

    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x)
    loss = F.cross_entropy(out.float(), y)
    loss.backward()
    norms = [m.weight.grad.double().norm().item() for _, m in _weighted_layers(model)]
    return norms, loss.item(), out.detach().double().std().item()


def measure_cell(cell: Cell, data, device) -> dict:
    """Per-layer gradient norms at initialisation and after `cell.steps` Adam steps."""
    import torch

    t0 = time.perf_counter()
    # x86 CPUs compute on denormal floats (|x| < 1.2e-38) some 100x slower, and a vanishing or
    # exploding net is full of them: flush them to zero. A gradient that small has vanished anyway.
    flush = device.type == "cpu" and torch.set_flush_denormal(True)
    if device.type == "cpu":
        hostmem.keep_freed_memory()  # as train() does: freed activations stay in the process
    try:
        return _measure(cell, data, device, t0)
    finally:
        if flush:
            torch.set_flush_denormal(False)


def _measure(cell: Cell, data, device, t0: float) -> dict:
    import torch
    import torch.nn.functional as F

    from labreport import __version__
    from labreport.engine.data import normalize
    from labreport.errors import DataError
    from labreport.engine.networks import build_model

    n = len(data.train_y)
    if cell.probe + cell.images > n:
        raise DataError(f"[gradflow] needs probe + images = {cell.probe + cell.images} training images, "
                        f"the data set has {n}")
    gen = torch.Generator().manual_seed(cell.seed)
    perm = torch.randperm(n, generator=gen)
    probe_idx, pool = perm[:cell.probe], perm[cell.probe:cell.probe + cell.images]

    def batch(idx):
        x = normalize(data.train_x[idx]).to(device).contiguous(memory_format=torch.channels_last)
        return x, data.train_y[idx].to(device)

    torch.manual_seed(cell.seed)  # the same initial weights for every run of this cell
    model = build_model(cell.model, norm=cell.norm, init=cell.init).to(device)
    model = model.to(memory_format=torch.channels_last)
    layers = [{"name": name, "kind": "linear" if name == "fc" else "conv", "numel": m.weight.numel()}
              for name, m in _weighted_layers(model)]
    px, py = batch(probe_idx)
    grad_init, loss_init, std_init = layer_grad_norms(model, px, py)

    opt = torch.optim.Adam(model.parameters(), lr=cell.lr)
    order, pos, diverged_at = pool[torch.randperm(len(pool), generator=gen)], 0, None
    for step in range(cell.steps):
        if pos + cell.batch > len(order):  # a new pass over the pool, reshuffled
            order, pos = pool[torch.randperm(len(pool), generator=gen)], 0
        x, y = batch(order[pos:pos + cell.batch])
        pos += cell.batch
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).float(), y)
        if not torch.isfinite(loss):
            diverged_at = step
            break
        loss.backward()
        opt.step()
    if diverged_at is None:
        grad_trained, loss_trained, std_trained = layer_grad_norms(model, px, py)
    else:
        grad_trained, loss_trained, std_trained = None, None, None
    return {
        "key": cell.key, "cell": asdict(cell), "version": GRADFLOW_VERSION, "layers": layers,
        "grad_init": grad_init, "loss_init": loss_init, "logits_std_init": std_init,
        "grad_trained": grad_trained, "loss_trained": loss_trained, "logits_std_trained": std_trained,
        "diverged_at_step": diverged_at, "time_s": time.perf_counter() - t0,
        "provenance": {"labreport": __version__, "torch": torch.__version__, "device": str(device),
                       "threads": torch.get_num_threads(), "data_fingerprint": data.fingerprint,
                       "data_official": data.official,
                       "flush_denormal": device.type == "cpu"},
    }


# --------------------------------------------------------------------------------------------
# Summary numbers (pure)
# --------------------------------------------------------------------------------------------
def _finite_positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def orders_of_magnitude(first: float | None, last: float | None) -> float | None:
    """log10(last / first): by how many orders of magnitude the gradient norm falls from the last
    layer to the first (negative: it grows). None when either norm is missing, zero or not finite."""
    if not (_finite_positive(first) and _finite_positive(last)):
        return None
    return math.log10(last / first)


def network_label(family: str, norm: str, depth: int, lang: str = "en") -> str:
    bn = ("с BN" if norm == "batch" else "без BN") if lang == "ru" else ("BN" if norm == "batch" else "no BN")
    name = f"ResNet-{depth}" if family == "resnet" else (f"плоская-{depth}" if lang == "ru" else f"plain-{depth}")
    return f"{name}, {bn}"


def summary_rows(cells_: list[dict]) -> list[dict]:
    """One row per measurement: first- and last-layer gradient norm and the orders of magnitude
    between them, at initialisation and after the training steps."""
    rows = []
    for res in cells_:
        c = res["cell"]
        family = "resnet" if c["model"].startswith("resnet") else "plain"
        depth = int(c["model"].removeprefix(family))
        g0, g1 = res["grad_init"], res.get("grad_trained")
        rows.append({
            "model": c["model"], "family": family, "norm": c["norm"], "init": c["init"], "depth": depth,
            "steps": c["steps"], "first_init": g0[0], "last_init": g0[-1],
            "orders_init": orders_of_magnitude(g0[0], g0[-1]),
            "first_trained": g1[0] if g1 else None, "last_trained": g1[-1] if g1 else None,
            "orders_trained": orders_of_magnitude(g1[0], g1[-1]) if g1 else None,
            "logits_std_init": res.get("logits_std_init"), "diverged_at_step": res.get("diverged_at_step"),
            "time_s": res.get("time_s"),
        })
    return rows


def _find(rows: list[dict], **want) -> dict | None:
    return next((r for r in rows if all(r[k] == v for k, v in want.items())), None)


def table_lines(cells_: list[dict], steps: int) -> list[str]:
    """The measurement as a plain-text table (`labreport gradflow` prints it)."""
    def num(v):
        return "-" if v is None else f"{v:.3g}"

    def orders(r, when):
        if r[f"orders_{when}"] is None and r[f"first_{when}"] == 0:
            return "vanished"  # the first layer's gradient is 0 in float32
        return "-" if r[f"orders_{when}"] is None else f"{r[f'orders_{when}']:+.2f}"

    lines = [f"{'':<26}{'at init':^30}   {f'after {steps} Adam steps':^30}",
             f"{'network':<20}{'init':<6}" + f"{'first':>10}{'last':>10}{'orders':>10}   " * 2]
    for r in summary_rows(cells_):
        lines.append(f"{network_label(r['family'], r['norm'], r['depth']):<20}{r['init']:<6}"
                     f"{num(r['first_init']):>10}{num(r['last_init']):>10}{orders(r, 'init'):>10}   "
                     f"{num(r['first_trained']):>10}{num(r['last_trained']):>10}{orders(r, 'trained'):>10}")
    lines.append("first, last: ||dL/dW|| of the first and the last layer; orders: log10(last / first), "
                 "how many orders of magnitude the gradient falls from the last layer to the first")
    return lines


def skip_gain(rows: list[dict], depth: int, norm: str, init: str, when: str = "init") -> float | None:
    """Orders of magnitude by which the first layer's gradient of the ResNet exceeds the plain net's
    (same depth, norm, init): log10(first_resnet / first_plain)."""
    res, plain = _find(rows, family="resnet", depth=depth, norm=norm, init=init), \
        _find(rows, family="plain", depth=depth, norm=norm, init=init)
    if res is None or plain is None:
        return None
    return orders_of_magnitude(plain[f"first_{when}"], res[f"first_{when}"])


def change(row: dict | None, when: str = "init") -> float | None:
    """|orders of magnitude| the gradient norm changes between the last and the first layer:
    inf when the first layer's gradient vanished to 0 (float32) and the last one's did not."""
    if row is None:
        return None
    o = row[f"orders_{when}"]
    if o is not None:
        return abs(o)
    return math.inf if row[f"first_{when}"] == 0 and _finite_positive(row[f"last_{when}"]) else None


def facts(measurement: dict, lab_inits: list[str]) -> dict:
    """What the report's theory section says, for the deepest measured depth: per network the
    orders of magnitude at init and after training under the init the lab runs use (`lab_inits`,
    the first that was measured), the skip connections' gain at the first layer, and the logits
    std of the BN-less ResNet under each init."""
    rows = summary_rows(measurement["cells"])
    if not rows:
        return {"rows": [], "depth": None}
    depth = max(r["depth"] for r in rows)
    measured_inits = [i for i in measurement["settings"]["inits"] if any(r["init"] == i for r in rows)]
    init = next((i for i in lab_inits if i in measured_inits), measured_inits[0])
    nets = {}
    for family, norm in NETWORKS:
        r = _find(rows, family=family, depth=depth, norm=norm, init=init)
        nets[f"{family}_{norm}"] = r
    # the ResNet's gradient changes less over depth than the plain net's (per norm, at init and trained)
    steadier = {f"{norm}_{when}": (a < b) if (a := change(nets[f"resnet_{norm}"], when)) is not None
                and (b := change(nets[f"plain_{norm}"], when)) is not None else None
                for norm in ("batch", "none") for when in ("init", "trained")}
    # the other init measured on every network (Fixup is measured on the BN-less ResNet only)
    other = next((i for i in measured_inits if i not in (init, "fixup")), None)
    other_nets = {f"{f}_{n}": _find(rows, family=f, depth=depth, norm=n, init=other) for f, n in NETWORKS} \
        if other else None
    nobn_std = {i: r["logits_std_init"] for i in measured_inits
                if (r := _find(rows, family="resnet", depth=depth, norm="none", init=i))}
    return {
        "rows": rows, "depth": depth, "init": init, "inits": measured_inits, "nets": nets,
        "steps": measurement["settings"]["steps"], "lr": measurement["settings"]["lr"],
        "batch": measurement["settings"]["batch"],
        "gain_bn": skip_gain(rows, depth, "batch", init), "gain_nobn": skip_gain(rows, depth, "none", init),
        "gain_bn_trained": skip_gain(rows, depth, "batch", init, "trained"),
        "gain_nobn_trained": skip_gain(rows, depth, "none", init, "trained"),
        "steadier": steadier, "other_init": other, "other_nets": other_nets, "nobn_logits_std": nobn_std, "missing": len(measurement["missing"]),
        "probe": measurement["settings"]["probe"],
        "total": len(measurement["cells"]) + len(measurement["missing"]),
    }
