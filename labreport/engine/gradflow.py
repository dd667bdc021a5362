"""Gradient flow, measured (task 1 of the lab): ||dL/dW|| of every conv and linear layer, by depth.

For each network (ResNet and its plain twin, with and without BatchNorm), depth and init, one
measurement is: the per-layer gradient norms of the cross-entropy on one fixed batch of CIFAR-10
training images (normalised, no augmentation) at initialisation, and again after `steps` steps of
Adam on a few hundred other training images. Each measurement is cached in the run store like a
run (store/gradflow.py) and is never computed twice; its summary numbers are science/gradflow.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from labreport.engine import hostmem
from labreport.config.sections import GradflowSettings
from labreport.store import atomic_write_json
from labreport.store.gradflow import GRADFLOW_VERSION, Cell, cached, cell_dir, cells, read_cell


def ensure(store_root: str | Path, settings: GradflowSettings, data_loader: Callable[[], Any], device: str = "auto",
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
def measure(settings: GradflowSettings, store_root: Path, data_loader: Callable[[], Any], device: str,
            progress: Callable[[str], None], result: Callable[[str], None]) -> dict:
    """Task 1's gradient-flow measurement as `labreport run` and `labreport gradflow` make it: what is
    not in the store yet, a `progress` line per cell measured, a `result` line at the end."""
    from labreport.science.gradflow import network_label

    measured: list[float] = []

    def said(cell, res, was_cached):
        if not was_cached:
            measured.append(res["time_s"])
            progress(f"gradflow: {network_label(cell.family, cell.norm, cell.depth)}, init {cell.init}: "
                     f"{res['time_s']:.1f} s")

    m = ensure(store_root, settings, data_loader, device, on_cell=said)
    result(f"gradflow: {len(measured)} measured ({sum(measured):.0f} s), {len(m['cells']) - len(measured)} cached  "
           f"(store: {store_root})")
    return m


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
    flushed_before = flushing_denormals()
    flush = device.type == "cpu" and torch.set_flush_denormal(True)
    if device.type == "cpu":
        hostmem.keep_freed_memory()  # as train() does: freed activations stay in the process
    try:
        return _measure(cell, data, device, t0)
    finally:
        if flush and not flushed_before:  # the caller's setting, as it was
            torch.set_flush_denormal(False)


def flushing_denormals() -> bool:
    """Whether torch flushes denormal floats to zero in this process now (torch has no getter:
    1e-39 is a float32 denormal, kept by an exact multiplication unless flushing is on)."""
    import torch

    return torch.tensor(1e-39, dtype=torch.float32).mul(1.0).item() == 0.0


def _measure(cell: Cell, data, device, t0: float) -> dict:
    import torch
    import torch.nn.functional as F

    from labreport.version import __version__
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
