"""GPU readiness check: one prepared run of labreport's CUDA path, with figures to keep.

    bench/gpu_check.sh OUT_DIR [DATA_SOURCE]      (the wrapper; see it for DATA_SOURCE)
    python bench/gpu_check.py OUT_DIR --data DIR [--device cuda] [--smoke]

On CUDA (about 5-7 minutes on one H100):
  1. trains ResNet-20 for 2 full epochs and ResNet-110 for 1 (bf16 autocast, channels_last, the
     lab's batch sizes) through `labreport run`, and reports seconds per epoch, images/s, peak
     memory allocated/reserved and a model-FLOP-utilisation estimate (FLOPs counted with
     torch.utils.flop_counter on the real model, training = 3x forward);
  2. times `labreport run --jobs 1, 2, 4` on one GPU over a small matrix (runs per hour);
  3. kills a CUDA run with SIGKILL after its first checkpoint and checks that the next
     `labreport run` resumes it and finishes.
Everything goes to OUT_DIR/gpu_check.log and OUT_DIR/gpu_check.json. `--smoke --device cpu` runs
the same steps at toy size: that is what the test suite runs, so the script stays working without
a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Dense bf16 tensor-core peak, FLOP/s, by device-name fragment (vendor datasheets). Unknown: no MFU.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "T4": 65e12}


def log(out: Path, text: str) -> None:
    print(text, flush=True)
    with open(out / "gpu_check.log", "a") as fh:
        fh.write(text + "\n")


def labreport(cfg: Path, runs: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "labreport", "--config", str(cfg), "--runs", str(runs), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def toml(data: Path, experiments: str, **defaults) -> str:
    # no gradient-flow measurement in these stores: it would add to every timing below
    lines = ["[data]", f'root = "{data}"', "download = false", "[gradflow]", "enabled = false", "[defaults]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in defaults.items()]
    return "\n".join(lines) + "\n" + experiments


def train_flops_per_image(model_name: str) -> float:
    """Forward FLOPs of one 32x32 image x 3 (forward + backward), counted on the real model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from labreport.models import build_model

    model = build_model(model_name).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    return 3.0 * counter.get_total_flops()


def step_throughput(out: Path, data: Path, device: str, smoke: bool) -> dict:
    """Step 1: ResNet-20 x 2 epochs, ResNet-110 x 1 epoch."""
    figures = {}
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    sub = {"train_subset": 256, "test_subset": 64, "val_size": 64} if smoke else {}
    plan = [("resnet20", 1 if smoke else 2, 128), ("resnet110", 1, 128)]
    peak = next((v for k, v in PEAK_BF16.items() if k in _device_name(device)), None)
    for model, epochs, batch in plan:
        cfg = work / f"{model}.toml"
        cfg.write_text(toml(data, f'[[experiment]]\nname = "{model}"\nmodel = "{model}"\n',
                            epochs=epochs, batch_size=batch, **sub))
        t0 = time.perf_counter()
        labreport(cfg, work / "runs", "run", "--device", device)
        wall = time.perf_counter() - t0
        res = next(json.loads(p.read_text()) for p in (work / "runs").glob("*/result.json")
                   if json.loads(p.read_text())["spec"]["model"] == model)
        hist = json.loads((work / "runs" / res["key"] / "history.json").read_text())
        ips = [h["images_per_s"] for h in hist]
        flops = train_flops_per_image(model)
        best_ips = max(ips)
        achieved = flops * best_ips
        fig = {"epochs": epochs, "batch": batch, "s_per_epoch": [h["epoch_time_s"] for h in hist],
               "train_s_per_epoch": [h["train_time_s"] for h in hist], "images_per_s": ips,
               "peak_mem_alloc_mib": res.get("peak_mem_alloc_mib"), "peak_mem_reserved_mib": res.get("peak_mem_reserved_mib"),
               "train_gflop_per_image": flops / 1e9, "achieved_tflops": achieved / 1e12,
               "mfu": achieved / peak if peak else None, "precision": res["provenance"]["precision"],
               "device": res["provenance"]["device"], "wall_s": wall, "test_acc": res["final_test_acc"]}
        figures[model] = fig
        mfu = f"{100 * fig['mfu']:.2f}%" if fig["mfu"] is not None else "n/a (unknown peak)"
        log(out, f"{model}: {epochs} epoch(s), s/epoch {', '.join(f'{s:.1f}' for s in fig['s_per_epoch'])}, "
                 f"img/s {', '.join(f'{i:.0f}' for i in ips)}, peak alloc {fig['peak_mem_alloc_mib']} MiB, "
                 f"reserved {fig['peak_mem_reserved_mib']} MiB, {fig['train_gflop_per_image']:.3f} GFLOP/img "
                 f"(train), {fig['achieved_tflops']:.2f} TFLOP/s, MFU {mfu}, precision {fig['precision']}, "
                 f"wall {wall:.0f} s")
    return figures


def step_jobs(out: Path, data: Path, device: str, smoke: bool) -> dict:
    """Step 2: runs per hour at --jobs 1, 2, 4 on one device."""
    work = Path(tempfile.mkdtemp(prefix="gpu-check-jobs-"))
    n_runs = 2 if smoke else 8
    cfg = work / "jobs.toml"
    sub = {"train_subset": 128, "test_subset": 64, "val_size": 64} if smoke else \
          {"train_subset": 10000, "test_subset": 2000, "val_size": 1000}
    cfg.write_text(toml(data, f'[[experiment]]\nname = "jobs"\nmodel = "resnet20"\nseeds = {n_runs}\n',
                        epochs=1, batch_size=128, **sub))
    figures = {}
    for jobs in ((1, 2) if smoke else (1, 2, 4)):
        t0 = time.perf_counter()
        labreport(cfg, work / f"runs{jobs}", "run", "--device", device, "--jobs", str(jobs))
        wall = time.perf_counter() - t0
        figures[jobs] = {"wall_s": wall, "runs_per_hour": 3600 * n_runs / wall}
        log(out, f"--jobs {jobs}: {n_runs} runs in {wall:.1f} s = {3600 * n_runs / wall:.0f} runs/hour")
    return figures


def step_kill_resume(out: Path, data: Path, device: str, smoke: bool) -> dict:
    """Step 3: SIGKILL after the first checkpoint, then resume."""
    work = Path(tempfile.mkdtemp(prefix="gpu-check-kill-"))
    cfg = work / "kill.toml"
    sub = {"train_subset": 256, "test_subset": 64, "val_size": 64} if smoke else {"train_subset": 20000}
    epochs = 8 if smoke else 3  # toy epochs last a fraction of a second: leave room to kill mid-run
    cfg.write_text(toml(data, '[[experiment]]\nname = "kill"\nmodel = "resnet20"\n', epochs=epochs,
                        batch_size=128, **sub))
    runs = work / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "labreport", "--config", str(cfg), "--runs", str(runs), "run",
                             "--device", device], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(runs.glob("*/ckpt.pt")):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError("the run ended or stalled before its first checkpoint")
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    second = labreport(cfg, runs, "run", "--device", device)
    res = json.loads(next(runs.glob("*/result.json")).read_text())
    ok = "resuming after epoch" in second.stderr + second.stdout and res["epochs_run"] == epochs
    log(out, f"kill -9 after the first checkpoint, then resume: {'ok' if ok else 'FAILED'} "
             f"(epochs_run {res['epochs_run']}, status {res['status']})")
    return {"ok": ok, "epochs_run": res["epochs_run"]}


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="folder holding cifar-10-batches-py")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="toy sizes (for CPU tests of this script)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    info = {"device": _device_name(args.device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "smoke": args.smoke}
    log(args.out, f"gpu_check: {info}")
    t0 = time.perf_counter()
    results = {"info": info}
    for name, step in (("throughput", step_throughput), ("jobs", step_jobs), ("kill_resume", step_kill_resume)):
        try:
            results[name] = step(args.out, args.data.resolve(), args.device, args.smoke)
        except Exception as e:  # keep going: a later step's figures are still worth having
            results[name] = {"error": f"{type(e).__name__}: {e}"}
            log(args.out, f"{name}: ERROR {type(e).__name__}: {e}")
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
    log(args.out, f"total {time.perf_counter() - t0:.0f} s")
    sys.exit(0 if all("error" not in v for k, v in results.items() if k != "info") else 1)


if __name__ == "__main__":
    main()
