"""The GPU readiness script stays runnable without a GPU: its steps at toy size on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_steps_run_on_cpu_at_toy_size(tmp_path, cifar_dir):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), str(tmp_path / "out"),
                           "--data", str(cifar_dir), "--device", "cpu", "--smoke"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    r20 = figures["throughput"]["resnet20"]
    assert r20["images_per_s"][0] > 0 and 0.2 < r20["train_gflop_per_image"] < 0.3  # 41M MACs = 82 MFLOP forward, x 3
    assert figures["throughput"]["resnet110"]["train_gflop_per_image"] > 5 * r20["train_gflop_per_image"]
    assert set(figures["jobs"]) == {"1", "2"} and figures["jobs"]["2"]["runs_per_hour"] > 0
    assert figures["kill_resume"] == {"ok": True, "epochs_run": 8}
    assert "kill -9 after the first checkpoint, then resume: ok" in (tmp_path / "out" / "gpu_check.log").read_text()


def test_gpu_check_wrapper_refuses_without_cuda(tmp_path, cifar_dir):
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(tmp_path / "o"), str(cifar_dir)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr
