"""The fused-training step of bench/gpu_check.py: each of the lab's member sets trained fused
(bench/fused.py through bench/bench_fused.py, a fresh process each, with its own timeout), eager
first and with CUDA graphs later in the check. The comparison with one run eager, with CUDA
graphs and at --jobs 2/4 is arithmetic on the check's figures (gpu_figures.fused_comparison)."""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from pathlib import Path

from gpu_common import CAP_SHARE, GRAPHS, Budget, log, run_cmd

HERE = Path(__file__).resolve().parent
STEPS, WARMUP = 30, 3  # timed steps after the warm-up ones (the first autotunes cuDNN, or compiles)


def plan(smoke: bool) -> list[dict]:
    """The fused measurements, most needed first: the ResNet-110 sets decide (they are most of the
    lab's time), eager before CUDA graphs (a compile of the stacked ResNet-110 may not fit)."""
    m = [("fused resnet110-nobn eager", "resnet110-nobn", False),
         ("fused resnet110-bn eager", "resnet110-bn", False),
         ("fused resnet20-reg eager", "resnet20-reg", False),
         ("fused resnet110-nobn cuda-graphs", "resnet110-nobn", GRAPHS),
         ("fused resnet20-reg cuda-graphs", "resnet20-reg", GRAPHS)]
    if smoke:  # toy size: two members of a deep and a shallow set, a few images
        m = [("fused resnet110-nobn eager", "resnet110-nobn", False),
             ("fused resnet20-reg eager", "resnet20-reg", False),
             ("fused resnet20-reg cuda-graphs", "resnet20-reg", GRAPHS)]
    return [{"name": n, "set": s, "compile": c} for n, s, c in m]


def command(item: dict, data: Path, device: str, smoke: bool, out_json: Path) -> list[str]:
    """bench_fused.py for one member set: fused, and eager its first member alone through the trainer
    (one run with CUDA graphs is step 1's: a second compile of it here would only cost time)."""
    cmd = [sys.executable, str(HERE / "bench_fused.py"), "--set", item["set"], "--device", device,
           "--data", str(data), "--rounds", "1", "--alone", "0" if item["compile"] else "1", "--json", str(out_json),
           "--compile", "false" if not item["compile"] else item["compile"]]
    if smoke:
        return cmd + ["--members", "2", "--batch", "8", "--steps", "1", "--warmup", "1", "--train-images", "32"]
    return cmd + ["--steps", str(STEPS), "--warmup", str(WARMUP)]


def measure(out: Path, data: Path, device: str, smoke: bool, item: dict, timeout: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="gpu-check-fused-"))
    out_json = work / "fused.json"
    proc = run_cmd(command(item, data, device, smoke, out_json), timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_fused.py failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    result = json.loads(out_json.read_text())
    fused, alone = result["rounds"][0]["fused"], result["rounds"][0].get("alone", {})
    fig = {**item, **fused, "alone_images_per_s": alone.get("images_per_s"), "train_images":
           result["info"]["train_images"], "steps": STEPS if not smoke else 1}
    log(out, f"{item['name']}: {fig['members']} members x batch {fig['batch']} ({fig['precision']}, compile "
             f"{fig['compile']}, inductor skips {fig['cudagraph_skips']}): {fig['s_per_step'] * 1e3:.1f} ms/step, "
             f"{fig['images_per_s_per_member']:,.0f} img/s per member ({fig['images_per_s']:,.0f} in all), "
             f"one member alone {fig['alone_images_per_s'] or 0:,.0f} img/s; warm-up "
             f"{', '.join(f'{s:.1f}' for s in fig['warmup_s'])} s; peak alloc {fig['peak_mem_alloc_mib']} MiB, "
             f"reserved {fig['peak_mem_reserved_mib']} MiB; {fig['alive']} of {fig['members']} members finite")
    return fig


def step_fused(out: Path, data: Path, device: str, smoke: bool, budget: Budget, reserve_s: float,
               kind: str, figures: dict | None = None) -> dict:
    """The fused measurements of one kind ("eager" or "graphs"), added to `figures`, within the
    budget less `reserve_s`. On a CPU the compiled ones are skipped: inductor takes ~80 s for the
    stacked ResNet-20 there (tests/engine/test_fused_probe.py compiles it, marked slow)."""
    figures = {} if figures is None else figures
    for item in [i for i in plan(smoke) if bool(i["compile"]) == (kind == "graphs")]:
        name, left = item["name"], budget.left() - reserve_s
        if item["compile"] and device == "cpu":
            figures[name] = {"skipped": "compiled on a CPU: ~80 s of inductor; a slow CPU test compiles it"}
        elif left < 30:
            figures[name] = {"skipped": f"budget: {max(left, 0):.0f} s left for it"}
        else:
            try:
                figures[name] = measure(out, data, device, smoke, item, timeout=min(left, max(60.0, CAP_SHARE
                                                                                             * budget.total)))
            except Exception as e:  # the other sets' figures are still worth having
                figures[name] = {"error": f"{type(e).__name__}: {e}"}
                log(out, f"{name}: ERROR {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
        if "skipped" in figures[name]:
            log(out, f"{name}: skipped ({figures[name]['skipped']})")
    return figures
