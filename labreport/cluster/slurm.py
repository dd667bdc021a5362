"""`labreport run --executor slurm`: the runs left to train, as one Slurm job array (through submitit).

Each array task is an ordinary worker for one run key: it loads the config and calls
`runner.run_matrix(keys=(key,), wait=True)`, the code path of `labreport run`. The store's leases
keep a run from being trained twice (a duplicate task finds it done, or waits for it), and a task
that is preempted or reaches its time limit is requeued by submitit and resumes from the run's
last epoch checkpoint, as any interrupted run does.

    <folder>/submitted.json                 every submission: executor, time, run key -> job id
    <folder>/<job id>_0_log.out / .err      each task's log (submitit's layout)

<folder> is `[executor] folder`, by default `<run store>/.slurm`. `--executor submitit-local` runs
the same tasks through submitit's LocalExecutor, in subprocesses of this machine: that is how the
array, the task code and the requeue are tested without a cluster.

submitit is an optional extra (`pip install 'labreport[slurm]'`), imported only inside functions:
the rest of labreport, `status` included, works without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labreport.config import Config
from labreport.settings import ExecutorSettings
from labreport.spec import Run
from labreport.errors import ClusterError, LabreportError
from labreport.engine.runner import FINAL_STATES, Summary, pending, select_runs
from labreport.store import RunStore, atomic_write_json, read_json

SUBMITTED = "submitted.json"
TASK_POLL_S = 30.0  # how often a task re-checks a run another live worker holds (runner's wait)
FOLLOW_POLL_S = {"slurm": 5.0, "submitit-local": 1.0}  # --wait: store and result files; sacct is
# called by submitit no more often than every max(2 s, half the time since submission), 10 min at most


def _submitit(kind: str):
    try:
        import submitit
    except ImportError:
        raise LabreportError(f"--executor {kind} needs submitit: pip install 'labreport[slurm]'") from None
    return submitit


def executor_folder(config: Config, store: RunStore) -> Path:
    folder = config.executor.folder
    return config.base_dir / Path(folder).expanduser() if folder else store.root / ".slurm"


def queued_jobs(config: Config, store: RunStore) -> dict[str, str]:
    """Run key -> id of the job it was last submitted to (read from submitted.json; no submitit)."""
    data = read_json(executor_folder(config, store) / SUBMITTED)
    out: dict[str, str] = {}
    for sub in data.get("submissions", []) if isinstance(data, dict) else []:
        if isinstance(sub, dict) and isinstance(sub.get("jobs"), dict):
            out.update({str(k): str(v) for k, v in sub["jobs"].items()})
    return out


class TrainRun:
    """One array task: train one run key as `labreport run` would. Picklable: paths and names only.

    It follows submitit.helpers.Checkpointable's protocol (submitit calls `checkpoint()` in the task on
    preemption or time-out, then requeues what it returns) without subclassing it, so that this
    module imports without submitit."""

    def __init__(self, config_path: str, profile: str | None, store_root: str, key: str, label: str,
                 device: str = "auto", threads: int = 0, poll_s: float = TASK_POLL_S):
        self.config_path, self.profile, self.store_root = config_path, profile, store_root
        self.key, self.label, self.device, self.threads, self.poll_s = key, label, device, threads, poll_s

    def __call__(self) -> dict[str, Any]:
        signal.signal(signal.SIGTERM, self._terminated)  # after submitit's own handlers: replaces its bypass
        from labreport.config import load_config
        from labreport.cluster.progress import LineReporter
        from labreport.engine.runner import run_matrix

        config = load_config(self.config_path, self.profile)
        store = RunStore(self.store_root)
        reporter = LineReporter(sys.stdout)
        if not select_runs(config, keys=(self.key,)):
            return {"key": self.key, "label": self.label, "status": "missing", "trained": False,
                    "message": f"no longer a run of {self.config_path}"}

        def load_data():
            from labreport.engine.data import load_cifar10, resolve_root

            data = load_cifar10(resolve_root(config.data.root, config.base_dir), download=config.data.download)
            for w in data.warnings:
                reporter.message(f"warning: {w}")
            return data

        summary = run_matrix(config, store, keys=(self.key,), device=self.device, reporter=reporter,
                             data_loader=load_data, wait=True, poll_s=self.poll_s, threads=self.threads)
        status = "failed" if summary.failed else store.state(self.key).status
        return {"key": self.key, "label": self.label, "status": status,
                "trained": bool(summary.trained or summary.diverged),
                "message": summary.failed[0][1] if summary.failed else None}

    def _terminated(self, signum, _frame):
        """Slurm sends SIGTERM before it kills a job step (scancel, `scontrol requeue`, the time limit,
        preemption without --signal), and SIGKILL KillWait later (30 s by default). submitit ignores
        SIGTERM, so the task would train on for those 30 s, lose that work and leave its lease behind
        (the requeued task, on another node, would wait 10 minutes for it to go stale). Instead: free
        the lease and end at once. The epoch in progress is lost, as with kill -9 (the run resumes
        exactly from its last checkpoint), and no result file is written: submitit would take a
        requeued job that has one for finished."""
        RunStore(self.store_root).release(self.key)
        print(f"{self.label} run {self.key}: SIGTERM (cancelled, requeued or out of time): lease released; "
              "a rerun resumes from the last epoch checkpoint", flush=True)
        os._exit(128 + signum)

    def checkpoint(self, *args, **kwargs):
        """Preempted or out of time: free the run's lease, so that the requeued task (maybe on another
        node) claims it at once instead of waiting for the lease to go stale; it resumes from the
        last epoch checkpoint. Called in the task's own process, the lease's holder."""
        from submitit.helpers import DelayedSubmission

        if signal.getsignal(signal.SIGTERM) == self._terminated:  # in the task (not a test calling this)
            # submitit requeues the job next, and Slurm then sends SIGTERM: let submitit finish and exit
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        RunStore(self.store_root).release(self.key)
        print(f"{self.label} run {self.key}: preempted or out of time: lease released; requeued, resumes from "
              f"the last epoch checkpoint", flush=True)
        return DelayedSubmission(self, *args, **kwargs)


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
    submitit = _submitit(kind)
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
     "[executor] gpus_per_task = 0 to train on CPUs, or choose a partition with GPUs ([executor] partition, --partition)"),
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


@dataclass
class Submission:
    kind: str
    folder: Path
    runs: list[Run] = field(default_factory=list)  # submitted, in array order
    jobs: list = field(default_factory=list)  # submitit Jobs, one per run
    cached: list[str] = field(default_factory=list)  # labels of runs already final

    @property
    def job_ids(self) -> str:
        ids = [j.job_id for j in self.jobs]
        arrays = {i.split("_")[0] for i in ids}
        if self.kind == "slurm" and len(arrays) == 1 and all("_" in i for i in ids):
            return f"{arrays.pop()}_[0-{len(ids) - 1}]"
        return ", ".join(ids)


def task_threads(config: Config, params: ExecutorSettings, kind: str, threads: int, tasks: int) -> int:
    """torch threads per task: --threads, [run] threads, else a cluster task's cpus_per_task; local
    tasks run at once here and share the cores."""
    return threads or config.run.threads or (
        params.cpus_per_task if kind == "slurm" else max(1, (os.cpu_count() or 1) // tasks))


def submit(config: Config, store: RunStore, *, kind: str, only: tuple[str, ...] = (), device: str = "auto",
           threads: int = 0, overrides: dict[str, Any] | None = None) -> Submission:
    """Submit the runs that are not done (or diverged) as one job array and record it in submitted.json."""
    _submitit(kind)  # fail first, even with nothing to do: the option needs the extra
    params = dataclasses.replace(config.executor, **{k: v for k, v in (overrides or {}).items() if v is not None})
    folder = executor_folder(config, store)
    todo, final = pending(store, select_runs(config, only))
    sub = Submission(kind, folder, cached=[r.label for r in final])
    if not todo:
        return sub
    try:
        store.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LabreportError(f"run store {store.root} is not a writable folder ({e.strerror})") from None
    threads = task_threads(config, params, kind, threads, len(todo))
    tasks = [TrainRun(str(config.path.resolve()), config.profile, str(store.root.resolve()), r.key, r.label,
                      device=device, threads=threads) for r in todo]
    executor = make_executor(kind, folder, params)
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    before = set(folder.glob("*.pkl"))
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's refusal too: said once, below
            sub.runs, sub.jobs = todo, executor.submit_array(tasks)
    except (FailedJobError, FailedSubmissionError, OSError) as e:
        for p in set(folder.glob("*.pkl")) - before:  # the tasks pickled for an array that was refused
            p.unlink(missing_ok=True)
        if isinstance(e, OSError):  # no sbatch beside srun
            raise ClusterError(f"--executor {kind}: cannot run sbatch ({e.strerror})") from None
        raise sbatch_error(str(e), params) from None  # sbatch's refusal, its stderr as the message
    path = folder / SUBMITTED
    old = read_json(path)
    history = old.get("submissions", []) if isinstance(old, dict) else []
    history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "executor": kind, "config": str(config.path.resolve()),
                    "profile": config.profile, "jobs": {r.key: j.job_id for r, j in zip(todo, sub.jobs)}})
    atomic_write_json(path, {"submissions": history})
    return sub


# pending reasons (squeue %r) that no wait cures: the setting that makes a task unrunnable
NEVER_STARTS = {
    "PartitionConfig": "no node of the partition has what a task asks ([executor] cpus_per_task, mem_gb, gpus_per_task)",
    "PartitionNodeLimit": "no node of the partition has what a task asks ([executor] cpus_per_task, mem_gb, gpus_per_task)",
    "BadConstraints": "no node has what a task asks ([executor] cpus_per_task, mem_gb, gpus_per_task, extra)",
    "PartitionTimeLimit": "[executor] time_min is more than the partition allows",
    "QOSMaxWallDurationPerJobLimit": "[executor] time_min is more than your QOS allows",
    "InvalidAccount": "the account in [executor] extra is not yours",
    "InvalidQOS": "the QOS in [executor] extra is not yours",
}


def pending_reasons(sub: Submission) -> Counter:
    """Why the array's pending tasks wait (squeue's reasons: Priority, Resources, BeginTime, ...)."""
    arrays = sorted({j.job_id.split("_")[0] for j in sub.jobs})
    if sub.kind != "slurm" or not arrays or shutil.which("squeue") is None:
        return Counter()
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "PD", "-j", ",".join(arrays), "-o", "%r"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return Counter()
    return Counter(r for line in out.splitlines() if (r := line.strip()) and r != "None")  # None: not looked at yet


def follow(sub: Submission, store: RunStore, *, echo, poll_s: float = 5.0) -> Summary:
    """Wait for every job of the submission, echoing a progress line whenever it changes, and a
    warning when the cluster will never start a task as it was asked for."""
    n, last, warned = len(sub.jobs), None, set()
    while True:
        running = sum(not j.done() for j in sub.jobs)  # a result file, else sacct (throttled by submitit)
        states = [store.state(r.key) for r in sub.runs]
        final = sum(s.status in FINAL_STATES for s in states)
        training = [f"{r.label} {s.epochs_done}/{r.spec.epochs}" for r, s in zip(sub.runs, states)
                    if s.leased_by and s.status not in FINAL_STATES]
        reasons = pending_reasons(sub) if running > len(training) else Counter()
        line = f"array: {final}/{n} runs finished, {running} task(s) queued or running" + (
            f" (pending: {', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})" if reasons else "") + (
            f"; training {', '.join(training)}" if training else "")
        if line != last:
            echo(line)
            last = line
        for reason in set(reasons) & set(NEVER_STARTS) - warned:
            warned.add(reason)
            job = sub.job_ids.split("_")[0]
            echo(f"warning: Slurm will not start these tasks ({reason}): {NEVER_STARTS[reason]}; "
                 f"`scancel {job}`, change it and submit again")
        if not running:
            break
        time.sleep(poll_s)
    from submitit.core.utils import FailedJobError, UncompletedJobError

    out = Summary(cached=list(sub.cached))
    for run, job in zip(sub.runs, sub.jobs):
        state = job.state  # sacct's (CANCELLED by 0, FAILED, TIMEOUT, OUT_OF_MEMORY...), as last seen
        if state.startswith("CANCELLED") and not job.paths.result_pickle.exists():
            # no result will come: result() would wait 15 s for one (a slow shared file system), per task
            out.failed.append((run.label, f"job {job.job_id} {state} (log: {job.paths.stderr})"))
            continue
        try:
            res = job.result()
        except (FailedJobError, UncompletedJobError) as e:  # crashed, cancelled, or out of requeues
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
            out.failed.append((run.label, f"job {job.job_id} {job.state}: {first} (log: {job.paths.stderr})"))
            continue
        status = res.get("status")
        if status == "diverged":
            out.diverged.append(run.label)
        elif status == "done":
            (out.trained if res.get("trained") else out.cached).append(run.label)
        else:
            msg = res.get("message") or f"ended {status}"
            out.failed.append((run.label, f"job {job.job_id}: {msg} (log: {job.paths.stdout})"))
    return out
