"""What labreport asks of submitit and of Slurm's own commands: the [executor] settings as sbatch
parameters, the submitit executor, and sbatch's and squeue's answers turned into one line that
names the setting to change. submitit is imported only inside these functions."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from labreport.errors import ClusterError, LabreportError
from labreport.config.sections import ExecutorSettings


def submitit_module(kind: str):
    """submitit, or a one-line error naming the extra that installs it."""
    try:
        import submitit
    except ImportError:
        raise LabreportError(f"--executor {kind} needs submitit: pip install 'labreport[slurm]'") from None
    return submitit



def slurm_parameters(params: ExecutorSettings) -> dict[str, Any]:
    """The [executor] settings as submitit's SlurmExecutor parameters (named as sbatch's options)."""
    out: dict[str, Any] = {"job_name": "labreport", "time": params.time_min,
                           "cpus_per_task": params.cpus_per_task, "array_parallelism": params.array_parallelism}
    if params.gpus_per_task:
        out["gpus_per_node"] = params.gpus_per_task  # one task per node: per node = per task
    if params.mem_gb:
        out["mem"] = f"{params.mem_gb}GB"
    if params.partition:
        out["partition"] = params.partition
    if params.extra:
        out["additional_parameters"] = dict(params.extra)
    return out


def sbatch_lines(params: ExecutorSettings, folder: Path, tasks: int) -> list[str]:
    """The #SBATCH lines of the job array that `submit` would send, without a cluster (for --dry-run).
    submitit's own sbatch writer (private, but the one its SlurmExecutor calls) makes them."""
    from submitit.slurm.slurm import _make_sbatch_string

    try:
        text = _make_sbatch_string(command="", folder=folder.absolute(), map_count=tasks, **slurm_parameters(params))
    except (ValueError, TypeError) as e:
        raise LabreportError(f"[executor]: submitit refused the settings: {str(e).splitlines()[0]}") from None
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]


def make_executor(kind: str, folder: Path, params: ExecutorSettings):
    """A submitit executor for `kind` ('slurm' or 'submitit-local') with the [executor] settings."""
    submitit = submitit_module(kind)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LabreportError(f"cannot create the executor folder {folder} ({e.strerror})") from None
    if kind == "submitit-local":
        ex = submitit.AutoExecutor(folder=folder, cluster="local")
        # local tasks run on this machine's CPU
        ex.update_parameters(name="labreport", timeout_min=params.time_min, cpus_per_task=params.cpus_per_task,
                             gpus_per_node=0)
        return ex
    try:
        ex = submitit.SlurmExecutor(folder=folder)
    except RuntimeError as e:  # no srun on this machine
        raise LabreportError(f"--executor slurm: {e} (to try the job array here: --executor submitit-local)") from None
    try:
        ex.update_parameters(**slurm_parameters(params))
    except (ValueError, NameError, AssertionError) as e:
        raise LabreportError(f"[executor]: submitit refused the settings: {str(e).splitlines()[0]}") from None
    return ex


# sbatch's refusals (as its `sbatch: error:` lines say them) -> what to change. {…} are the settings.
SBATCH_HINTS = (
    ("Invalid generic resource (gres)", "the cluster has no GPUs for gpus_per_task = {gpus_per_task}: set "
     "[executor] gpus_per_task = 0 to train on CPUs, or choose a partition with GPUs "
     "([executor] partition, --partition)"),
    ("Invalid partition name", "no partition '{partition}' on this cluster (`sinfo -s` lists them): set [executor] "
     "partition, or --partition; \"\" for the default one"),
    ("Memory specification can not be satisfied", "no node has mem_gb = {mem_gb} GB: lower [executor] mem_gb "
     "(0: the partition's default)"),
    ("Requested node configuration is not available", "no node has cpus_per_task = {cpus_per_task}, mem_gb = "
     "{mem_gb}, gpus_per_task = {gpus_per_task}: lower them in [executor]"),
    ("Invalid feature specification", "a constraint in [executor] extra names a feature no node has"),
    ("Invalid account", "set the account Slurm knows you by in [executor] extra = {{account = \"...\"}} "
     "(`sacctmgr show assoc user=$USER` lists yours)"),
    ("Invalid qos", "set a QOS you may use in [executor] extra = {{qos = \"...\"}} (`sacctmgr show assoc user=$USER`)"),
    ("time limit", "time_min = {time_min} is more than the partition allows (`sinfo -o '%P %l'`): lower "
     "[executor] time_min or --time-min; a run that needs longer is requeued and resumes"),
    ("Invalid --time", "[executor] time_min = {time_min} is not a time limit sbatch accepts"),
    ("unrecognized option", "sbatch does not know an option of [executor] extra: remove it"),
    ("accounting/QOS policy", "the array breaks a limit of your account or QOS (jobs, CPUs, GPUs or time): lower "
     "[executor] array_parallelism, time_min or the resources, or submit fewer runs with --only"),
    ("job array", "the array is larger than the cluster allows (MaxArraySize): submit fewer runs at once with --only"),
    ("Unable to contact slurm controller", "the cluster's controller does not answer (`scontrol ping`)"),
)


def sbatch_error(stderr: str, params: ExecutorSettings) -> ClusterError:
    """One line for sbatch's refusal: its own words, then the setting to change."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    # the first line names the cause ("Invalid generic resource"); "Batch job submission failed: ..." follows
    said = (lines[0] if lines else "no output").removeprefix("sbatch: ").removeprefix("error: ").removeprefix(
        "Batch job submission failed: ")
    for pattern, hint in SBATCH_HINTS:
        if any(pattern.lower() in ln.lower() for ln in lines):
            return ClusterError(f"sbatch refused the job array: {said}: {hint.format(**dataclasses.asdict(params))}")
    return ClusterError(f"sbatch refused the job array: {said} (its parameters: `labreport run --executor slurm "
                        "--dry-run`; [executor] in the TOML sets them)")


NEVER_STARTS = {
    "PartitionConfig": ("no node of the partition has what a task asks "
                        "([executor] cpus_per_task, mem_gb, gpus_per_task)"),
    "PartitionNodeLimit": ("no node of the partition has what a task asks "
                           "([executor] cpus_per_task, mem_gb, gpus_per_task)"),
    "BadConstraints": "no node has what a task asks ([executor] cpus_per_task, mem_gb, gpus_per_task, extra)",
    "PartitionTimeLimit": "[executor] time_min is more than the partition allows",
    "QOSMaxWallDurationPerJobLimit": "[executor] time_min is more than your QOS allows",
    "InvalidAccount": "the account in [executor] extra is not yours",
    "InvalidQOS": "the QOS in [executor] extra is not yours",
}


def pending_reasons(kind: str, job_ids: list[str]) -> Counter:
    """Why the array's pending tasks wait (squeue's reasons: Priority, Resources, BeginTime, ...)."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if kind != "slurm" or not arrays or shutil.which("squeue") is None:
        return Counter()
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "PD", "-j", ",".join(arrays), "-o", "%r"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return Counter()
    return Counter(r for line in out.splitlines() if (r := line.strip()) and r != "None")  # None: not looked at yet


