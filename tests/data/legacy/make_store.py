"""Writes tests/data/legacy/: a small run store and the plan keys of every profile, made by the
labreport of commit 2f0536b (before the package was split into subpackages), through the CLI only.

    python tests/data/legacy/make_store.py          # from the repository root, with labreport installed

What it holds and why (tests/test_legacy_store.py reads it with today's code):

    plan_keys.json       `labreport plan --json` of experiments.toml for every profile: label -> key.
                         A run key must never change: a user's store would no longer count as done.
    experiments.toml     a tiny matrix on the synthetic data set (labreport.testing, seed 0):
                         three runs finished, one partial (epoch 1 of 2) whose worker was killed
    store/               what `labreport run` wrote for it. The finished runs' ckpt.pt files are
                         left out (they are the trained weights, 3 MB each, read by nothing but a
                         user); the partial run keeps its checkpoint and the lease of its dead worker
    uninterrupted.json   the history of the partial run's spec trained without interruption
                         (deterministic = true): what resuming the partial run must reproduce
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
TOML = """\
# A tiny matrix for the legacy-store fixture (tests/data/legacy/make_store.py).
[data]
root = "data"
download = false

[defaults]
epochs = 2
train_subset = 192
val_size = 100
test_subset = 100
batch_size = 32
lr = 1e-3
deterministic = true

[gradflow]
enabled = false

[[experiment]]
name = "reg"
task = 4
model = "resnet20"
dropout = [0.0, 0.15]
epochs = 1

[[experiment]]
name = "nobn"
task = 5
model = "resnet20"
norm = "none"
epochs = 1

[[experiment]]
name = "partial"
task = 5
model = "resnet20"
"""
STEPS_PER_EPOCH = 192 // 32


def labreport(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labreport", *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, check=check)


def plan_keys() -> dict:
    profiles = [None, "quick", "smoke", "bn-claim", "paper"]
    out = {}
    for p in profiles:
        rows = json.loads(labreport("plan", "--json", *(["--profile", p] if p else []), cwd=ROOT).stdout)
        out[p or "(none)"] = {r["label"]: r["key"] for r in rows}
    return out


def main() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from labreport.testing import write_synthetic_cifar10
    except ImportError:  # the labreport this fixture was made with
        from labreport.data import write_synthetic_cifar10
    (HERE / "plan_keys.json").write_text(json.dumps(plan_keys(), indent=1, sort_keys=True) + "\n")
    (HERE / "experiments.toml").write_text(TOML)
    shutil.rmtree(HERE / "store", ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(HERE / "experiments.toml", work)
        write_synthetic_cifar10(work / "data", n_train=500, n_test=100, seed=0)
        labreport("--runs", "store", "run", "--only", "reg", "--only", "nobn", cwd=work)
        # the partial run: killed at the first step of its second epoch, after epoch 1's checkpoint
        killed = labreport("--runs", "store", "run", "--only", "partial", cwd=work, check=False,
                           env={"LABREPORT_FAULT_AT": f"train.step:{STEPS_PER_EPOCH + 1}"})
        assert killed.returncode == -9, killed
        labreport("--runs", "whole", "run", "--only", "partial", cwd=work)
        whole = next((work / "whole").iterdir())
        (HERE / "uninterrupted.json").write_text((whole / "history.json").read_text())
        for ckpt in (work / "store").glob("*/ckpt.pt"):
            if (ckpt.parent / "result.json").exists():
                ckpt.unlink()
        shutil.copytree(work / "store", HERE / "store")
    print(labreport("--runs", str(HERE / "store"), "--config", str(HERE / "experiments.toml"), "status",
                    cwd=HERE).stdout)


if __name__ == "__main__":
    main()
