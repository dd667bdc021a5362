"""GPU readiness check: one prepared run of labreport's CUDA path, with figures to keep.

    bench/gpu_check.sh OUT_DIR [DATA_SOURCE]      (the wrapper; see it for DATA_SOURCE)
    python bench/gpu_check.py OUT_DIR --data DIR [--device cuda] [--budget-s 450] [--smoke]

On CUDA (budgeted to finish within 8 minutes on one H100; `--budget-s`):
  0. the precision rule on this GPU (what `auto` resolves to with and without BatchNorm) and a
     BN-less ResNet-110's logits at init in fp32 / bf16 / fp16 (fp16's range is 65,504);
  1. throughput through `labreport run` at the lab's batch sizes in the precision `auto` gives:
     ResNet-20 (2 epochs) and ResNet-110 (1 epoch) eager; later CIFARNet and ResNet-18 eager (the
     rest of the lab's matrix) and ResNet-110 and ResNet-20 with CUDA graphs (`[run] compile =
     "reduce-overhead"`, 2 epochs: epoch 1 holds the compile, epoch 2 is the steady state); last,
     if the budget allows, ResNet-20 with CUDA graphs once more in a fresh process (the compile
     every later run of the same graph pays, from inductor's on-disk cache), fp32 and fp16 eager
     and fp16 with CUDA graphs, where they differ from `auto`. For each: seconds per epoch,
     images/s, peak memory allocated/reserved, a model-FLOP-utilisation estimate (FLOPs counted
     with torch.utils.flop_counter on the real model, training = 3x forward, against the dense
     tensor-core peak of the precision that ran), and seconds per weighted image for
     labreport/cluster/eta.py MEASURED;
  1f. fused training (bench/fused.py, gpu_fused.py), right after the first two: the lab's member
     sets (10 BN-less ResNet-110 seeds and 3 with BatchNorm at batch 64, the 12 ResNet-20 grid
     points at 128) as one stacked model each, 3 warm-up and 30 timed steps, beside the set's
     first run alone through the trainer's own steps; with CUDA graphs near the end;
  2. `labreport run --jobs 1, 2, 4` on one GPU over 8 short ResNet-110 runs (runs per hour, and the
     speedup over --jobs 1: the lab's time is mostly ResNet-110's);
  3. SIGKILL of an fp16 CUDA run after its first checkpoint, then a `labreport run` that must
     resume it (the loss scaler's state comes back from the checkpoint) and finish;
  4. the lab's whole matrix (experiments.toml, no profile) at the speeds measured in 1, eager and
     with CUDA graphs, at --jobs 1 and scaled by the speedups of 2; a ready MEASURED entry; and
     each fused set against the best unfused way (eager, CUDA graphs, --jobs k) to train its runs,
     with the lab's matrix as it would take with the sets fused.
The order (PHASES) is most decisive first; the budget cuts the tail. Every measurement is on its
own (try/except, a timeout, the error printed and kept): one failure never loses the others.
Measurements the budget cannot fit are skipped and say so. No measurement may take more than
CAP_SHARE of the budget (a hang costs that, not the rest). Everything goes to
OUT_DIR/gpu_check.log and OUT_DIR/gpu_check.json (rewritten after each measurement), and the
figures the README wants to OUT_DIR/gpu_check.md.

`--smoke --device cpu` runs the same steps at toy size (fp16 skipped: CPU fp16 convolution
backward is emulated, ~40 s per ResNet-20 step; CUDA graphs declined by inductor on a CPU; the fused
compile skipped, ~80 s there): that is what the test suite runs, so the script stays working
without a GPU.
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
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, also when loaded by a test
from gpu_common import (CAP_SHARE, GRAPHS, Budget, device_name, driver_version, lab_batch,  # noqa: E402
                        lab_specs, labreport, log, toml)
from gpu_figures import (estimate_text, fused_comparison, fused_text, lab_estimate, markdown,  # noqa: E402
                         measured_entry, peak_flops)
from gpu_fused import step_fused  # noqa: E402



def train_flops_per_image(model_name: str) -> float:
    """Forward FLOPs of one 32x32 image x 3 (forward + backward), counted on the real model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from labreport.engine.networks import build_model

    model = build_model(model_name).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    return 3.0 * counter.get_total_flops()


# --------------------------------------------------------------------------------------------
def step_precision_rule(out: Path, data: Path, device: str, smoke: bool, budget: Budget) -> dict:
    """Step 0: what auto resolves to here, and a BN-less ResNet-110's logits at init per precision."""
    import torch

    from labreport.engine.data import normalize
    from labreport.engine.datasets import load as load_data
    from labreport.engine.networks import build_model
    from labreport.engine.precision import autocast, resolve_precision
    from labreport.engine.device import resolve_device

    dev = resolve_device(device)
    fig = {"auto": {norm: resolve_precision("auto", dev, norm) for norm in ("batch", "none")}, "logits": {}}
    cifar = load_data(data, download=False)
    x = normalize(cifar.train_x[:16].to(dev))
    torch.manual_seed(0)
    model = build_model("resnet110", norm="none", init="he").to(dev)
    for p in ("fp32", "bf16", "fp16"):  # forward passes only: fast enough on a CPU too
        with torch.no_grad(), autocast(dev, p):
            logits = model(x).float()
        finite = bool(torch.isfinite(logits).all())
        fig["logits"][p] = {"finite": finite, "max_abs": float(logits.abs().max()) if finite else None,
                            "std": float(logits.std()) if finite else None}
    log(out, f"precision rule: auto = {fig['auto']['batch']} with BatchNorm, {fig['auto']['none']} without; "
             "BN-less ResNet-110 logits at init: " + ", ".join(
                 f"{p} {'finite, max |logit| %.3g' % v['max_abs'] if v['finite'] else 'NOT finite'}"
                 for p, v in fig["logits"].items()))
    return fig


def plan(device: str, smoke: bool, auto: str = "bf16") -> list[dict]:
    """The throughput measurements, most needed first (the budget may cut the tail), in three parts
    that run at three points of the check (see PHASES). `auto`: what precision = "auto" resolves to
    here with BatchNorm; an explicit precision equal to it would only measure the same thing
    twice, so it is left out (fp16 on a T4, fp32 on a CPU)."""
    m = [  # name, model, precision, compile, epochs, part
        ("resnet20 auto eager", "resnet20", "auto", False, 2, "first"),
        ("resnet110 auto eager", "resnet110", "auto", False, 1, "first"),
        ("cifarnet auto eager", "cifarnet", "auto", False, 2, "core"),  # the rest of the lab's matrix
        ("resnet18 auto eager", "resnet18", "auto", False, 2, "core"),
        ("resnet110 auto cuda-graphs", "resnet110", "auto", GRAPHS, 2, "core"),
        ("resnet20 auto cuda-graphs", "resnet20", "auto", GRAPHS, 2, "core"),
        # the same graph compiled in a fresh process: what every later run of the lab pays
        ("resnet20 auto cuda-graphs again", "resnet20", "auto", GRAPHS, 2, "tail"),
        ("resnet20 fp32 eager", "resnet20", "fp32", False, 2, "tail"),
        ("resnet110 fp32 eager", "resnet110", "fp32", False, 1, "tail"),
        ("resnet20 fp16 eager", "resnet20", "fp16", False, 2, "tail"),
        ("resnet110 fp16 eager", "resnet110", "fp16", False, 1, "tail"),
        ("resnet20 fp16 cuda-graphs", "resnet20", "fp16", GRAPHS, 2, "tail"),
    ]
    if smoke:  # toy size: one of each kind that a CPU can run in seconds (compile: ~35 s once)
        m = [("resnet20 auto eager", "resnet20", "auto", False, 1, "first"),
             ("resnet110 auto eager", "resnet110", "auto", False, 1, "first"),
             ("cifarnet auto eager", "cifarnet", "auto", False, 1, "core"),
             ("resnet18 auto eager", "resnet18", "auto", False, 1, "core"),
             ("resnet20 auto cuda-graphs", "resnet20", "auto", GRAPHS, 1, "core"),
             ("resnet20 fp16 eager", "resnet20", "fp16", False, 1, "tail")]
    return [{"name": n, "model": mo, "precision": p, "compile": c, "epochs": e, "part": part}
            for n, mo, p, c, e, part in m if p == "auto" or p != auto or smoke]


def measure(out: Path, data: Path, device: str, smoke: bool, work: Path, item: dict, timeout: float) -> dict:
    from labreport.cluster.eta import epoch_images

    model, precision = item["model"], item["precision"]
    sub = {"train_subset": 128, "test_subset": 64, "val_size": 64} if smoke else {}
    batch = 128 if smoke else lab_batch(model)
    tag = item["name"].replace(" ", "_")
    cfg = work / f"{tag}.toml"
    cfg.write_text(toml(data, f'[[experiment]]\nname = "{tag}"\nmodel = "{model}"\n',
                        run={"compile": item["compile"]}, epochs=item["epochs"], batch_size=batch,
                        precision=precision, **sub))
    runs = work / f"runs-{tag}"
    t0 = time.perf_counter()
    labreport(cfg, runs, "run", "--device", device, timeout=timeout)
    wall = time.perf_counter() - t0
    res = json.loads(next(runs.glob("*/result.json")).read_text())
    hist = json.loads((runs / res["key"] / "history.json").read_text())
    prov = res["provenance"]
    ips = [h["images_per_s"] for h in hist]
    flops = train_flops_per_image(model)
    achieved = flops * ips[-1]  # the last epoch: the steady state (after compile and autotuning)
    peak = peak_flops(prov["device"], prov["precision"], prov.get("tf32"))
    last = hist[-1]
    fig = {**item, "batch": batch, "s_per_epoch": [h["epoch_time_s"] for h in hist],
           "train_s_per_epoch": [h["train_time_s"] for h in hist], "images_per_s": ips,
           "peak_mem_alloc_mib": res.get("peak_mem_alloc_mib"),
           "peak_mem_reserved_mib": res.get("peak_mem_reserved_mib"),
           "train_gflop_per_image": flops / 1e9, "achieved_tflops": achieved / 1e12,
           "mfu": achieved / peak if peak else None, "peak_tflops": peak / 1e12 if peak else None,
           "precision_ran": prov["precision"], "tf32": prov.get("tf32"), "compile_ran": prov.get("compile"),
           "cuda_graphs": prov.get("cuda_graphs"), "cudagraph_skips": prov.get("cudagraph_skips"),
           "device": prov["device"], "capability": prov.get("capability"), "wall_s": wall,
           "status": res["status"], "diverged_reason": res.get("diverged_reason"),
           "skipped_steps": res.get("skipped_steps"), "test_acc": res.get("final_test_acc"),
           "n_train": res["n_train"], "n_val": res["n_val"], "n_test": res["n_test"],
           # for labreport/cluster/eta.py MEASURED: the steady epoch over its weighted images
           "eta_seconds_per_image": last["epoch_time_s"] / epoch_images(res["n_train"], res["n_val"], res["n_test"])}
    if len(hist) > 1 and item["compile"]:
        fig["first_epoch_extra_s"] = hist[0]["epoch_time_s"] - hist[-1]["epoch_time_s"]  # ~ the compile
    mfu = f"{100 * fig['mfu']:.2f}%" if fig["mfu"] is not None else "n/a (unknown peak)"
    tf32 = " (TF32 convolutions)" if fig["tf32"] and fig["precision_ran"] == "fp32" else ""
    log(out, f"{item['name']}: {fig['precision_ran']}{tf32}, "
             f"compile {fig['compile_ran']}, CUDA graphs {fig['cuda_graphs']} "
             f"(inductor skips {fig['cudagraph_skips']}), "
             f"batch {batch}, s/epoch {', '.join(f'{s:.2f}' for s in fig['s_per_epoch'])}, "
             f"img/s {', '.join(f'{i:.0f}' for i in ips)}, peak alloc {fig['peak_mem_alloc_mib']} MiB, "
             f"reserved {fig['peak_mem_reserved_mib']} MiB, {fig['train_gflop_per_image']:.3f} GFLOP/img (train), "
             f"{fig['achieved_tflops']:.2f} TFLOP/s, MFU {mfu}, status {fig['status']}, "
             f"skipped steps {fig['skipped_steps']}, wall {wall:.0f} s")
    return fig


def step_throughput(out: Path, data: Path, device: str, smoke: bool, budget: Budget, reserve_s: float,
                    save=lambda figs: None, auto: str = "bf16", part: str | None = None,
                    figures: dict | None = None) -> dict:
    """Step 1: the plan (its `part`, None: all of it), each measurement on its own, within the
    budget less `reserve_s` for the steps after it, added to `figures`. `auto`: what precision =
    "auto" resolved to here (step 0)."""
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    figures = {} if figures is None else figures
    for item in [i for i in plan(device, smoke, auto) if part in (None, i["part"])]:
        name, left = item["name"], budget.left() - reserve_s
        if smoke and device == "cpu" and item["precision"] == "fp16":
            figures[name] = {"skipped": "fp16 on a CPU: convolution backward is emulated (~40 s per ResNet-20 step)"}
        elif left < 30:
            figures[name] = {"skipped": f"budget: {max(left, 0):.0f} s left for it"}
        else:
            try:
                cap = max(60.0, CAP_SHARE * budget.total)  # a hang costs this, not every later figure
                figures[name] = measure(out, data, device, smoke, work, item, timeout=min(left, cap))
            except Exception as e:  # keep going: the next measurement's figures are still worth having
                figures[name] = {"error": f"{type(e).__name__}: {e}"}
                log(out, f"{name}: ERROR {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
        if "skipped" in figures[name]:
            log(out, f"{name}: skipped ({figures[name]['skipped']})")
        save(figures)
    return figures


def step_jobs(out: Path, data: Path, device: str, smoke: bool, budget: Budget, reserve_s: float) -> dict:
    """Step 2: runs per hour at --jobs 1, 2, 4 on one device, over short runs of the model that
    takes most of the lab's time (ResNet-110 at the lab's batch, 13 of its 27 runs). Each figure
    includes the workers' start-up (torch, CUDA, the data): what --jobs pays once per worker."""
    work = Path(tempfile.mkdtemp(prefix="gpu-check-jobs-"))
    model = "resnet20" if smoke else "resnet110"
    n_runs = 2 if smoke else 8
    cfg = work / "jobs.toml"
    sub = {"train_subset": 128, "test_subset": 64, "val_size": 64} if smoke else \
          {"train_subset": 8000, "test_subset": 1000, "val_size": 500}
    cfg.write_text(toml(data, f'[[experiment]]\nname = "jobs"\nmodel = "{model}"\nseeds = {n_runs}\n',
                        epochs=1, batch_size=128 if smoke else lab_batch(model), **sub))
    figures: dict = {}
    for jobs in ((1, 2) if smoke else (1, 2, 4)):
        left = budget.left() - reserve_s
        if left < 20:
            figures[jobs] = {"skipped": f"budget: {max(left, 0):.0f} s left"}
            log(out, f"--jobs {jobs}: skipped (budget)")
            continue
        try:
            t0 = time.perf_counter()
            labreport(cfg, work / f"runs{jobs}", "run", "--device", device, "--jobs", str(jobs),
                      timeout=min(left, max(60.0, CAP_SHARE * budget.total)))
            wall = time.perf_counter() - t0
            figures[jobs] = {"wall_s": wall, "runs_per_hour": 3600 * n_runs / wall, "runs": n_runs, "model": model,
                             "train_subset": sub["train_subset"]}
            if 1 in figures and "wall_s" in figures[1]:
                figures[jobs]["speedup"] = figures[1]["wall_s"] / wall
            log(out, f"--jobs {jobs}: {n_runs} {model} runs of {sub['train_subset']} images in {wall:.1f} s = "
                     f"{3600 * n_runs / wall:.0f} runs/hour, x{figures[jobs].get('speedup', 1.0):.2f} over --jobs 1")
        except Exception as e:  # the other --jobs figures are still worth having
            figures[jobs] = {"error": f"{type(e).__name__}: {e}"}
            log(out, f"--jobs {jobs}: ERROR {type(e).__name__}: {e}")
    return figures


def step_kill_resume(out: Path, data: Path, device: str, smoke: bool, budget: Budget, reserve_s: float) -> dict:
    """Step 3: SIGKILL after the first checkpoint, then resume (fp16 on a GPU: the scaler's state)."""
    work = Path(tempfile.mkdtemp(prefix="gpu-check-kill-"))
    cfg = work / "kill.toml"
    sub = {"train_subset": 256, "test_subset": 64, "val_size": 64} if smoke else {"train_subset": 20000}
    epochs = 8 if smoke else 3  # toy epochs last a fraction of a second: leave room to kill mid-run
    precision = "fp32" if device == "cpu" else "fp16"  # CPU fp16 backward: ~40 s per step
    cfg.write_text(toml(data, '[[experiment]]\nname = "kill"\nmodel = "resnet20"\n', epochs=epochs,
                        batch_size=128, precision=precision, **sub))
    runs = work / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "labreport", "--config", str(cfg), "--runs", str(runs), "run",
                             "--device", device], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + min(180, max(budget.left() - reserve_s, 30))
    try:
        while not list(runs.glob("*/ckpt.pt")):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the run ended or stalled before its first checkpoint")
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    second = labreport(cfg, runs, "run", "--device", device, timeout=max(budget.left() - reserve_s, 60))
    res = json.loads(next(runs.glob("*/result.json")).read_text())
    ok = "resuming after epoch" in second.stderr + second.stdout and res["epochs_run"] == epochs
    log(out, f"kill -9 after the first checkpoint, then resume ({precision}): {'ok' if ok else 'FAILED'} "
             f"(epochs_run {res['epochs_run']}, status {res['status']}, skipped steps {res.get('skipped_steps')})")
    return {"ok": ok, "epochs_run": res["epochs_run"], "precision": res["provenance"]["precision"],
            "skipped_steps": res.get("skipped_steps")}


# The check's order, most decisive first: (step, its part, seconds kept back for the steps after it
# that must still run: --jobs, 3 settings of ~25 s, and kill-resume, 2 runs). The fused sets come
# right after one run eager; CUDA graphs, the other models and --jobs after them; what is left of
# the budget goes to the fused compile and the other precisions.
PHASES = (("precision_rule", None, 150.0), ("throughput", "first", 130.0), ("fused", "eager", 130.0),
          ("throughput", "core", 130.0), ("jobs", None, 40.0), ("kill_resume", None, 0.0),
          ("fused", "graphs", 0.0), ("throughput", "tail", 0.0))


def run_phase(args, results: dict, name: str, part: str | None, reserve: float, budget: Budget, save) -> None:
    """One step of PHASES; an exception is kept as the step's error and the check goes on."""
    data, out, dev, smoke = args.data.resolve(), args.out, args.device, args.smoke
    t0 = time.perf_counter()
    try:
        if name == "precision_rule":
            results[name] = step_precision_rule(out, data, dev, smoke, budget)
        elif name == "throughput":
            auto = results.get("precision_rule", {}).get("auto", {}).get("batch", "bf16")
            results[name] = step_throughput(out, data, dev, smoke, budget, reserve, save=lambda f: save(f, name),
                                            auto=auto, part=part, figures=results.get(name))
        elif name == "fused":
            results[name] = step_fused(out, data, dev, smoke, budget, reserve, part, figures=results.get(name))
        elif name == "jobs":
            results[name] = step_jobs(out, data, dev, smoke, budget, reserve)
        else:
            results[name] = step_kill_resume(out, data, dev, smoke, budget, reserve)
    except Exception as e:  # keep going: a later step's figures are still worth having
        results[name] = {"error": f"{type(e).__name__}: {e}"}
        log(out, f"{name}: ERROR {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
    log(out, f"step {name}{' (' + part + ')' if part else ''}: {time.perf_counter() - t0:.0f} s")
    save()


def figures(args, results: dict, info: dict) -> None:
    """Step 4, figures only, no device time: the lab's matrix at the measured speeds, the MEASURED
    entry, and the fused sets against the best way to train their runs unfused."""
    toy = " [toy sizes: tests the arithmetic, not a figure]" if args.smoke else ""
    try:
        est = lab_estimate(results.get("throughput", {}), results.get("jobs", {}), lab_specs())
        est["toy"] = args.smoke
        for line in estimate_text(est):
            log(args.out, line + toy)
        results["lab_estimate"] = est
        results["measured_entry"] = measured_entry(info, results.get("throughput", {}))
        log(args.out, f"for labreport/cluster/eta.py MEASURED: {results['measured_entry']}")
        from fused import MEMBER_SETS, member_specs

        sets = {name: member_specs(name) for name in MEMBER_SETS}
        fc = fused_comparison(results.get("throughput", {}), results.get("jobs", {}), results.get("fused", {}),
                              sets, lab_specs())
        fc["toy"] = args.smoke
        for line in fused_text(fc):
            log(args.out, line + toy)
        results["fused_comparison"] = fc
    except Exception as e:  # noqa: BLE001
        results["lab_estimate"] = {"error": f"{type(e).__name__}: {e}"}
        log(args.out, f"lab_estimate: ERROR {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="folder holding cifar-10-batches-py")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=450.0,
                    help="seconds for the whole check (default 450: under 8 minutes with start-up)")
    ap.add_argument("--smoke", action="store_true", help="toy sizes (for CPU tests of this script)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    budget = Budget(args.budget_s)
    info = {"device": device_name(args.device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "smoke": args.smoke, "budget_s": args.budget_s, "date": time.strftime("%Y-%m-%d"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    if args.device.startswith("cuda") and torch.cuda.is_available():
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        info["driver"] = driver_version()
    log(args.out, f"gpu_check: {info}")
    results: dict = {"info": info}

    def save(partial=None, name=None):
        if name is not None:
            results[name] = partial
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))

    for name, part, reserve in PHASES:
        run_phase(args, results, name, part, reserve, budget, save)
    figures(args, results, info)
    save()
    (args.out / "gpu_check.md").write_text(markdown(results))
    log(args.out, f"total {time.perf_counter() - budget.t0:.0f} s")
    failed = [k for k, v in results.items() if isinstance(v, dict) and k != "info" and (
        "error" in v or v.get("ok") is False or any(isinstance(x, dict) and "error" in x for x in v.values()))]
    if failed:
        log(args.out, f"errors in: {', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
