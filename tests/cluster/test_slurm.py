"""`run --executor slurm|submitit-local`: one job array for the runs left, the task code path, preemption.

No Slurm here: the array runs through submitit's LocalExecutor (`--executor submitit-local`), which
starts each task as a subprocess of a local "controller"; the Slurm branch is checked against
submitit's own mocked sbatch/sacct (the sbatch file it would submit). The training tests are slow.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from labreport.cli import main
from procs import history, labreport, results, tiny_toml, trainings
from labreport.config import load_config
from labreport.errors import ConfigError

TOML = tiny_toml("{data}", epochs=2, more="{executor}") + """[[experiment]]
name = "small"
model = "cifarnet"
dropout = {dropouts}
{more}
"""


def write_config(tmp_path: Path, cifar_dir: Path, *, dropouts="[0.0, 0.1, 0.2]", executor="", more="") -> Path:
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(TOML.format(data=cifar_dir, dropouts=dropouts, executor=executor, more=more))
    return cfg


def task_logs(runs: Path) -> str:
    """Every array task's output (submitit's <job>_0_log.out/.err under <store>/.slurm)."""
    return "".join(p.read_text() for p in sorted((runs / ".slurm").glob("*_log.*")))





@pytest.mark.slow
def test_submitit_local_array_trains_each_run_once_with_the_results_of_a_local_run(tmp_path, cifar_dir):
    pytest.importorskip("submitit")
    cfg = write_config(tmp_path, cifar_dir, dropouts="[0.0, 0.2]")
    local, array = tmp_path / "local", tmp_path / "array"
    reference = labreport(cfg, local, "run")  # trains meanwhile, in its own process
    res = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(array), "run",
                                    "--executor", "submitit-local", "--wait"])
    out_ref, _ = reference.communicate(timeout=240)
    assert reference.returncode == 0, out_ref
    assert res.exit_code == 0, res.output
    assert "submitted 2 run(s) to submitit-local as one array" in res.output
    assert "2 trained, 0 cached, 0 diverged, 0 failed" in res.output

    keys = [r.key for r in load_config(cfg).runs]
    counts = trainings(task_logs(array))
    assert sorted(counts) == sorted(keys) and set(counts.values()) == {1}, counts
    submitted = json.loads((array / ".slurm" / "submitted.json").read_text())["submissions"]
    assert len(submitted) == 1 and sorted(submitted[0]["jobs"]) == sorted(keys)  # one array, every run

    r_local, r_array = results(local), results(array)
    assert set(r_local) == set(r_array) == set(keys)
    for key in keys:
        assert r_array[key]["status"] == "completed"
        assert r_array[key]["test_acc_at_best"] == r_local[key]["test_acc_at_best"]
        assert [h["train_loss"] for h in history(array, key)] == [h["train_loss"] for h in history(local, key)]

    again = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(array), "run",
                                      "--executor", "submitit-local"])
    assert again.exit_code == 0 and "nothing to submit: 2 run(s) already done" in again.output


@pytest.mark.slow
def test_a_preempted_task_is_requeued_and_resumes_from_its_last_checkpoint(tmp_path, cifar_dir):
    """What submitit 1.5.4 does locally: the preemption signal (SIGUSR2) reaches the task, submitit calls
    TrainRun.checkpoint() (the lease is released), the task exits with code 144, and the local controller
    starts it again in the same job, from the pickle checkpoint() returned. LocalJob._interrupt() is not
    used: it signals the controller, which has no handler for SIGUSR2 and dies, orphaning the task;
    Slurm signals the task itself, as done here."""
    pytest.importorskip("submitit")
    cfg = write_config(tmp_path, cifar_dir, dropouts="[0.0]")
    cfg.write_text(cfg.read_text().replace("epochs = 2", "epochs = 6")
                   .replace("train_subset = 128", "train_subset = 256"))
    runs = tmp_path / "runs"
    key = load_config(cfg).runs[0].key
    proc = labreport(cfg, runs, "run", "--executor", "submitit-local", "--wait")
    deadline = time.time() + 120
    while not (runs / key / "ckpt.pt").exists():  # preempted after its first finished epoch
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    task_pid = json.loads((runs / key / "lease.json").read_text())["pid"]  # the task holds the lease
    signal_time = time.time()
    os.kill(task_pid, signal.SIGUSR2)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out + task_logs(runs)
    assert "1 trained, 0 cached, 0 diverged, 0 failed" in out

    logs = task_logs(runs)
    assert "Calling checkpoint method" in logs and "Requeued job" in logs
    assert f"{key}: preempted or out of time: lease released" in logs
    assert trainings(logs)[key] == 2  # the first try and the requeued one
    assert "resuming after epoch" in logs
    res = results(runs)[key]
    assert res["status"] == "completed" and res["epochs_run"] == 6
    assert [h["epoch"] for h in history(runs, key)] == [1, 2, 3, 4, 5, 6]
    assert not (runs / key / "lease.json").exists()
    assert len(list((runs / ".slurm").glob("*_submitted.pkl"))) == 1  # requeued in the same job, not resubmitted
    assert time.time() - signal_time < 200


def test_checkpoint_releases_the_lease_and_resubmits_the_same_task(tmp_path):
    pytest.importorskip("submitit")
    from labreport.cluster.slurm import TrainRun
    from labreport.store import RunStore

    store = RunStore(tmp_path / "runs")
    key = "0123456789abcdef"
    assert store.acquire(key)
    task = TrainRun(str(tmp_path / "experiments.toml"), None, str(store.root), key, "x")
    delayed = task.checkpoint()
    assert not (store.run_dir(key) / "lease.json").exists()
    assert delayed.function is task and delayed.args == () and delayed.kwargs == {}


def test_executor_slurm_without_submitit_is_a_one_line_error(tmp_path, cifar_dir, monkeypatch):
    cfg = write_config(tmp_path, cifar_dir)
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` now raises ImportError
    for kind in ("slurm", "submitit-local"):
        res = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(tmp_path / "runs"), "run",
                                        "--executor", kind])
        assert res.exit_code == 2, res.output
        assert res.output.strip().splitlines() == [
            f"error: --executor {kind} needs submitit: pip install 'labreport[slurm]'"]
    assert not (tmp_path / "runs").exists()


def test_executor_section_defaults_and_errors(tmp_path, cifar_dir):
    cfg = write_config(tmp_path, cifar_dir)
    ex = load_config(cfg).executor
    assert asdict(ex) == {"partition": "", "time_min": 240, "gpus_per_task": 1, "cpus_per_task": 4, "mem_gb": 16,
                  "array_parallelism": 16, "folder": "", "extra": {}}
    cfg = write_config(tmp_path, cifar_dir, executor='[executor]\npartition = "gpu"\ntime_min = 30\n'
                                                     'extra = {account = "lab", qos = "high", exclusive = true}')
    ex = load_config(cfg).executor
    assert ex.partition == "gpu" and ex.time_min == 30
    assert ex.extra == {"account": "lab", "qos": "high", "exclusive": True}
    bad = {
        "time_mins = 30": "unknown key 'time_mins' (did you mean 'time_min'?)",
        'time_min = "4h"': "'time_min' must be of type int",
        "time_min = 0": "'time_min' must be >= 1",
        "gpus_per_task = true": "'gpus_per_task' must be of type int",
        "partition = 3": "'partition' must be of type str",
        'extra = "account=x"': "'extra' must be a table of sbatch options",
        "extra = {account = {name = 'x'}}": "'extra.account' must be text, a number or true",
        "extra = {nodelist = ['a', 'b']}": "'extra.nodelist' must be text, a number or true",
    }
    for line, msg in bad.items():
        cfg = write_config(tmp_path, cifar_dir, executor=f"[executor]\n{line}")
        with pytest.raises(ConfigError, match=re.escape(f"[executor]: {msg}")):
            load_config(cfg)


def test_slurm_array_with_a_mocked_sbatch_and_status_shows_queued(tmp_path, cifar_dir):
    """The Slurm branch up to sbatch, with submitit's own mock of sbatch/sacct (no cluster here)."""
    pytest.importorskip("submitit")
    test_core = pytest.importorskip("submitit.core.test_core")
    from submitit.slurm import slurm

    cfg = write_config(tmp_path, cifar_dir, dropouts="[0.0, 0.1]",
                       executor='[executor]\nextra = {account = "lab", qos = "high"}')
    runs = tmp_path / "runs"
    args = ["--config", str(cfg), "--runs", str(runs), "run", "--executor", "slurm", "--partition", "gpu",
            "--time-min", "90"]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])  # no sbatch, no srun needed
    assert dry.exit_code == 0, dry.output
    assert "would submit 2 run(s) to slurm as one job array, one task per run (1 torch thread(s) each); " \
           "sbatch parameters:" in dry.output
    assert not (runs / ".slurm").exists()
    mock = test_core.MockedSubprocess(known_cmds=["srun"])
    try:
        with mock.context():
            res = CliRunner().invoke(main, args)
    finally:
        slurm.SlurmJob.watcher.clear()
    assert res.exit_code == 0, res.output
    assert "submitted 2 run(s) to slurm as one array: job(s) 12_[0-1]" in res.output
    assert "follow with: labreport status" in res.output
    sbatch = "".join(p.read_text() for p in (runs / ".slurm").glob("*submission.sh"))
    for flag in ("--array=0-1%2", "--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=4",
                 "--mem=16GB", "--account=lab", "--qos=high", "--signal=USR2@90", "--job-name=labreport"):
        assert f"#SBATCH {flag}\n" in sbatch, (flag, sbatch)
    # --dry-run printed the very lines that were submitted
    assert [ln.strip() for ln in dry.output.splitlines() if ln.strip().startswith("#SBATCH")] == \
        [ln for ln in sbatch.splitlines() if ln.startswith("#SBATCH")]

    keys = [r.key for r in load_config(cfg).runs]
    jobs = json.loads((runs / ".slurm" / "submitted.json").read_text())["submissions"][0]["jobs"]
    assert jobs == {keys[0]: "12_0", keys[1]: "12_1"}
    status = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(runs), "status"])
    assert f"{keys[0]}  queued (job 12_0)" in status.output and f"{keys[1]}  queued (job 12_1)" in status.output
    assert "2 queued" in status.output


# sbatch's own words (Slurm 22.05, the single-node cluster of .ci/slurm.sh) -> the line the user gets
SBATCH_REFUSALS = {
    "sbatch: error: Invalid generic resource (gres) specification":
        "Invalid generic resource (gres) specification: the cluster has no GPUs for gpus_per_task = 1: set "
        "[executor] gpus_per_task = 0 to train on CPUs, or choose a partition with GPUs ([executor] partition, "
        "--partition)",
    "sbatch: error: invalid partition specified: gpu\nsbatch: error: Batch job submission failed: Invalid partition "
    "name specified":
        "invalid partition specified: gpu: no partition 'gpu' on this cluster (`sinfo -s` lists them): set "
        "[executor] partition, or --partition; \"\" for the default one",
    "sbatch: error: Memory specification can not be satisfied\nsbatch: error: Batch job submission failed: "
    "Requested node configuration is not available":
        "Memory specification can not be satisfied: no node has mem_gb = 16 GB: lower [executor] mem_gb (0: the "
        "partition's default)",
    "sbatch: unrecognized option '--nonsense=1'\nTry \"sbatch --help\" for more information":
        "unrecognized option '--nonsense=1': sbatch does not know an option of [executor] extra: remove it",
    "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified":
        "Invalid account or account/partition combination specified: set the "
        "account Slurm knows you by in [executor] extra = {account = \"...\"} (`sacctmgr show assoc user=$USER` "
        "lists yours)",
    "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)":
        "Requested time limit is invalid (missing or exceeds some limit): time_min = "
        "240 is more than the partition allows (`sinfo -o '%P %l'`): lower [executor] time_min or --time-min; a run "
        "that needs longer is requeued and resumes",
    "sbatch: error: Something new":
        "Something new (its parameters: `labreport run --executor slurm --dry-run`; [executor] in the TOML sets them)",
}


@pytest.mark.parametrize("stderr", SBATCH_REFUSALS)
def test_an_sbatch_refusal_is_one_line_naming_the_setting(stderr, tmp_path, cifar_dir):
    from labreport.cluster.slurm import sbatch_error

    params = replace(load_config(write_config(tmp_path, cifar_dir)).executor, partition="gpu")  # as --partition gpu
    e = sbatch_error(stderr, params)
    assert str(e) == "sbatch refused the job array: " + SBATCH_REFUSALS[stderr]
    assert e.exit_code == 2


def test_a_task_frees_its_lease_and_ends_at_sigterm(tmp_path):
    """Slurm's SIGTERM (requeue, scancel, the time limit) comes KillWait before SIGKILL; submitit
    ignores it. The task frees the lease at once and ends without a result file."""
    pytest.importorskip("submitit")
    code = (
        "import sys, signal, time\n"
        "from labreport.cluster.slurm import TrainRun\n"
        "from labreport.store import RunStore\n"
        f"store = RunStore({str(tmp_path / 'runs')!r})\n"
        "assert store.acquire('0123456789abcdef')\n"
        f"task = TrainRun('x.toml', None, {str(tmp_path / 'runs')!r}, '0123456789abcdef', 'small')\n"
        "signal.signal(signal.SIGTERM, task._terminated)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout.readline().strip() == "ready"
    lease = tmp_path / "runs" / "0123456789abcdef" / "lease.json"
    assert json.loads(lease.read_text())["pid"] == proc.pid
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "small run 0123456789abcdef: SIGTERM (cancelled, requeued or out of time): lease released" in out
    assert not lease.exists()


def test_jobs_and_an_executor_do_not_mix(tmp_path, cifar_dir):
    cfg = write_config(tmp_path, cifar_dir)
    res = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(tmp_path / "runs"), "run",
                                    "--executor", "submitit-local", "--jobs", "2"])
    assert res.exit_code == 2
    assert "jobs > 1 are local workers: with an executor each run is its own task" in res.output
