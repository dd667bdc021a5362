"""The GPU readiness script stays runnable without a GPU: its steps at toy size on the CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_gpu_check_steps_run_on_cpu_at_toy_size(tmp_path, cifar_dir):
    """~60 s on 2 quiet cores, half of it one torch.compile of ResNet-20 (less with inductor's cache)."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), str(tmp_path / "out"),
                           "--data", str(cifar_dir), "--device", "cpu", "--smoke"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert figures["precision_rule"]["auto"] == {"batch": "fp32", "none": "fp32"}  # a CPU
    logits = figures["precision_rule"]["logits"]
    assert logits["fp32"]["finite"] and logits["bf16"]["finite"] and not logits["fp16"]["finite"]
    tp = figures["throughput"]
    r20 = tp["resnet20 auto eager"]
    assert r20["images_per_s"][0] > 0 and 0.2 < r20["train_gflop_per_image"] < 0.3  # 41M MACs = 82 MFLOP forward, x 3
    assert r20["precision_ran"] == "fp32" and r20["compile_ran"] is False and r20["eta_seconds_per_image"] > 0
    assert tp["resnet110 auto eager"]["train_gflop_per_image"] > 5 * r20["train_gflop_per_image"]
    graphs = tp["resnet20 auto cuda-graphs"]
    assert graphs["compile_ran"] == "reduce-overhead" and graphs["cuda_graphs"] is False  # a CPU declines them
    assert graphs["status"] == "completed" and graphs["images_per_s"][0] > 0
    assert "emulated" in tp["resnet20 fp16 eager"]["skipped"]
    assert set(figures["jobs"]) == {"1", "2"} and figures["jobs"]["2"]["runs_per_hour"] > 0
    assert figures["kill_resume"]["ok"] is True and figures["kill_resume"]["epochs_run"] == 8
    assert "kill -9 after the first checkpoint, then resume (fp32): ok" in (tmp_path / "out" / "gpu_check.log").read_text()


def test_the_check_plans_every_precision_eager_and_with_cuda_graphs_on_a_gpu():
    items = gpu_check().plan("cuda", smoke=False)
    kinds = {(i["model"], i["precision"], i["compile"]) for i in items}
    for model in ("resnet20", "resnet110"):
        assert {(model, p, False) for p in ("auto", "fp16", "fp32")} <= kinds
        assert (model, "auto", "reduce-overhead") in kinds  # bf16 on an H100
    assert ("resnet20", "fp16", "reduce-overhead") in kinds  # a T4's fast path
    assert all(i["epochs"] >= 2 for i in items if i["compile"])  # epoch 1 holds the compile


def test_a_failed_measurement_is_kept_and_the_others_still_run(tmp_path, monkeypatch):
    mod = gpu_check()
    seen = []

    def measure(out, data, device, smoke, work, item, timeout):
        seen.append(item["name"])
        if item["name"] == "resnet20 auto eager":
            raise RuntimeError("CUDA error: an illegal memory access")
        return {"ok": item["name"]}

    monkeypatch.setattr(mod, "measure", measure)
    saved = []
    figures = mod.step_throughput(tmp_path, tmp_path, "cuda", False, mod.Budget(10_000), 0, save=saved.append)
    assert seen == [i["name"] for i in mod.plan("cuda", False)] and len(saved) == len(seen)
    assert figures["resnet20 auto eager"] == {"error": "RuntimeError: CUDA error: an illegal memory access"}
    assert figures["resnet110 auto eager"] == {"ok": "resnet110 auto eager"}
    assert "ERROR RuntimeError: CUDA error" in (tmp_path / "gpu_check.log").read_text()
    tight = mod.step_throughput(tmp_path, tmp_path, "cuda", False, mod.Budget(100), 90, save=lambda f: None)
    assert all("budget" in f["skipped"] for f in tight.values())  # 10 s left: nothing starts


def test_mfu_uses_the_peak_of_the_precision_that_ran():
    mod = gpu_check()
    assert mod.peak_flops("NVIDIA H100 80GB HBM3", "bf16", None) == 989e12
    assert mod.peak_flops("NVIDIA H100 PCIe", "bf16", None) == 756e12
    assert mod.peak_flops("NVIDIA A100-SXM4-80GB", "fp32", True) == 156e12  # TF32 convolutions
    assert mod.peak_flops("Tesla T4", "fp16", None) == 65e12 and mod.peak_flops("Tesla T4", "bf16", None) is None
    assert mod.peak_flops("cpu", "fp32", None) is None


def test_gpu_check_wrapper_refuses_without_cuda(tmp_path, cifar_dir):
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(tmp_path / "o"), str(cifar_dir)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr
