"""The GPU readiness script stays runnable without a GPU: its steps at toy size on the CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def gpu_figures():
    gpu_check()  # puts bench/ on sys.path, as running the script does
    import gpu_figures

    return gpu_figures


@pytest.mark.slow
def test_gpu_check_steps_run_on_cpu_at_toy_size(tmp_path, cifar_dir):
    """130-170 s on 2 cores that other processes kept busy, ~55 s of it the fused step (two members of
    the BN-less ResNet-110 set and of the ResNet-20 grid, each in its own process) and a good part of
    the rest one torch.compile of ResNet-20 (less with inductor's cache)."""
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
    assert tp["cifarnet auto eager"]["eta_seconds_per_image"] > 0 and tp["resnet18 auto eager"]["status"] == "completed"
    est = figures["lab_estimate"]  # every model of the lab's matrix measured: a total, toy sizes or not
    assert est["toy"] is True and est["missing"] == [] and est["eager_s"] > 0 and est["runs"] == 27
    assert figures["measured_entry"] is None  # a CPU: nothing for the per-GPU table
    assert "| resnet18 auto eager | fp32 |" in (tmp_path / "out" / "gpu_check.md").read_text()
    assert set(figures["jobs"]) == {"1", "2"} and figures["jobs"]["2"]["runs_per_hour"] > 0
    assert figures["kill_resume"]["ok"] is True and figures["kill_resume"]["epochs_run"] == 8
    assert ("kill -9 after the first checkpoint, then resume (fp32): ok"
            in (tmp_path / "out" / "gpu_check.log").read_text())
    fused = figures["fused"]  # the fused probe: two members of a deep and a shallow set, and the comparison
    for name in ("fused resnet110-nobn eager", "fused resnet20-reg eager"):
        f = fused[name]
        assert (f["members"], f["batch"], f["alive"], f["precision"]) == (2, 8, 2, "fp32")
        assert f["images_per_s"] == pytest.approx(2 * f["images_per_s_per_member"]) and f["alone_images_per_s"] > 0
    assert "a slow CPU test compiles it" in fused["fused resnet20-reg cuda-graphs"]["skipped"]
    sets = figures["fused_comparison"]["sets"]
    assert sets["resnet110-bn"] == {"members": 3, "missing": "no fused figure"}  # not in the toy plan
    nobn, deep = sets["resnet110-nobn"], fused["fused resnet110-nobn eager"]
    assert nobn["members"] == 10 and nobn["unfused"]["eager"] == deep["alone_images_per_s"]
    assert nobn["per_member"]["eager"] == pytest.approx(deep["images_per_s_per_member"])
    assert "--jobs 2" not in nobn["unfused"] and "--jobs 2" in sets["resnet20-reg"]["unfused"]  # step 2's model
    assert nobn["ratio"] > 0 and figures["fused_comparison"]["lab_fused_s"] > 0
    assert "| fused resnet20-reg eager | 2 x 8 | fp32, False |" in (tmp_path / "out" / "gpu_check.md").read_text()


def test_the_check_plans_every_precision_eager_and_with_cuda_graphs_on_a_gpu():
    items = gpu_check().plan("cuda", smoke=False)
    kinds = {(i["model"], i["precision"], i["compile"]) for i in items}
    for model in ("resnet20", "resnet110"):
        assert {(model, p, False) for p in ("auto", "fp16", "fp32")} <= kinds
        assert (model, "auto", "reduce-overhead") in kinds  # bf16 on an H100
    assert ("resnet20", "fp16", "reduce-overhead") in kinds  # a T4's fast path
    assert all(i["epochs"] >= 2 for i in items if i["compile"])  # epoch 1 holds the compile


def test_on_a_t4_auto_is_fp16_so_only_fp32_is_measured_besides_it():
    items = gpu_check().plan("cuda", smoke=False, auto="fp16")
    assert not any(i["precision"] == "fp16" for i in items)  # auto is fp16 there: the same runs twice
    assert {("resnet20", "fp32"), ("resnet110", "fp32")} <= {(i["model"], i["precision"]) for i in items}
    assert [i["model"] for i in items[:6]] == ["resnet20", "resnet110", "cifarnet", "resnet18", "resnet110", "resnet20"]


def test_the_check_runs_most_decisive_first_and_keeps_time_for_jobs_and_the_resume():
    """One run eager of each of the two models that take the lab's time, then the fused sets, then the
    rest of the matrix and CUDA graphs; --jobs and the kill-resume check are kept time for until they
    have run; the fused compile and the other precisions get what is left."""
    mod = gpu_check()
    order = [(name, part) for name, part, _ in mod.PHASES]
    assert order[:3] == [("precision_rule", None), ("throughput", "first"), ("fused", "eager")]
    assert order.index(("jobs", None)) < order.index(("fused", "graphs")) < order.index(("throughput", "tail"))
    reserve = {(name, part): r for name, part, r in mod.PHASES}
    assert all(reserve[p] >= 130 for p in order[:order.index(("jobs", None))])
    fused = __import__("gpu_fused").plan(smoke=False)
    assert [f["set"] for f in fused if not f["compile"]] == ["resnet110-nobn", "resnet110-bn", "resnet20-reg"]
    parts = {i["name"]: i["part"] for i in mod.plan("cuda", smoke=False)}
    assert parts["resnet110 auto eager"] == "first" and parts["resnet110 auto cuda-graphs"] == "core"


def test_the_lab_estimate_adds_up_the_measured_speeds_and_compiles():
    from labreport.spec import TrainSpec

    mod = gpu_figures()
    specs = [TrainSpec(model="resnet20", epochs=50, seed=s) for s in (0, 1)] + [
        TrainSpec(model="resnet110", epochs=50, batch_size=64)]  # 50,000 weighted images per epoch each

    def fig(rate, extra=None):
        return {"eta_seconds_per_image": rate, "first_epoch_extra_s": extra}

    tp = {"resnet20 auto eager": fig(1e-5), "resnet110 auto eager": fig(4e-5),
          "resnet20 auto cuda-graphs": fig(5e-6, 30.0), "resnet20 auto cuda-graphs again": fig(5e-6, 8.0),
          "resnet110 auto cuda-graphs": fig(2e-5, 90.0), "resnet18 auto eager": {"skipped": "budget"}}
    est = mod.lab_estimate(tp, {1: {"wall_s": 10.0}, 2: {"wall_s": 5.0, "speedup": 2.0}}, specs)
    assert est["eager_s"] == pytest.approx(50 * 50_000 * (2 * 1e-5 + 4e-5))  # 150 s
    # with graphs: the steady speed, plus each run's compile (warm cache for ResNet-20, the cold one for 110)
    assert est["graphs_s"] == pytest.approx(50 * 50_000 * (2 * 5e-6 + 2e-5) + 2 * 8.0 + 90.0)
    assert est["compile_from"] == {"resnet20": "warm cache", "resnet110": "cold (an upper bound)"}
    assert est["jobs"][2] == {"eager_s": pytest.approx(75.0), "graphs_s": pytest.approx(est["graphs_s"] / 2)}
    lacking = mod.lab_estimate(tp, {}, specs + [TrainSpec(model="resnet18")])
    assert lacking["missing"] == ["resnet18"] and lacking["eager_s"] is None
    assert "no eager figure for resnet18" in "\n".join(mod.estimate_text(lacking))


def test_the_measured_entry_is_what_eta_py_takes():
    mod = gpu_figures()
    info = {"device": "NVIDIA H100 80GB HBM3", "date": "2030-01-02",
            "command": "gpu_check.py out --data /tmp/cifar --device cuda"}
    tp = {"resnet20 auto eager": {"model": "resnet20", "precision": "auto", "compile": False, "precision_ran": "bf16",
                                  "eta_seconds_per_image": 2.0412e-05},
          "resnet20 auto cuda-graphs": {"model": "resnet20", "precision": "auto", "compile": "reduce-overhead",
                                        "precision_ran": "bf16", "eta_seconds_per_image": 1e-6}}
    from labreport.cluster.eta import Measured

    entry = eval(mod.measured_entry(info, tp), {"Measured": Measured})  # noqa: S307 - our own output
    assert entry == Measured("H100", {"resnet20": 2.04e-05}, "precision auto (bf16), [run] compile = false, --jobs 1",
                             "2030-01-02", "bench/gpu_check.py out --data /tmp/cifar --device cuda")
    assert mod.gpu_fragment("Tesla T4") == "T4" and mod.gpu_fragment("NVIDIA H100 PCIe") == "H100"


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
    mod = gpu_figures()
    assert mod.peak_flops("NVIDIA H100 80GB HBM3", "bf16", None) == 989e12
    assert mod.peak_flops("NVIDIA H100 PCIe", "bf16", None) == 756e12
    assert mod.peak_flops("NVIDIA A100-SXM4-80GB", "fp32", True) == 156e12  # TF32 convolutions
    assert mod.peak_flops("Tesla T4", "fp16", None) == 65e12 and mod.peak_flops("Tesla T4", "bf16", None) is None
    assert mod.peak_flops("cpu", "fp32", None) is None


def test_gpu_check_wrapper_refuses_without_cuda(tmp_path, cifar_dir):
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(tmp_path / "o"), str(cifar_dir)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr


def test_the_device_command_runs_every_cuda_test_and_ends_in_one_exit_code(tmp_path, cifar_dir):
    """bench/device_run.sh is what a GPU machine runs: without CUDA its check fails in one line,
    its CUDA tests are collected and skipped, and it still ends with both exit codes said."""
    listed = (ROOT / "bench" / "gpu_tests.txt").read_text().split()
    marked = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                    if "\n@pytest.mark.gpu\n" in p.read_text())
    assert sorted(listed) == marked  # a CUDA test outside the list would never run on a GPU
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "DEVICE_DATA": str(cifar_dir), "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "device_run.sh"), str(tmp_path / "out")], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "no CUDA device" in proc.stderr
    assert "gpu_check exit 1, pytest -m gpu exit 0" in proc.stdout and "skipped" in proc.stdout
    assert (tmp_path / "out" / "pytest-gpu.log").is_file()


def test_fused_sets_are_held_against_the_best_unfused_way_to_train_their_runs():
    from labreport.cluster.eta import Speeds, remaining_s
    from labreport.spec import TrainSpec

    mod = gpu_figures()
    nobn = [TrainSpec(model="resnet110", norm="none", batch_size=64, epochs=50, seed=s) for s in range(10)]
    grid = [TrainSpec(model="resnet20", epochs=50, dropout=p) for p in (0.0, 0.15)]

    def fig(model, ips, rate, compile=False):
        return {"model": model, "precision": "auto", "compile": compile, "images_per_s": [ips / 2, ips],
                "eta_seconds_per_image": rate}

    tp = {"resnet110 auto eager": fig("resnet110", 5000, 2e-4), "resnet20 auto eager": fig("resnet20", 20000, 5e-5),
          "resnet110 auto cuda-graphs": fig("resnet110", 8000, 1.25e-4, "reduce-overhead")}
    jobs = {1: {"wall_s": 10.0, "model": "resnet110"}, 2: {"wall_s": 8.0, "speedup": 1.25, "model": "resnet110"},
            4: {"wall_s": 5.0, "speedup": 2.0, "model": "resnet110"}}
    fused = {"fused resnet110-nobn eager": {"images_per_s": 24000.0, "alone_images_per_s": 4800.0, "members": 10,
                                            "peak_mem_reserved_mib": 9000.0},
             "fused resnet20-reg eager": {"images_per_s": 30000.0, "alone_images_per_s": None, "members": 2},
             "fused resnet20-reg cuda-graphs": {"skipped": "budget: 0 s left for it"}}
    bn = [TrainSpec(model="resnet110", batch_size=64, epochs=50, seed=s) for s in range(3)]
    fc = mod.fused_comparison(tp, jobs, fused, {"resnet110-nobn": nobn, "resnet20-reg": grid, "resnet110-bn": bn},
                              nobn + grid + bn)
    deep, shallow = fc["sets"]["resnet110-nobn"], fc["sets"]["resnet20-reg"]
    # one at a time: the set's own run alone (4,800), CUDA graphs 8,000, --jobs 2 and 4 scaled from the run alone
    assert deep["unfused"] == {"eager": 4800.0, "cuda-graphs": 8000.0, "--jobs 2": 6000.0, "--jobs 4": 9600.0}
    assert deep["best_unfused"] == ("--jobs 4", 9600.0) and deep["ratio"] == pytest.approx(2.5)
    assert deep["per_member"] == {"eager": 2400.0} and deep["peak_mem_mib"] == {"eager": 9000.0}
    # ResNet-20: step 1's run eager, no --jobs figure of its own; a skipped measurement is no figure
    assert shallow["unfused"] == {"eager": 20000.0} and shallow["fused"] == {"eager": 30000.0}
    assert shallow["ratio"] == pytest.approx(1.5)
    one = remaining_s(nobn[0], 0, Speeds("cuda", {"resnet110": 2e-4}, 0))
    assert deep["eager_s"] == pytest.approx(10 * one) and deep["fused_s"] == pytest.approx(10 * one * 5000 / 24000)
    saved = deep["eager_s"] - deep["fused_s"] + shallow["eager_s"] - shallow["fused_s"]
    assert fc["lab_fused_s"] == pytest.approx(fc["lab_eager_s"] - saved)
    text = "\n".join(mod.fused_text(fc))
    assert "x2.50 (rule: >= 2x on ResNet-110: met)" in text and "resnet110-bn (3 runs): no fused figure" in text
