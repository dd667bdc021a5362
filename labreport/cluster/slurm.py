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
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from labreport.cluster.executors import Console, Executor, Outcome, Request, cpu_threads, print_summary
from labreport.cluster.sbatch import (NEVER_STARTS, make_executor, pending_reasons, sbatch_error, sbatch_lines,
                                      submitit_module)
from labreport.config import Config
from labreport.engine.runner import pending
from labreport.errors import ClusterError, LabreportError
from labreport.config.sections import ExecutorSettings
from labreport.spec import Run
from labreport.store import RunStore, atomic_write_json, read_json

SUBMITTED = "submitted.json"
TASK_POLL_S = 30.0  # how often a task re-checks a run another live worker holds (runner's wait)
FOLLOW_POLL_S = {"slurm": 5.0, "submitit-local": 1.0}  # --wait: store and result files; sacct is
# called by submitit no more often than every max(2 s, half the time since submission), 10 min at most


@dataclass
class JobArray(Executor):
    """The runs left as one submitit job array, one task per run."""

    name: ClassVar[str] = "slurm"
    partition: str | None = None  # None: [executor] partition
    time_min: int | None = None  # None: [executor] time_min

    def params(self, config: Config) -> ExecutorSettings:
        over = {"partition": self.partition, "time_min": self.time_min}
        return dataclasses.replace(config.executor, **{k: v for k, v in over.items() if v is not None})

    def describe(self, config: Config, store: RunStore, runs: list[Run], threads: int = 0) -> list[str]:
        todo = pending(store, runs)[0]
        if not todo:
            return [f"nothing to submit to {self.name}: every run is done"]
        params = self.params(config)
        head = (f"would submit {len(todo)} run(s) to {self.name} as one job array, one task per run "
                f"({task_threads(config, params, self.name, threads, len(todo))} torch thread(s) each)")
        if self.name != "slurm":
            return [head + f": here, through submitit's LocalExecutor, time limit {params.time_min} min"]
        return [head + "; sbatch parameters:"] + [f"  {line}" for line in sbatch_lines(params, executor_folder(
            config, store), len(todo))]

    def execute(self, req: Request, console: Console) -> Outcome:
        sub = submit(req.config, req.store, kind=self.name, only=req.only, device=req.device, threads=req.threads,
                     overrides={"partition": self.partition, "time_min": self.time_min})
        if not sub.jobs:
            console.out(f"nothing to submit: {len(sub.cached)} run(s) already done  (store: {req.store.root})")
            return Outcome(cached=list(sub.cached))
        console.out(f"submitted {len(sub.jobs)} run(s) to {self.name} as one array: job(s) {sub.job_ids}; "
                    f"logs in {sub.folder}")
        if not req.wait:
            console.out("follow with: labreport status")
            return Outcome()
        try:
            out = follow(sub, req.store, echo=console.err, poll_s=FOLLOW_POLL_S[self.name])
        except KeyboardInterrupt:
            console.err("\nstopped waiting; submitted jobs may still run: labreport status to follow")
            return Outcome(interrupted=True)
        print_summary(console, out, req.store)
        return out


@dataclass
class SubmititLocal(JobArray):
    """The same job array, its tasks run here by submitit's LocalExecutor (how the array is tested)."""

    name: ClassVar[str] = "submitit-local"


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
                 device: str = "auto", threads: int = 0, poll_s: float = TASK_POLL_S, overrides: tuple = ()):
        self.config_path, self.profile, self.store_root = config_path, profile, store_root
        self.overrides = tuple(overrides)  # the submitting command's --set
        self.key, self.label, self.device, self.threads, self.poll_s = key, label, device, threads, poll_s

    def __call__(self) -> dict[str, Any]:
        signal.signal(signal.SIGTERM, self._terminated)  # after submitit's own handlers: replaces its bypass
        from labreport.cluster.progress import LineReporter
        from labreport.config import load_config
        from labreport.engine.runner import run_matrix
        from labreport.logs import configure

        configure(0, lambda text: print(text, flush=True))  # the task's log: submitit's <job>_log.out
        config = load_config(self.config_path, self.profile, getattr(self, "overrides", ()))
        store = RunStore(self.store_root)
        if not config.select(keys=(self.key,)):
            return {"key": self.key, "label": self.label, "status": "missing", "trained": False,
                    "message": f"no longer a run of {self.config_path}"}
        out = run_matrix(config, store, keys=(self.key,), device=self.device, observer=LineReporter(sys.stdout),
                         wait=True, poll_s=self.poll_s, threads=self.threads)
        status = "failed" if out.failed else store.state(self.key).status
        return {"key": self.key, "label": self.label, "status": status, "trained": bool(out.trained or out.diverged),
                "message": out.failed[0][1] if out.failed else None}

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
    """torch threads per task (executors.cpu_threads): a cluster task has its own CPUs; local tasks
    run at once here and share the cores."""
    return cpu_threads(threads, config.run.threads, sharing=tasks,
                       cpus_per_task=params.cpus_per_task if kind == "slurm" else None)


def submit(config: Config, store: RunStore, *, kind: str, only: tuple[str, ...] = (), device: str = "auto",
           threads: int = 0, overrides: dict[str, Any] | None = None) -> Submission:
    """Submit the runs that are not done (or diverged) as one job array and record it in submitted.json."""
    submitit_module(kind)  # fail first, even with nothing to do: the option needs the extra
    params = dataclasses.replace(config.executor, **{k: v for k, v in (overrides or {}).items() if v is not None})
    folder = executor_folder(config, store)
    todo, final = pending(store, config.select(only))
    sub = Submission(kind, folder, cached=[r.label for r in final])
    if not todo:
        return sub
    try:
        store.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LabreportError(f"run store {store.root} is not a writable folder ({e.strerror})") from None
    threads = task_threads(config, params, kind, threads, len(todo))
    tasks = [TrainRun(str(config.path.resolve()), config.profile, str(store.root.resolve()), r.key, r.label,
                      overrides=config.overrides,
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
    history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "executor": kind,
                    "config": str(config.path.resolve()),
                    "profile": config.profile, "jobs": {r.key: j.job_id for r, j in zip(todo, sub.jobs)}})
    atomic_write_json(path, {"submissions": history})
    return sub


# pending reasons (squeue %r) that no wait cures: the setting that makes a task unrunnable
def follow(sub: Submission, store: RunStore, *, echo, poll_s: float = 5.0) -> Outcome:
    """Wait for every job of the submission, echoing a progress line whenever it changes, and a
    warning when the cluster will never start a task as it was asked for; then what each job did."""
    last, warned = None, set()
    while True:
        running = sum(not j.done() for j in sub.jobs)  # a result file, else sacct (throttled by submitit)
        line, reasons = _progress(sub, store, running)
        if line != last:
            echo(line)
            last = line
        for reason in set(reasons) & set(NEVER_STARTS) - warned:
            warned.add(reason)
            echo(f"warning: Slurm will not start these tasks ({reason}): {NEVER_STARTS[reason]}; "
                 f"`scancel {sub.job_ids.split('_')[0]}`, change it and submit again")
        if not running:
            break
        time.sleep(poll_s)
    out = Outcome(cached=list(sub.cached))
    for run, job in zip(sub.runs, sub.jobs):
        _job_outcome(run, job, out)
    return out


def _progress(sub: Submission, store: RunStore, running: int) -> tuple[str, Counter]:
    """The array's progress line, and why its pending tasks wait (squeue's reasons)."""
    states = [store.state(r.key) for r in sub.runs]
    training = [f"{r.label} {s.epochs_done}/{r.spec.epochs}" for r, s in zip(sub.runs, states)
                if s.leased_by and not s.final]
    reasons = pending_reasons(sub.kind, [j.job_id for j in sub.jobs]) if running > len(training) else Counter()
    pending_text = f" (pending: {', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})" if reasons else ""
    line = (f"array: {sum(s.final for s in states)}/{len(sub.jobs)} runs finished, {running} task(s) queued or "
            f"running{pending_text}" + (f"; training {', '.join(training)}" if training else ""))
    return line, reasons


def _job_outcome(run: Run, job, out: Outcome) -> None:
    """What one finished job did, added to `out`."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    state = job.state  # sacct's (CANCELLED by 0, FAILED, TIMEOUT, OUT_OF_MEMORY...), as last seen
    if state.startswith("CANCELLED") and not job.paths.result_pickle.exists():
        # no result will come: result() would wait 15 s for one (a slow shared file system), per task
        out.failed.append((run.label, f"job {job.job_id} {state} (log: {job.paths.stderr})"))
        return
    try:
        res = job.result()
    except (FailedJobError, UncompletedJobError) as e:  # crashed, cancelled, or out of requeues
        first = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
        out.failed.append((run.label, f"job {job.job_id} {job.state}: {first} (log: {job.paths.stderr})"))
        return
    status = res.get("status")
    if status == "diverged":
        out.diverged.append(run.label)
    elif status == "done":
        (out.trained if res.get("trained") else out.cached).append(run.label)
    else:
        msg = res.get("message") or f"ended {status}"
        out.failed.append((run.label, f"job {job.job_id}: {msg} (log: {job.paths.stdout})"))
