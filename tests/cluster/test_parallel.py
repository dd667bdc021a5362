"""Many workers, one run store: concurrent processes, killed workers, --jobs, status of claims.

These start real `labreport` processes (each imports torch and loads the small synthetic data set),
so they are marked slow; the matrix is tiny.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from labreport.cli import main
from procs import labreport
from labreport.config import load_config

pytestmark = pytest.mark.slow

TOML = """
[data]
root = "{data}"
download = false
[defaults]
epochs = {epochs}
batch_size = 32
lr = 1e-3
val_size = 64
train_subset = {train}
test_subset = 64
deterministic = true
[run]
threads = 1
[[experiment]]
name = "small"
model = "cifarnet"
dropout = {dropouts}
"""


def write_config(tmp_path: Path, cifar_dir: Path, *, epochs=2, train=128, dropouts="[0.0, 0.1, 0.2, 0.3]") -> Path:
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(TOML.format(data=cifar_dir, epochs=epochs, train=train, dropouts=dropouts))
    return cfg


def trainings(output: str) -> Counter:
    """How many times each run key was (re)started for training, from the per-run header lines."""
    return Counter(line.split(" run ", 1)[1].split(":")[0] for line in output.splitlines()
                   if " run " in line and " steps" in line and " x " in line)


def results(runs: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "result.json").read_text()) for d in runs.iterdir() if (d / "result.json").exists()}


def test_two_concurrent_processes_train_every_run_exactly_once(tmp_path, cifar_dir):
    cfg = write_config(tmp_path, cifar_dir)
    runs = tmp_path / "runs"
    a, b = (labreport(cfg, runs, "run", "--wait", "--threads", "1"),
            labreport(cfg, runs, "run", "--wait", "--threads", "1"))
    out_a, _ = a.communicate(timeout=240)
    out_b, _ = b.communicate(timeout=240)
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    counts = trainings(out_a) + trainings(out_b)
    keys = [r.key for r in load_config(cfg).runs]
    assert sorted(counts) == sorted(keys) and set(counts.values()) == {1}, counts
    assert set(results(runs)) == set(keys)


def test_a_killed_workers_lease_is_taken_over_and_its_run_resumes(tmp_path, cifar_dir):
    cfg = write_config(tmp_path, cifar_dir, epochs=6, train=256, dropouts="[0.0]")
    runs = tmp_path / "runs"
    key = load_config(cfg).runs[0].key
    victim = labreport(cfg, runs, "run", "--threads", "1")
    deadline = time.time() + 120
    while not (runs / key / "ckpt.pt").exists():  # killed after its first finished epoch
        assert time.time() < deadline and victim.poll() is None
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    lease = json.loads((runs / key / "lease.json").read_text())
    assert lease["pid"] == victim.pid and lease["host"] == socket.gethostname()  # left behind

    status = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(runs), "status"])
    assert "claimed by" in status.output and str(victim.pid) in status.output

    heir = labreport(cfg, runs, "run", "--threads", "1")
    out, _ = heir.communicate(timeout=240)
    assert heir.returncode == 0, out
    assert "resuming after epoch" in out
    res = results(runs)[key]
    assert res["status"] == "completed" and res["epochs_run"] == 6
    assert not (runs / key / "lease.json").exists()


def test_jobs_2_gives_the_results_of_jobs_1(tmp_path, cifar_dir):
    cfg = write_config(tmp_path, cifar_dir)
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = labreport(cfg, one, "run")
    out1, _ = p1.communicate(timeout=240)
    p2 = labreport(cfg, two, "run", "--jobs", "2")
    out2, _ = p2.communicate(timeout=240)
    assert p1.returncode == 0 and p2.returncode == 0, out1 + out2
    assert "4 trained, 0 cached" in out2 and "[w0]" in out2 and "[w1]" in out2
    r1, r2 = results(one), results(two)
    assert set(r1) == set(r2) and len(r1) == 4
    for key in r1:
        assert r1[key]["test_acc_at_best"] == r2[key]["test_acc_at_best"]
        h1 = json.loads((one / key / "history.json").read_text())
        h2 = json.loads((two / key / "history.json").read_text())
        assert [h["train_loss"] for h in h1] == [h["train_loss"] for h in h2]


def test_jobs_report_a_failing_run_and_the_others_finish(tmp_path, cifar_dir):
    # batch_size larger than the training subset fails that run (a ValueError in train)
    cfg = write_config(tmp_path, cifar_dir, dropouts="[0.0, 0.1]")
    cfg.write_text(cfg.read_text() + '\n[[experiment]]\nname = "broken"\nmodel = "cifarnet"\nbatch_size = 512\n')
    runs = tmp_path / "runs"
    p = labreport(cfg, runs, "run", "--jobs", "2")
    out, _ = p.communicate(timeout=240)
    assert p.returncode == 1, out
    assert "2 trained" in out and "1 failed" in out and "FAILED broken" in out and "error.json" in out
