"""Starting real `labreport` processes from tests (parallel workers, Slurm tasks, kill -9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def labreport(cfg: Path, runs: Path, *args: str) -> subprocess.Popen:
    """`python -m labreport --config CFG --runs RUNS ARGS...`, output captured as text."""
    return subprocess.Popen([sys.executable, "-m", "labreport", "--config", str(cfg), "--runs", str(runs), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
