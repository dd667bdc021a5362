"""One way in for every executor: `labreport run` trains the runs left here, in worker processes
or as a job array, through the same two calls (in the spirit of submitit's Executor).

    ex = executors.get("slurm", partition="gpu")    # "local", "processes" (jobs=4), "slurm", "submitit-local"
    ex.describe(config, store, runs)                 # --dry-run: what it would start or ask the cluster for
    out = executors.run(ex, Request(config, store, only=("resnet20",), wait=True), Console(print, print))

Every executor trains through engine.runner.run_matrix in the end (a --jobs worker and an array
task are `labreport run` processes themselves), so the store's leases keep any mix of them from
training a run twice, and each says what it did as the runner's Outcome. `run` prints it (results
on `console.out`, progress and problems on `console.err`) and returns it (`.exit_code`: 0 ok, 1 some
runs failed, 130 interrupted, 143 terminated).

    local.py        Local: in this process, one run after the other
    processes.py    Processes: --jobs N worker processes here (each one worker.py)
    slurm.py        JobArray: one Slurm array task per run left (SubmititLocal: the same array, here)
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import signal
import threading
from dataclasses import dataclass
from typing import Callable, ClassVar

from labreport.config import Config
from labreport.engine.runner import Outcome, pending
from labreport.errors import LabreportError, Terminated
from labreport.spec import Run
from labreport.store import RunStore

__all__ = ["CONFIRM_RUNS", "Console", "EXECUTORS", "Executor", "Outcome", "Request", "check_size", "cpu_threads", "get",
           "run"]

CONFIRM_RUNS = 1000  # `run` asks for --yes above this many runs left to train
RESUME_HINT = "finished epochs are saved; run the same command again to resume"
# name -> "module:class": an executor's module (submitit, subprocesses) is imported when it is chosen
EXECUTORS = {"local": "labreport.cluster.local:Local", "processes": "labreport.cluster.processes:Processes",
             "slurm": "labreport.cluster.slurm:JobArray", "submitit-local": "labreport.cluster.slurm:SubmititLocal"}


@dataclass
class Console:
    out: Callable[[str], None]  # results
    err: Callable[[str], None]  # progress, warnings, failures
    tty: bool = False  # the progress stream is a terminal: live bars instead of log lines
    quiet: bool = False  # -q: no progress (epoch lines, bars), only warnings, errors and the results


@dataclass
class Request:
    """What `labreport run` asks of any executor."""

    config: Config
    store: RunStore
    only: tuple[str, ...] = ()
    device: str = "auto"
    wait: bool = False  # local: wait for runs other workers hold; a job array: wait for its tasks
    threads: int = 0  # --threads: torch CPU threads per training process; 0: cpu_threads decides


class Executor:
    """Trains the runs of a Request that are not done. Subclasses are chosen by `name` with get()."""

    name: ClassVar[str]
    confirms: ClassVar[bool] = True  # asks for --yes above CONFIRM_RUNS runs left

    def describe(self, config: Config, store: RunStore, runs: list[Run], threads: int = 0) -> list[str]:
        """--dry-run: what this executor would start or ask for (the runs themselves are listed apart)."""
        return []

    def execute(self, req: Request, console: Console) -> Outcome:
        raise NotImplementedError


def cpu_threads(requested: int, configured: int, *, sharing: int = 1, cpus_per_task: int | None = None) -> int:
    """torch CPU threads of one training process: --threads, else [run] threads, else a cluster task's
    CPUs, else this machine's cores divided among the `sharing` processes that train on it at once
    (torch's N thread pools would oversubscribe them, and every worker would slow); 0 for a lone
    process: torch's default, every core."""
    if requested or configured:
        return requested or configured
    if cpus_per_task is not None:
        return cpus_per_task
    return 0 if sharing == 1 else max(1, (os.cpu_count() or 1) // sharing)


def print_summary(console: Console, out: Outcome, store: RunStore) -> None:
    parts = [f"{len(out.trained)} trained", f"{len(out.cached)} cached", f"{len(out.diverged)} diverged",
             f"{len(out.failed)} failed"] + ([f"{len(out.busy)} busy elsewhere"] if out.busy else [])
    console.out(", ".join(parts) + f"  (store: {store.root})")
    for label, msg in out.failed:
        console.err(f"  FAILED {label}: {msg}")
    for index, code, log in out.crashed:
        console.err(f"  worker {index} exited with code {code}: see {log}")


def get(name: str, **options) -> Executor:
    """The executor called `name` with `options`; an option it does not take is an error, as
    submitit's AutoExecutor refuses parameters a backend does not take."""
    try:
        module, _, cls_name = EXECUTORS[name].partition(":")
    except KeyError:
        raise LabreportError(f"unknown executor '{name}' (executors: {', '.join(EXECUTORS)})") from None
    cls = getattr(importlib.import_module(module), cls_name)
    takes = [f.name for f in dataclasses.fields(cls)]
    if bad := [k for k in options if k not in takes]:
        raise LabreportError(f"executor '{name}' does not take {', '.join(bad)} (it takes "
                             f"{', '.join(takes) or 'no options'})")
    return cls(**options)


def run(executor: Executor, req: Request, console: Console, *, yes: bool = False) -> Outcome:
    """The one way to train: the runs of `req` not done yet, through `executor` (SIGTERM stopping
    them as Ctrl-C does); what happened, as the runner's Outcome (`.exit_code`)."""
    check_size(executor, req, yes)
    with sigterm_as_interrupt():
        return executor.execute(req, console)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While training: SIGTERM (kill, scancel, a stopped notebook runtime) stops as Ctrl-C does, by
    raising errors.Terminated: the run's last epoch checkpoint stays, its claim is released, and
    the same command resumes it. The caller's handler comes back after. Only the main thread can
    handle signals: elsewhere (a notebook's worker thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(_signum, _frame):
        raise Terminated()

    before = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def check_size(executor: Executor, req: Request, yes: bool) -> None:
    """Above CONFIRM_RUNS runs left, only with `yes`: a typo in a grid should not start days of training."""
    runs = req.config.select(req.only)
    if executor.confirms and not yes and len(runs) > CONFIRM_RUNS:
        left = len(pending(req.store, runs)[0])
        if left > CONFIRM_RUNS:
            raise LabreportError(f"{left:,} runs to train (more than {CONFIRM_RUNS:,}): check with "
                                 "`labreport run --dry-run`, then pass --yes to train them")
