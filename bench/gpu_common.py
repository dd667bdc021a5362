"""What the steps of bench/gpu_check.py share: the log, a command with a timeout, the time budget."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

CAP_SHARE = 0.4  # of the budget, at most, for one measurement (at least 60 s)
GRAPHS = "reduce-overhead"  # [run] compile: torch.compile with CUDA graphs


def log(out: Path, text: str) -> None:
    print(text, flush=True)
    with open(out / "gpu_check.log", "a") as fh:
        fh.write(text + "\n")


def run_cmd(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on timeout the whole group is killed (a `--jobs`
    parent's workers too: none is left holding the GPU)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"timed out after {timeout:.0f} s: {' '.join(cmd[3:])}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


class Budget:
    """Seconds left of the whole check; each step may spend up to its share."""

    def __init__(self, total_s: float):
        self.t0, self.total = time.perf_counter(), total_s

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.t0)
