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

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config
from .spec import Run
from .errors import LabreportError
from .runner import FINAL_STATES, Summary, pending, select_runs
from .store import RunStore, atomic_write_json, read_json

EXECUTORS = ("local", "slurm", "submitit-local")  # local: in this process, no submitit
SUBMITTED = "submitted.json"
TASK_POLL_S = 30.0  # how often a task re-checks a run another live worker holds (runner's wait)


def _submitit(kind: str):
    try:
        import submitit
    except ImportError:
        raise LabreportError(f"--executor {kind} needs submitit: pip install 'labreport[slurm]'") from None
    return submitit


def executor_folder(config: Config, store: RunStore) -> Path:
    folder = config.executor["folder"]
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
        from .config import load_config
        from .progress import LineReporter
        from .runner import run_matrix

        config = load_config(self.config_path, self.profile)
        store = RunStore(self.store_root)
        reporter = LineReporter(sys.stdout)
        if not select_runs(config, keys=(self.key,)):
            return {"key": self.key, "label": self.label, "status": "missing", "trained": False,
                    "message": f"no longer a run of {self.config_path}"}

        def load_data():
            from .data import load_cifar10, resolve_root

            data = load_cifar10(resolve_root(config.data_root, config.base_dir), download=config.download)
            for w in data.warnings:
                reporter.message(f"warning: {w}")
            return data

        summary = run_matrix(config, store, keys=(self.key,), device=self.device, reporter=reporter,
                             data_loader=load_data, wait=True, poll_s=self.poll_s, threads=self.threads)
        status = "failed" if summary.failed else store.state(self.key).status
        return {"key": self.key, "label": self.label, "status": status,
                "trained": bool(summary.trained or summary.diverged),
                "message": summary.failed[0][1] if summary.failed else None}

    def checkpoint(self, *args, **kwargs):
        """Preempted or out of time: free the run's lease, so that the requeued task (maybe on another
        node) claims it at once instead of waiting for the lease to go stale; it resumes from the
        last epoch checkpoint. Called in the task's own process, the lease's holder."""
        from submitit.helpers import DelayedSubmission

        RunStore(self.store_root).release(self.key)
        print(f"{self.label} run {self.key}: preempted or out of time: lease released; requeued, resumes from "
              f"the last epoch checkpoint", flush=True)
        return DelayedSubmission(self, *args, **kwargs)


def make_executor(kind: str, folder: Path, params: dict[str, Any]):
    """A submitit executor for `kind` ('slurm' or 'submitit-local') with the [executor] settings."""
    submitit = _submitit(kind)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LabreportError(f"cannot create the executor folder {folder} ({e.strerror})") from None
    generic: dict[str, Any] = {"name": "labreport", "timeout_min": params["time_min"],
                               "cpus_per_task": params["cpus_per_task"]}
    if kind == "submitit-local":
        ex = submitit.AutoExecutor(folder=folder, cluster="local")
        ex.update_parameters(**generic, gpus_per_node=0)  # local tasks run on this machine's CPU
        return ex
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as e:  # no srun on this machine
        raise LabreportError(f"--executor slurm: {e} (to try the job array here: --executor submitit-local)") from None
    if params["gpus_per_task"]:
        generic["gpus_per_node"] = params["gpus_per_task"]  # one task per node: per node = per task
    if params["mem_gb"]:
        generic["mem_gb"] = params["mem_gb"]
    slurm: dict[str, Any] = {"slurm_array_parallelism": params["array_parallelism"]}
    if params["partition"]:
        slurm["slurm_partition"] = params["partition"]
    if params["extra"]:
        slurm["slurm_additional_parameters"] = dict(params["extra"])
    try:
        ex.update_parameters(**generic, **slurm)
    except (ValueError, NameError, AssertionError) as e:
        raise LabreportError(f"[executor]: submitit refused the settings: {str(e).splitlines()[0]}") from None
    return ex


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


def submit(config: Config, store: RunStore, *, kind: str, only: tuple[str, ...] = (), device: str = "auto",
           threads: int = 0, overrides: dict[str, Any] | None = None) -> Submission:
    """Submit the runs that are not done (or diverged) as one job array and record it in submitted.json."""
    _submitit(kind)  # fail first, even with nothing to do: the option needs the extra
    params = {**config.executor, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    folder = executor_folder(config, store)
    todo, final = pending(store, select_runs(config, only))
    sub = Submission(kind, folder, cached=[r.label for r in final])
    if not todo:
        return sub
    try:
        store.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LabreportError(f"run store {store.root} is not a writable folder ({e.strerror})") from None
    # a cluster task gets its cpus; local tasks run at once here and share the cores
    threads = threads or config.run_options["threads"] or (
        params["cpus_per_task"] if kind == "slurm" else max(1, (os.cpu_count() or 1) // len(todo)))
    tasks = [TrainRun(str(config.path.resolve()), config.profile, str(store.root.resolve()), r.key, r.label,
                      device=device, threads=threads) for r in todo]
    executor = make_executor(kind, folder, params)
    sub.runs, sub.jobs = todo, executor.submit_array(tasks)
    path = folder / SUBMITTED
    old = read_json(path)
    history = old.get("submissions", []) if isinstance(old, dict) else []
    history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "executor": kind, "config": str(config.path.resolve()),
                    "profile": config.profile, "jobs": {r.key: j.job_id for r, j in zip(todo, sub.jobs)}})
    atomic_write_json(path, {"submissions": history})
    return sub


def follow(sub: Submission, store: RunStore, *, echo, poll_s: float = 10.0) -> Summary:
    """Wait for every job of the submission, echoing a progress line whenever it changes."""
    n, last = len(sub.jobs), None
    while True:
        running = sum(not j.done() for j in sub.jobs)
        states = [store.state(r.key) for r in sub.runs]
        final = sum(s.status in FINAL_STATES for s in states)
        training = [f"{r.label} {s.epochs_done}/{r.spec.epochs}" for r, s in zip(sub.runs, states)
                    if s.leased_by and s.status not in FINAL_STATES]
        line = f"array: {final}/{n} runs finished, {running} task(s) queued or running" + (
            f"; training {', '.join(training)}" if training else "")
        if line != last:
            echo(line)
            last = line
        if not running:
            break
        time.sleep(poll_s)
    from submitit.core.utils import FailedJobError, UncompletedJobError

    out = Summary(cached=list(sub.cached))
    for run, job in zip(sub.runs, sub.jobs):
        try:
            res = job.result()
        except (FailedJobError, UncompletedJobError) as e:  # crashed, cancelled, or out of requeues
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
            out.failed.append((run.label, f"job {job.job_id}: {first} (log: {job.paths.stderr})"))
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
