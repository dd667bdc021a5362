"""What the steps of bench/gpu_check.py share: the lab's matrix, the log, commands with a timeout
(`labreport` among them), the time budget, the device's names."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CAP_SHARE = 0.4  # of the budget, at most, for one measurement (at least 60 s)
GRAPHS = "reduce-overhead"  # [run] compile: torch.compile with CUDA graphs
LAB_TOML = Path(__file__).resolve().parents[1] / "experiments.toml"  # its batch sizes; what step 4 estimates


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


@functools.lru_cache(maxsize=None)
def lab_specs(path: Path = LAB_TOML) -> list:
    """The TrainSpecs of the lab's matrix: `labreport run` without a profile (read once)."""
    from labreport.config import load_config

    return [r.spec for r in load_config(path).select()]


def lab_batch(model: str, specs: list | None = None) -> int:
    """The batch size the lab trains `model` with (experiments.toml; ResNet-110: 64)."""
    return next((s.batch_size for s in (specs if specs is not None else lab_specs()) if s.model == model), 128)


def labreport(cfg: Path, runs: Path, *args: str, timeout: float = 600,
              check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "labreport", "--config", str(cfg), "--runs", str(runs), *args]
    proc = run_cmd(cmd, timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def toml(data: Path, experiments: str, run: dict | None = None, **defaults) -> str:
    # no gradient-flow measurement in these stores: it would add to every timing below
    lines = ["[data]", f'root = "{data}"', "download = false", "[gradflow]", "enabled = false", "[run]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in (run or {}).items()]
    lines += ["[defaults]"] + [f"{k} = {json.dumps(v)}" for k, v in defaults.items()]
    return "\n".join(lines) + "\n" + experiments


def driver_version() -> str | None:
    """The NVIDIA driver's version, as nvidia-smi says it (None without nvidia-smi)."""
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"
