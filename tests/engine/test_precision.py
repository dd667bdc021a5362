"""Precision: the rule of `auto`, fp16 with loss scaling on the CPU, and what an overflow means.

The CUDA path is the same code as the CPU one: CPU autocast computes float16 and
torch.amp.GradScaler("cpu") scales the loss, so fp16's skips, divergence and resume are tested
here. fp16 convolution backward on this CPU is slow (~1.4 s per cifarnet convolution at batch
32), so the trained runs use test_train's one-conv `tiny_net` (4 ms a step).
"""
from __future__ import annotations

import dataclasses

import math
import re
import shutil

import pytest
import torch

import labreport.engine.trainer as train_mod
from labreport.config import load_config
from labreport.engine.data import iterate_batches
from labreport.engine.datasets import load as load_data
from labreport.engine.networks import build_model
from labreport.engine.precision import FP16_MAX, auto_precision, autocast, divergence_reason, resolve_precision
from labreport.store import RunStore
from test_train import (Recorder, assert_same_optimizer, assert_same_tensors, final_ckpt, interrupted_after_epoch,
                        matrix, nan_after, strip_timing, tiny_net, write_config)


@pytest.fixture(scope="module")
def data(cifar_dir):
    return load_data(cifar_dir, download=False)


# --- the rule of auto: a pure function of (device type, compute capability, norm) ----------------
@pytest.mark.parametrize("device_type, cap, norm, want", [
    ("cpu", None, "batch", "fp32"),
    ("cpu", None, "none", "fp32"),
    ("cuda", None, "batch", "fp32"),  # capability unknown: the safe choice
    ("cuda", (6, 0), "batch", "fp32"),  # P100: no tensor cores
    ("cuda", (6, 1), "batch", "fp32"),  # GTX 10xx: fp16 at 1/64 of fp32
    ("cuda", (7, 0), "batch", "fp16"),  # V100: fp16 tensor cores, bf16 emulated
    ("cuda", (7, 5), "batch", "fp16"),  # Colab's T4: 65 TFLOPS fp16, 8 fp32
    ("cuda", (7, 5), "none", "fp32"),  # ... but BN-less activations (std ~1e8) overflow fp16
    ("cuda", (7, 0), "none", "fp32"),
    ("cuda", (8, 0), "batch", "bf16"),  # A100
    ("cuda", (8, 0), "none", "bf16"),  # bf16 has fp32's exponent range
    ("cuda", (8, 6), "batch", "bf16"),  # RTX 30xx
    ("cuda", (8, 9), "none", "bf16"),  # L4, RTX 40xx
    ("cuda", (9, 0), "batch", "bf16"),  # H100
    ("cuda", (9, 0), "none", "bf16"),
    ("cuda", (12, 0), "batch", "bf16"),  # later GPUs
])
def test_auto_precision(device_type, cap, norm, want):
    assert auto_precision(device_type, cap, norm) == want


def test_a_bn_less_run_never_gets_fp16_from_auto_on_any_device():
    """The BN claim must not be decided by the GPU: without BatchNorm, auto always keeps fp32's
    exponent range (fp32 or bf16), whatever the device."""
    devices = [("cpu", None)] + [("cuda", (major, minor)) for major in range(3, 13) for minor in range(10)]
    got = {auto_precision(t, c, "none") for t, c in devices}
    assert got == {"fp32", "bf16"}
    assert "fp16" in {auto_precision(t, c, "batch") for t, c in devices}  # the rule does use fp16 with BN


def test_explicit_precision_is_kept_and_auto_on_the_cpu_is_fp32():
    cpu = torch.device("cpu")
    for p in ("fp32", "bf16", "fp16"):
        for norm in ("batch", "none"):
            assert resolve_precision(p, cpu, norm) == p  # written out, it is what runs (and in the key)
    assert resolve_precision("auto", cpu, "batch") == resolve_precision("auto", cpu, "none") == "fp32"


def test_a_bn_less_resnet110_overflows_fp16_at_init_but_not_bf16_or_fp32(data):
    """The physics behind the rule: under He init a BN-less ResNet-110's logits have std ~1e8."""
    x, _ = next(iterate_batches(data.train_x, data.train_y, 4, shuffle=False, augment=False, generator=None))
    torch.manual_seed(0)
    nobn = build_model("resnet110", norm="none", init="he")
    torch.manual_seed(0)
    bn = build_model("resnet110", norm="batch", init="he")
    cpu = torch.device("cpu")
    logits = {}
    with torch.no_grad():
        for p in ("fp32", "bf16", "fp16"):
            with autocast(cpu, p):
                logits[p] = nobn(x).float()
        with autocast(cpu, "fp16"):
            bn_fp16 = bn(x).float()
    assert logits["fp32"].std() > 100 * FP16_MAX  # measured: ~1e8
    assert torch.isfinite(logits["fp32"]).all() and torch.isfinite(logits["bf16"]).all()
    assert torch.allclose(logits["bf16"], logits["fp32"], rtol=0.05)  # bf16: 8-bit mantissa, same range
    assert not torch.isfinite(logits["fp16"]).all()  # beyond 65,504: inf, then NaN
    assert torch.isfinite(bn_fp16).all() and bn_fp16.abs().max() < FP16_MAX  # BatchNorm keeps it in range


# --- divergence reasons (pure) ----------------------------------------------------------------
def test_divergence_reasons_say_what_happened():
    assert divergence_reason(2, 7, "fp32", loss_finite=False) == "non-finite loss at epoch 2, step 7"
    assert divergence_reason(1, 0, "bf16", loss_finite=True) == (
        "non-finite gradient norm at epoch 1, step 0 (the loss was finite): the gradients overflowed bf16's range")
    overflow = divergence_reason(1, 0, "fp16", loss_finite=False, logits_finite=False, fp32_logits_max=2.6e8)
    assert overflow.startswith("non-finite loss at epoch 1, step 0; a precision overflow")
    assert "65,504" in overflow and "2.6e+08" in overflow
    both = divergence_reason(3, 9, "fp16", loss_finite=False, logits_finite=False, fp32_logits_max=math.nan)
    assert both.endswith("not finite in fp32 either: the network diverged, not only fp16")
    assert divergence_reason(1, 0, "fp32", loss_finite=False, logits_finite=False).endswith(
        "the logits themselves were not finite in fp32")


# --- fp16 runs on the CPU ---------------------------------------------------------------------
FP16 = {"precision": "fp16", "deterministic": True, "val_size": 32, "test_subset": 32}


def scaled_logits(factor: float):
    """A build_model whose network multiplies its logits by `factor` (inside the autocast region:
    in fp16, 1e6 becomes inf)."""
    def build(name, **kw):
        model = tiny_net(name, **kw)
        model.register_forward_hook(lambda m, i, out: out * factor)
        return model
    return build


def gradient_inf_at(step: int):
    """A build_model whose last layer's weight gradient is inf in backward number `step` (0-based)."""
    def build(name, **kw):
        model = tiny_net(name, **kw)
        seen = [0]

        def hook(grad):
            seen[0] += 1
            return grad * math.inf if seen[0] == step + 1 else grad

        model[-1].weight.register_hook(hook)
        return model
    return build


def one_run(tmp_path, data, monkeypatch, builder, **settings):
    monkeypatch.setattr(train_mod, "build_model", builder)
    config = load_config(write_config(tmp_path / "e.toml", [{"name": "r"}], **{**FP16, **settings}))
    store = RunStore(tmp_path / "runs")
    rec = Recorder()
    summary, _ = matrix(config, store, data, observer=rec)
    key = config.runs[0].key
    ckpt = final_ckpt(store, key) if (store.run_dir(key) / "ckpt.pt").exists() else None  # none before epoch 1
    return summary, store.read_result(key), store.read_history(key), ckpt, rec


def test_a_forced_gradient_overflow_in_fp16_skips_the_step_and_is_not_divergence(tmp_path, data, monkeypatch):
    summary, res, hist, ckpt, rec = one_run(tmp_path, data, monkeypatch, gradient_inf_at(1), epochs=2)
    assert (summary.trained, summary.diverged, summary.failed) == (["r"], [], [])
    assert res["status"] == "completed" and res["diverged_reason"] is None and res["diverged_at_epoch"] is None
    assert res["skipped_steps"] == 1 and [h["skipped_steps"] for h in hist] == [1, 0]
    assert res["steps"] == 4  # 2 per epoch: the skipped one counts as a step of the schedule
    # the scaler halved its scale (65,536 at the start) and the optimizer made one update less
    assert ckpt["scaler"]["scale"] == 32_768.0 and [h["loss_scale"] for h in hist] == [32_768.0, 32_768.0]
    assert {int(s["step"]) for s in ckpt["optimizer"]["state"].values()} == {3}
    assert all(math.isfinite(h["grad_norm_mean"]) and math.isfinite(h["grad_norm_max"]) for h in hist)
    assert res["provenance"]["precision"] == "fp16" and all(h["precision"] == "fp16" for h in hist)


def test_the_same_overflow_in_fp32_is_divergence(tmp_path, data, monkeypatch):
    """No loss scaling in fp32: an inf gradient would be applied to the weights."""
    summary, res, hist, _, _ = one_run(tmp_path, data, monkeypatch, gradient_inf_at(1), epochs=2, precision="fp32")
    assert summary.diverged == ["r"] and res["status"] == "diverged" and res["diverged_at_epoch"] == 1
    assert res["diverged_reason"] == ("non-finite gradient norm at epoch 1, step 1 (the loss was finite): "
                                      "the gradients overflowed fp32's range")
    assert res["skipped_steps"] == 0 and hist == []


def test_fp16_logits_beyond_its_range_diverge_at_step_0_as_a_precision_overflow(tmp_path, data, monkeypatch):
    summary, res, hist, _, rec = one_run(tmp_path, data, monkeypatch, scaled_logits(1e6), epochs=2)
    assert summary.diverged == ["r"] and res["status"] == "diverged" and res["steps"] == 0
    reason = res["diverged_reason"]
    assert reason.startswith("non-finite loss at epoch 1, step 0; a precision overflow")
    fp32_max = float(re.search(r"largest \|logit\| (\S+)\)$", reason).group(1))
    assert "65,504" in reason and FP16_MAX < fp32_max < math.inf  # the same batch in fp32: finite, beyond fp16
    assert any(reason in m for m in rec.messages)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_the_same_logits_train_in_bf16_and_fp32(tmp_path, data, monkeypatch, precision):
    summary, res, hist, _, _ = one_run(tmp_path, data, monkeypatch, scaled_logits(1e6), epochs=1, precision=precision)
    assert summary.trained == ["r"] and res["status"] == "completed" and res["diverged_reason"] is None
    assert math.isfinite(hist[0]["train_loss"]) and hist[0]["loss_scale"] is None


def test_a_nan_loss_in_fp16_is_divergence_not_a_skipped_step(tmp_path, data, monkeypatch):
    summary, res, hist, _, _ = one_run(tmp_path, data, monkeypatch, nan_after(2), epochs=3)
    assert summary.diverged == ["r"] and res["diverged_at_epoch"] == 2 and res["steps"] == 2
    # the network's NaN (the same in fp32): not blamed on fp16
    assert res["diverged_reason"] == ("non-finite loss at epoch 2, step 2; the logits are not finite in fp32 "
                                      "either: the network diverged, not only fp16")
    assert res["skipped_steps"] == 0 and [h["epoch"] for h in hist] == [1]


# --- an fp16 run resumed after a crash equals an uninterrupted one -------------------------------
RESUME16 = {**FP16, "epochs": 3, "train_subset": 128, "dropout": 0.15}  # 4 steps per epoch


def jumpy_scaler(device, precision):
    """A GradScaler whose scale doubles after every clean step (growth_interval 1, not 2000): it
    overflows and halves every few steps, so a resume that lost the scaler's state would take
    different steps."""
    return torch.amp.GradScaler(device.type, growth_interval=1, enabled=precision == "fp16")


@pytest.fixture(scope="module")
def fp16_runs(data, tmp_path_factory):
    """(config, reference store, crashed store root): 3 epochs uninterrupted, and Ctrl-C after epoch 2."""
    mp = pytest.MonkeyPatch()
    mp.setattr(train_mod, "build_model", tiny_net)
    mp.setattr(train_mod, "grad_scaler", jumpy_scaler)
    try:
        config = load_config(write_config(tmp_path_factory.mktemp("fp16") / "e.toml", [{"name": "f"}], **RESUME16))
        ref = RunStore(tmp_path_factory.mktemp("fp16-ref") / "runs")
        assert matrix(config, ref, data)[0].trained == ["f"]
        crashed = RunStore(tmp_path_factory.mktemp("fp16-crashed") / "runs")
        with interrupted_after_epoch(2):
            assert matrix(config, crashed, data)[0].interrupted_run == "f"
    finally:
        mp.undo()
    return config, ref, crashed.root


def resume_fp16(fp16_runs, data, tmp_path, monkeypatch, edit=None):
    config, _, crashed_root = fp16_runs
    store = RunStore(tmp_path / "runs")
    shutil.copytree(crashed_root, store.root)
    key = config.runs[0].key
    if edit is not None:
        path = store.run_dir(key) / "ckpt.pt"
        ckpt = torch.load(path, weights_only=True)
        edit(ckpt)
        torch.save(ckpt, path)
    monkeypatch.setattr(train_mod, "build_model", tiny_net)
    monkeypatch.setattr(train_mod, "grad_scaler", jumpy_scaler)
    rec = Recorder()
    summary, _ = matrix(config, store, data, observer=rec)
    assert summary.trained == ["f"] and rec.started[0][3] == 2  # resumed after epoch 2
    return store, key


def test_a_resumed_fp16_run_equals_an_uninterrupted_one(fp16_runs, data, tmp_path, monkeypatch):
    _, ref, _ = fp16_runs
    store, key = resume_fp16(fp16_runs, data, tmp_path, monkeypatch)
    ref_res, res = ref.read_result(key), store.read_result(key)
    ref_ckpt, ckpt = final_ckpt(ref, key), final_ckpt(store, key)
    assert ref_res["skipped_steps"] > 0  # the scaler did skip steps: its state mattered
    assert ckpt["scaler"] == ref_ckpt["scaler"]
    assert_same_tensors(ckpt["model"], ref_ckpt["model"])
    assert_same_optimizer(ckpt["optimizer"], ref_ckpt["optimizer"])
    assert strip_timing(store.read_history(key)) == strip_timing(ref.read_history(key))
    for field in ("steps", "skipped_steps", "best_epoch", "test_acc_at_best", "final_train_acc", "test_predictions"):
        assert res[field] == ref_res[field], field


def test_the_resume_test_would_see_a_lost_scaler_state(fp16_runs, data, tmp_path, monkeypatch):
    """The control: the same resume from a checkpoint without the scaler's state starts again at
    scale 65,536 and does not end where the uninterrupted run did."""
    _, ref, _ = fp16_runs
    store, key = resume_fp16(fp16_runs, data, tmp_path, monkeypatch, edit=lambda c: c.pop("scaler"))
    ref_hist, hist = strip_timing(ref.read_history(key)), strip_timing(store.read_history(key))
    assert hist[:2] == ref_hist[:2] and hist[2] != ref_hist[2]
    weights, ref_weights = final_ckpt(store, key)["model"], final_ckpt(ref, key)["model"]
    assert any(not torch.equal(weights[k], ref_weights[k]) for k in weights)


# --- the same on CUDA (skipped without it; bench/gpu_check.sh and `pytest -m gpu` on a GPU machine) ---
@pytest.mark.gpu
def test_a_resumed_fp16_run_equals_an_uninterrupted_one_on_cuda(data, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "build_model", tiny_net)
    monkeypatch.setattr(train_mod, "grad_scaler", jumpy_scaler)
    config = load_config(write_config(tmp_path / "e.toml", [{"name": "f"}], **RESUME16))
    key = config.runs[0].key
    ref = RunStore(tmp_path / "ref")
    assert matrix(config, ref, data, device="cuda")[0].trained == ["f"]
    store = RunStore(tmp_path / "crashed")
    with interrupted_after_epoch(2):
        assert matrix(config, store, data, device="cuda")[0].interrupted_run == "f"
    assert matrix(config, store, data, device="cuda")[0].trained == ["f"]
    assert final_ckpt(store, key)["scaler"] == final_ckpt(ref, key)["scaler"]
    assert_same_tensors(final_ckpt(store, key)["model"], final_ckpt(ref, key)["model"])
    assert strip_timing(store.read_history(key)) == strip_timing(ref.read_history(key))
    assert ref.read_result(key)["provenance"]["precision"] == "fp16"


@pytest.mark.gpu
def test_cuda_graphs_train_on_cuda_and_agree_with_eager(data, tmp_path, monkeypatch):
    """Tolerance not calibrated on a GPU yet: rel 1e-2 on the training loss (cudnn and inductor
    pick different kernels; TF32 convolutions)."""
    monkeypatch.setattr(train_mod, "build_model", tiny_net)
    hist = {}
    for setting in (False, "reduce-overhead"):
        config = load_config(write_config(tmp_path / f"{setting}.toml", [{"name": "g"}], epochs=2, dropout=0.0,
                                          train_subset=128, val_size=64))
        config = dataclasses.replace(config, run=dataclasses.replace(config.run, compile=setting))
        store = RunStore(tmp_path / f"runs-{setting}")
        assert matrix(config, store, data, device="cuda")[0].trained == ["g"]
        res = store.read_result(config.runs[0].key)
        hist[setting] = store.read_history(config.runs[0].key)
    prov = res["provenance"]
    assert (prov["compile"], prov["cuda_graphs"], prov["cudagraph_skips"]) == ("reduce-overhead", True, 0)
    assert [h["train_loss"] for h in hist["reduce-overhead"]] == pytest.approx(
        [h["train_loss"] for h in hist[False]], rel=1e-2)
