"""How good is `labreport run --dry-run`'s estimate? Estimate ÷ actual for a small matrix trained here.

    python bench/bench_estimate.py [--rounds 2] [--device cpu] [--json OUT]

Each round, in a fresh folder and fresh processes as a user runs them: `labreport run --dry-run`
on an empty store (it times each setting of the matrix on this device: engine/speed.py), then
`labreport run`, which trains the matrix. The matrix holds every architecture of the lab at its
batch size (CIFARNet, ResNet-18, ResNet-20 at 128; ResNet-110 with and without BatchNorm at 64),
2 epochs on 1,024 training images, 512 validation and 1,024 test images, on a synthetic CIFAR-10
look-alike (the speed of a step does not depend on the pixels). Per run: the estimate against the
run's own training time (result.json's total_time_s: its epochs, evaluation included); in all:
the estimate against that sum and against the wall of `labreport run` (torch's import, reading
the data set and checkpoints included).

Target: estimate ÷ actual between 0.5 and 2 for every run and in all. Not a test: it prints numbers
and never fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MATRIX = """
experiment = [
  { name = "cifarnet", model = "cifarnet" },
  { name = "resnet18", model = "resnet18" },
  { name = "resnet20", model = "resnet20", dropout = [0.0, 0.15] },
  { name = "resnet110-bn", model = "resnet110", batch_size = 64 },
  { name = "resnet110-nobn", model = "resnet110", norm = "none", batch_size = 64 },
]
[data]
root = "data"
download = false
[defaults]
epochs = 2
train_subset = 1024
val_size = 512
test_subset = 1024
lr = 1e-3
[gradflow]
enabled = false
"""
ESTIMATE = """
import json, sys
import labreport
est = labreport.Lab(sys.argv[1], runs=sys.argv[2]).estimate(device=sys.argv[3])
print(json.dumps({"total_s": est.total_s, "per_run": est.per_run}))
"""


def timed(folder: Path, *cmd: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *cmd], cwd=folder, check=True, capture_output=True, text=True)
    return out.stdout, time.perf_counter() - t0


def one_round(device: str) -> dict:
    """The estimate on an empty store (a fresh process: Lab.estimate(), what run --dry-run prints), then
    `labreport run` in another."""
    from labreport.testing import write_synthetic_cifar10

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "experiments.toml").write_text(MATRIX)
        write_synthetic_cifar10(folder / "data", n_train=2_000, n_test=1_024, seed=0)
        toml, runs = str(folder / "experiments.toml"), str(folder / "runs")
        out, dry_wall = timed(folder, "-c", ESTIMATE, toml, runs, device)
        est = json.loads(out)
        _, run_wall = timed(folder, "-m", "labreport", "--config", toml, "--runs", runs, "run", "--device", device)
        actual = {}
        for key in est["per_run"]:
            res = json.loads((folder / "runs" / key / "result.json").read_text())
            actual[key] = (res["spec"]["model"] + ("" if res["spec"]["norm"] == "batch" else " no BN"),
                           res["total_time_s"])
    return {"dry_run_s": dry_wall, "run_wall_s": run_wall, "estimate_total_s": est["total_s"],
            "runs": {k: {"model": actual[k][0], "estimate_s": est["per_run"][k], "actual_s": actual[k][1]}
                     for k in est["per_run"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    rounds = []
    for i in range(args.rounds):
        r = one_round(args.device)
        rounds.append(r)
        trained = sum(x["actual_s"] for x in r["runs"].values())
        print(f"round {i + 1}: dry run {r['dry_run_s']:.1f} s (timing included), "
              f"estimate {r['estimate_total_s']:.0f} s; "
              f"training {trained:.1f} s (ratio {r['estimate_total_s'] / trained:.2f}), wall of `run` "
              f"{r['run_wall_s']:.1f} s (ratio {r['estimate_total_s'] / r['run_wall_s']:.2f})", flush=True)
    print("\nper run, estimate ÷ actual training time (medians over the rounds):")
    keys = rounds[0]["runs"]
    for k in keys:
        ratios = [r["runs"][k]["estimate_s"] / r["runs"][k]["actual_s"] for r in rounds]
        print(f"  {keys[k]['model']:<16} estimate {keys[k]['estimate_s']:>6.1f} s, actual "
              f"{statistics.median(r['runs'][k]['actual_s'] for r in rounds):>6.1f} s: {statistics.median(ratios):.2f}")
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=1))


if __name__ == "__main__":
    main()
