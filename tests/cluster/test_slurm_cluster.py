"""`run --executor slurm` against a real Slurm: the single-node cluster of `.ci/slurm.sh up`.

Skipped, with the reason, where that cluster is not running (`.ci/run` starts it; as root:
`.ci/slurm.sh up`, then `pytest tests/cluster/test_slurm_cluster.py`). Only a cluster named labreport-ci
is used: these tests submit jobs, requeue them and change their time limits.

The requeue and time-limit test holds a task still with SIGSTOP once it has finished an epoch:
the task keeps its lease and its allocation and burns no CPU, and Slurm's signals wake it as
they reach a training process (Slurm sends SIGCONT with SIGTERM on requeue, and with USR2
before the time limit). So the epoch a run resumes after is known, and no run has to train
through the up to 30 s that slurmctld takes to notice an approaching time limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from labreport.cli import main
from labreport.config import load_config
from procs import history, labreport, results, tiny_toml, trainings

pytestmark = pytest.mark.slow

CLUSTER = "labreport-ci"  # .ci/slurm.sh's ClusterName

TOML = tiny_toml("{data}", more="{executor}") + """
# array order = matrix order: the two tasks that are held still first, so that they start at once
[[experiment]]
name = "timelimit"
model = "cifarnet"
epochs = {epochs}
[[experiment]]
name = "requeue"
model = "cifarnet"
dropout = 0.1  # another run than timelimit's
epochs = {epochs}
[[experiment]]
name = "plain"
model = "cifarnet"
epochs = 2
"""
# what each task asks for on this CPU-only node: one core (two tasks at once on 2 cores), 1 GB
EXECUTOR = "[executor]\ngpus_per_task = 0\ncpus_per_task = 1\nmem_gb = 1\ntime_min = {time_min}"
EPOCHS = 8  # of the two held runs: ~0.3 s each (128 images); enough left after the epoch they are held at
TIME_MIN = 5  # minutes; submitit's USR2 comes 90 s before the limit, which the test brings forward


def _cmd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("submitit")
    if shutil.which("sbatch") is None:
        pytest.skip("no Slurm here: `.ci/slurm.sh up` (as root) installs and starts a single-node cluster")
    if "UP" not in _cmd("scontrol", "ping").stdout:
        pytest.skip("Slurm is installed, but its controller does not answer (`scontrol ping`): `.ci/slurm.sh up`")
    name = re.search(r"ClusterName\s*=\s*(\S+)", _cmd("scontrol", "show", "config").stdout)
    if not name or name.group(1) != CLUSTER:
        pytest.skip(f"the running Slurm is not {CLUSTER} of .ci/slurm.sh: these tests submit, requeue and "
                    "retime jobs")
    nodes = _cmd("sinfo", "-h", "-N", "-o", "%T").stdout.split()
    if not any(s in ("idle", "mixed", "allocated") for s in nodes):
        pytest.skip(f"the node of {CLUSTER} is not up (sinfo: {' '.join(nodes) or 'none'}): `.ci/slurm.sh up`")


def write_config(tmp_path: Path, cifar_dir: Path, executor: str | None = EXECUTOR) -> Path:
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(TOML.format(data=cifar_dir, executor=(executor or "").format(time_min=TIME_MIN), epochs=EPOCHS))
    return cfg


def task_log(runs: Path, job_id: str) -> str:
    return "".join(p.read_text() for p in sorted((runs / ".slurm").glob(f"{job_id}_0_log.*")))





def job_state(job_id: str) -> str:
    return _cmd("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip()


def wait_for(what: str, check, proc: subprocess.Popen, timeout: float = 120):
    deadline = time.time() + timeout
    while not (value := check()):
        assert proc.poll() is None, f"`labreport run` ended while waiting for {what}: {proc.communicate()[0]}"
        assert time.time() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.2)
    return value


def submitted_jobs(runs: Path) -> dict[str, str] | None:
    """Run key -> Slurm job id of the first submission, once submitted.json is there."""
    path = runs / ".slurm" / "submitted.json"
    return json.loads(path.read_text())["submissions"][0]["jobs"] if path.exists() else None


def hold_after_first_epoch(runs: Path, keys: list[str], proc: subprocess.Popen) -> dict[str, tuple[int, int]]:
    """SIGSTOP each task training one of `keys` as soon as it has checkpointed an epoch. Key -> (its
    pid, the epoch of its checkpoint, which the task may have passed between its history file and
    the stop)."""
    from labreport.store import RunStore

    held: dict[str, tuple[int, int]] = {}
    deadline = time.time() + 120
    while len(held) < len(keys):
        for key in set(keys) - set(held):
            if (runs / key / "history.json").exists():  # written after the epoch's checkpoint
                pid = json.loads((runs / key / "lease.json").read_text())["pid"]  # the task holds the lease
                os.kill(pid, signal.SIGSTOP)
                held[key] = (pid, RunStore(runs).load_checkpoint(key)[0]["epoch"])
        assert proc.poll() is None and time.time() < deadline, f"no first epoch of {set(keys) - set(held)}"
        time.sleep(0.05)
    return held


def signal_pending(pid: int, signum: int) -> bool:
    """`signum` is waiting in the (stopped) process `pid`: /proc's pending masks, bit signum - 1."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    masks = re.findall(r"^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)$", status, re.M)
    return any(int(m, 16) >> (signum - 1) & 1 for m in masks)


def test_the_shipped_defaults_on_a_cluster_without_gpus_fail_in_one_line(cluster, tmp_path, cifar_dir):
    cfg = write_config(tmp_path, cifar_dir, executor=None)  # gpus_per_task = 1, as experiments.toml ships
    runs = tmp_path / "runs"
    res = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(runs), "run", "--executor", "slurm", "--wait"])
    assert res.exit_code == 2, res.output
    assert res.output.splitlines() == [res.output.strip()] and "Traceback" not in res.output
    line = res.output.strip()
    assert line.startswith("error: sbatch refused the job array: Invalid generic resource (gres) specification")
    assert "set [executor] gpus_per_task = 0" in line
    assert not (runs / ".slurm" / "submitted.json").exists()
    assert not list((runs / ".slurm").glob("*.pkl"))  # nothing left of the refused array

    cfg = write_config(tmp_path, cifar_dir)
    res = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(runs), "run", "--executor", "slurm",
                                    "--partition", "gpu"])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == ("error: sbatch refused the job array: invalid partition specified: gpu: no partition "
                                  "'gpu' on this cluster (`sinfo -s` lists them): set [executor] partition, or "
                                  "--partition; \"\" for the default one")


def test_a_task_no_node_can_run_is_named_while_waiting(cluster, tmp_path, cifar_dir):
    """With an explicit partition, Slurm accepts a task that asks for more CPUs than any node has
    (the shipped cpus_per_task = 4 on a 2-core node does it) and leaves it pending for ever."""
    cfg = write_config(tmp_path, cifar_dir)
    cfg.write_text(cfg.read_text().replace("cpus_per_task = 1", "cpus_per_task = 4096"))
    runs, log = tmp_path / "runs", tmp_path / "run.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "labreport", "--config", str(cfg), "--runs", str(runs), "run",
                                 "--executor", "slurm", "--wait", "--only", "plain", "--partition", "ci"],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    job = None
    try:
        job = next(iter(wait_for("the submission", lambda: submitted_jobs(runs), proc).values()))
        wait_for("the warning", lambda: "warning: Slurm will not" in log.read_text(), proc, timeout=60)
    finally:
        if job:
            _cmd("scancel", job.split("_")[0])
    proc.wait(timeout=120)
    out = log.read_text()
    assert "(pending: PartitionConfig 1)" in out, out
    assert "warning: Slurm will not start these tasks (PartitionConfig): no node of the partition has what a task " \
           "asks ([executor] cpus_per_task, mem_gb, gpus_per_task)" in out, out
    assert proc.returncode == 1 and "0 trained, 0 cached, 0 diverged, 1 failed" in out, out
    assert f"FAILED plain: job {job} CANCELLED" in out, out


def test_a_job_array_trains_each_run_once_like_a_local_run_through_requeue_and_time_limit(cluster, tmp_path, cifar_dir):
    cfg = write_config(tmp_path, cifar_dir)
    runs, local = tmp_path / "runs", tmp_path / "local"
    config = load_config(cfg)
    key = {r.experiment: r.key for r in config.runs}
    assert len(set(key.values())) == 3
    t0 = time.time()
    reference = labreport(cfg, local, "run")  # the same matrix, trained here meanwhile
    proc = labreport(cfg, runs, "run", "--executor", "slurm", "--wait")

    job = wait_for("the submission", lambda: submitted_jobs(runs), proc)  # run key -> array task id

    # time limit: brought forward so that USR2 (90 s before it) is due at slurmctld's next check
    # (every 30 s); Slurm stores limits in minutes: L = (elapsed + 120) // 60 leaves 60-120 s to the limit
    held = hold_after_first_epoch(runs, [key["timelimit"], key["requeue"]], proc)
    (tl_pid, tl_done), (rq_pid, rq_done) = held[key["timelimit"]], held[key["requeue"]]
    assert tl_done < EPOCHS and rq_done < EPOCHS  # stopped mid-run: there are epochs left to resume
    elapsed = _cmd("squeue", "-h", "-j", job[key["timelimit"]], "-o", "%M").stdout.strip()
    seconds = sum(int(x) * 60 ** i for i, x in enumerate(reversed(elapsed.split(":"))))
    assert _cmd("scontrol", "update", f"JobId={job[key['timelimit']]}",
                f"TimeLimit={(seconds + 120) // 60}").returncode == 0

    # requeue: of a running task (a pending one cannot be requeued)
    assert job_state(job[key["requeue"]]) == "RUNNING"
    requeue = _cmd("scontrol", "requeue", job[key["requeue"]])
    assert requeue.returncode == 0, requeue.stderr
    wait_for("the requeued task to end", lambda: not Path(f"/proc/{rq_pid}").exists(), proc, timeout=30)
    assert not (runs / key["requeue"] / "lease.json").exists()  # freed at SIGTERM, not left to go stale

    # Slurm sends SIGCONT with USR2, which wakes the task; were it to send USR2 alone, the test would
    wait_for("USR2 before the time limit", lambda: "Caught signal SIGUSR2" in task_log(runs, job[key["timelimit"]])
             or signal_pending(tl_pid, signal.SIGUSR2), proc, timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.kill(tl_pid, signal.SIGCONT)  # (a no-op when Slurm did: the handler frees the lease, submitit requeues)
    wait_for("the timed-out task to be requeued", lambda: "Requeued job" in task_log(runs, job[key["timelimit"]]),
             proc, timeout=30)
    assert not (runs / key["timelimit"] / "lease.json").exists()
    # the requeued task keeps the shortened limit: give it back the full one before it starts (>= 10 s)
    assert _cmd("scontrol", "update", f"JobId={job[key['timelimit']]}", f"TimeLimit={TIME_MIN}").returncode == 0

    out, _ = proc.communicate(timeout=240)
    wall = time.time() - t0
    logs = {name: task_log(runs, job[k]) for name, k in key.items()}
    assert proc.returncode == 0, out + "".join(logs.values())
    assert "submitted 3 run(s) to slurm as one array" in out
    assert "3 trained, 0 cached, 0 diverged, 0 failed" in out
    out_ref, _ = reference.communicate(timeout=240)
    assert reference.returncode == 0, out_ref

    # each run trained once: the held ones started twice, the second time after the epochs they had
    assert trainings("".join(logs.values())) == {key["plain"]: 1, key["requeue"]: 2, key["timelimit"]: 2}
    assert "SIGTERM (cancelled, requeued or out of time): lease released" in logs["requeue"]
    assert f"resuming after epoch {rq_done}" in logs["requeue"]
    assert "Caught signal SIGUSR2" in logs["timelimit"] and "this job is timed-out" in logs["timelimit"]
    assert "preempted or out of time: lease released" in logs["timelimit"]
    assert f"resuming after epoch {tl_done}" in logs["timelimit"]
    assert len(list((runs / ".slurm").glob("*_submission.sh"))) == 1  # requeued in place, never resubmitted

    r_local, r_slurm = results(local), results(runs)
    assert set(r_local) == set(r_slurm) == set(key.values())
    for run in config.runs:
        name, k = run.experiment, run.key
        assert r_slurm[k]["status"] == "completed", name
        assert [h["epoch"] for h in history(runs, k)] == list(range(1, run.spec.epochs + 1)), name
        assert r_slurm[k]["test_acc_at_best"] == r_local[k]["test_acc_at_best"], name
        assert [h["train_loss"] for h in history(runs, k)] == [h["train_loss"] for h in history(local, k)], name
        assert not (runs / k / "lease.json").exists()
    print(f"job array on Slurm, with a requeue and a time-out: {wall:.0f} s")
