"""Matrix wall time of `labreport run --jobs N` against `--jobs 1`, measured side by side.

    python bench/bench_jobs.py [--data DIR] [--jobs 1,2] [--runs 6] [--images 1024] [--epochs 2]
                               [--rounds 2] [--model resnet20] [--device cpu|cuda] [--json OUT]

Each round trains the same small matrix (`--runs` ResNet-20 runs that differ by seed) into a fresh
run store once per jobs value, in rotated order; the figure is the median wall time of the whole
`labreport run` command (worker start-up, torch import and data loading included: what a user
waits for). On a GPU, `--device cuda --jobs 1,2,4` gives runs per hour for several workers on one
GPU. Not a test: it prints numbers and never fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def ensure_data(path: Path) -> tuple[Path, str]:
    if (path / "cifar-10-batches-py").is_dir():
        return path, "CIFAR-10 from " + str(path)
    builder = ROOT.parent / "shared" / "data" / "build_cifar10.py"
    if builder.exists():
        subprocess.run([sys.executable, str(builder), str(path)], check=True)
        return path, "CIFAR-10 built from the shared JPEG archive"
    from labreport.testing import write_synthetic_cifar10

    write_synthetic_cifar10(path, n_train=5000, n_test=1000)
    return path, "synthetic CIFAR-10 look-alike (no real data found)"


def matrix_toml(data: Path, args) -> str:
    return f"""
[data]
root = "{data}"
download = false
[gradflow]
enabled = false      # time the training only
[defaults]
epochs = {args.epochs}
batch_size = 128
val_size = 512
train_subset = {args.images}
test_subset = 512
seeds = {args.runs}
[[experiment]]
name = "bench"
model = "{args.model}"
"""


def run_once(cfg: Path, jobs: int, device: str) -> float:
    store = Path(tempfile.mkdtemp(prefix=f"bench-jobs{jobs}-"))
    cmd = [sys.executable, "-m", "labreport", "--config", str(cfg), "--runs", str(store), "run",
           "--device", device, "--jobs", str(jobs)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"jobs={jobs} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    jobs = [int(j) for j in args.jobs.split(",")]
    data, note = ensure_data(args.data)
    tmp = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    cfg = tmp / "experiments.toml"
    cfg.write_text(matrix_toml(data.resolve(), args))
    print(f"labreport run --jobs N: {args.runs} x {args.model}, {args.epochs} epochs on {args.images} images, "
          f"device {args.device}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; {note}")
    walls: dict[int, list[float]] = {j: [] for j in jobs}
    for r in range(args.rounds):
        order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]  # rotate: neither goes first every time
        for j in order:
            walls[j].append(run_once(cfg, j, args.device))
            print(f"round {r + 1}: jobs={j} {walls[j][-1]:.1f} s", flush=True)
    base = statistics.median(walls[jobs[0]])
    print(f"\n{'jobs':>5} {'median s':>9} {'runs/hour':>10} {'speed-up':>9}")
    figures = {}
    for j in jobs:
        med = statistics.median(walls[j])
        figures[j] = {"median_s": med, "runs_per_hour": 3600 * args.runs / med, "speedup": base / med,
                      "walls": walls[j]}
        print(f"{j:>5} {med:>9.1f} {3600 * args.runs / med:>10.0f} {base / med:>8.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"data": str(args.data), "json": str(args.json)},
                                         "figures": figures}, indent=1))


if __name__ == "__main__":
    main()
