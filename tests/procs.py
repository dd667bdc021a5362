"""Helpers for tests that train for real: a tiny experiments.toml, `labreport` processes, and
what they leave in the store and their logs (parallel workers, Slurm tasks, kill -9)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path


def tiny_toml(data: Path, *, epochs: int | None = None, more: str = "") -> str:
    """The head of a tiny experiments.toml on the synthetic data set: 128 training images in batches
    of 32, 64 for validation and test, deterministic, one CPU thread, no gradient flow; `more`:
    further sections (no [[experiment]] yet: the caller adds them)."""
    epochs_line = f"epochs = {epochs}\n" if epochs is not None else ""
    return (f'[data]\nroot = "{data}"\ndownload = false\n[defaults]\n{epochs_line}batch_size = 32\nlr = 1e-3\n'
            "val_size = 64\ntrain_subset = 128\ntest_subset = 64\ndeterministic = true\n[run]\nthreads = 1\n"
            f"[gradflow]\nenabled = false\n{more}\n")


def labreport(cfg: Path, runs: Path, *args: str) -> subprocess.Popen:
    """`python -m labreport --config CFG --runs RUNS ARGS...`, output captured as text."""
    return subprocess.Popen([sys.executable, "-m", "labreport", "--config", str(cfg), "--runs", str(runs), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)


def trainings(output: str) -> Counter:
    """How many times each run key was (re)started for training, from the per-run header lines."""
    return Counter(line.split(" run ", 1)[1].split(":")[0] for line in output.splitlines()
                   if " run " in line and " steps" in line and " x " in line)


def results(runs: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "result.json").read_text()) for d in runs.iterdir() if (d / "result.json").exists()}


def history(runs: Path, key: str) -> list[dict]:
    return json.loads((runs / key / "history.json").read_text())
