"""One way in for every executor: `labreport run` trains the runs left here, in worker processes
or as a job array, through the same two calls (in the spirit of submitit's Executor).

    ex = executors.get("slurm", partition="gpu")    # "local", "processes" (jobs=4), "slurm", "submitit-local"
    ex.describe(config, store, runs)                 # --dry-run: what it would start or ask the cluster for
    code = executors.run(ex, config, store, only=("resnet20",), wait=True, console=Console(print, print))

Every executor trains through runner.run_matrix in the end (a --jobs worker and an array task are
`labreport run` processes themselves), so the store's leases keep any mix of them from training a
run twice. `run` prints what happened (results on `console.out`, progress and problems on
`console.err`) and returns the exit code: 0 ok, 1 some runs failed, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from labreport.config import Config
from labreport.settings import ExecutorSettings
from labreport.errors import LabreportError
from labreport.spec import Run
from labreport.store import RunStore

CONFIRM_RUNS = 1000  # `run` asks for --yes above this many runs left to train
RESUME_HINT = "finished epochs are saved; run the same command again to resume"


@dataclass
class Console:
    out: Callable[[str], None]  # results
    err: Callable[[str], None]  # progress, warnings, failures
    tty: bool = False  # the progress stream is a terminal: live bars instead of log lines


@dataclass
class Outcome:
    """What an executor did, the same for all of them."""

    trained: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (label, message)
    busy: list[str] = field(default_factory=list)  # claimed by a live worker elsewhere, skipped
    crashed: list[tuple[int, int, Path]] = field(default_factory=list)  # --jobs workers: (index, exit code, log)
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else 1 if self.failed or self.crashed else 0

    @classmethod
    def of(cls, summary, **more) -> "Outcome":
        """From runner.Summary, parallel.ParallelSummary or the Summary of slurm.follow."""
        return cls(trained=list(summary.trained), cached=list(summary.cached), diverged=list(summary.diverged),
                   failed=list(summary.failed), **more)


def print_summary(console: Console, out: Outcome, store: RunStore) -> None:
    parts = [f"{len(out.trained)} trained", f"{len(out.cached)} cached", f"{len(out.diverged)} diverged",
             f"{len(out.failed)} failed"] + ([f"{len(out.busy)} busy elsewhere"] if out.busy else [])
    console.out(", ".join(parts) + f"  (store: {store.root})")
    for label, msg in out.failed:
        console.err(f"  FAILED {label}: {msg}")
    for index, code, log in out.crashed:
        console.err(f"  worker {index} exited with code {code}: see {log}")


@dataclass
class Request:
    """What `labreport run` asks of any executor."""

    config: Config
    store: RunStore
    only: tuple[str, ...] = ()
    device: str = "auto"
    wait: bool = False  # local: wait for runs other workers hold; a job array: wait for its tasks
    threads: int = 0  # torch CPU threads per training process; 0: the executor's choice


class Executor:
    """Trains the runs of a Request that are not done. Subclasses are chosen by `name` with get()."""

    name: ClassVar[str]
    confirms: ClassVar[bool] = True  # asks for --yes above CONFIRM_RUNS runs left

    def describe(self, config: Config, store: RunStore, runs: list[Run]) -> list[str]:
        """--dry-run: what this executor would start or ask for (the runs themselves are listed apart)."""
        return []

    def execute(self, req: Request, console: Console) -> Outcome:
        raise NotImplementedError


@dataclass
class Local(Executor):
    """In this process, one run after the other (`labreport run`)."""

    name: ClassVar[str] = "local"
    summary_json: Path | None = None  # a --jobs worker: its parent reads the summary here, and asked already

    @property
    def confirms(self) -> bool:
        return self.summary_json is None

    def execute(self, req: Request, console: Console) -> Outcome:
        from labreport.engine import runner  # looked up at call time (tests replace runner.run_matrix)
        from labreport.cluster.progress import LineReporter, RichReporter

        load = data_loader(req.config, console.err)
        total = len(runner.select_runs(req.config, req.only))
        reporter = RichReporter(total) if console.tty else LineReporter()
        try:
            with reporter:
                summary = runner.run_matrix(req.config, req.store, device=req.device, only=req.only,
                                            reporter=reporter, data_loader=load, wait=req.wait, threads=req.threads)
        except KeyboardInterrupt:
            console.err(f"\ninterrupted: {RESUME_HINT}")
            return Outcome(interrupted=True)
        out = Outcome.of(summary, busy=list(summary.skipped_busy), interrupted=summary.interrupted is not None)
        if self.summary_json is not None:
            from labreport.store import atomic_write_json

            atomic_write_json(self.summary_json, {"trained": out.trained, "cached": out.cached,
                                                  "diverged": out.diverged, "failed": out.failed})
        print_summary(console, out, req.store)
        if req.config.gradflow.enabled and not req.only and self.summary_json is None and not out.interrupted:
            try:  # task 1's measurement; cached: a JSON read. Its failure does not undo the training
                measure_gradflow(req.config, req.store, load, req.device, console)
            except KeyboardInterrupt:
                console.err("\ninterrupted: finished measurements are saved; run the same command again")
                out.interrupted = True
                return out
            except Exception as e:  # noqa: BLE001
                console.err(f"warning: gradflow: {e} (`labreport gradflow` retries; [gradflow] enabled = false "
                            "skips it)")
        if out.interrupted:
            console.err(f"interrupted during {summary.interrupted}: run the same command again to resume")
        return out


@dataclass
class Processes(Executor):
    """`jobs` worker processes on this machine (`labreport run --jobs N`), see parallel.py."""

    name: ClassVar[str] = "processes"
    jobs: int = 2
    gpus: list[str] = field(default_factory=list)  # spread the workers over these (CUDA_VISIBLE_DEVICES)
    fail_fast: bool = False

    def describe(self, config: Config, store: RunStore, runs: list[Run]) -> list[str]:
        from labreport.cluster.processes import worker_threads

        where = f"spread over GPU(s) {', '.join(self.gpus)}" if self.gpus else \
            f"{worker_threads(config, self.jobs)} torch thread(s) each"
        return [f"would start {self.jobs} worker processes here, {where}; logs in {store.root / '.workers'}"]

    def execute(self, req: Request, console: Console) -> Outcome:
        from labreport.cluster.processes import run_parallel
        from labreport.cluster.progress import LiveWorkers

        live = LiveWorkers() if console.tty else None
        try:
            with live or contextlib.nullcontext():
                summary = run_parallel(req.config, req.store, jobs=self.jobs, gpus=self.gpus, profile=req.config.profile,
                                       only=req.only, device=req.device, fail_fast=self.fail_fast, echo=console.err,
                                       live=live)
        except KeyboardInterrupt:
            console.err(f"interrupted: {RESUME_HINT}")
            return Outcome(interrupted=True)
        if summary.interrupted:
            console.err(f"interrupted: {RESUME_HINT}")
        out = Outcome.of(summary, crashed=list(summary.crashed_workers), interrupted=summary.interrupted)
        print_summary(console, out, req.store)
        return out


@dataclass
class JobArray(Executor):
    """The runs left as one submitit job array, one task per run (see slurm.py)."""

    name: ClassVar[str] = "slurm"
    partition: str | None = None  # None: [executor] partition
    time_min: int | None = None  # None: [executor] time_min

    def params(self, config: Config) -> ExecutorSettings:
        over = {"partition": self.partition, "time_min": self.time_min}
        return dataclasses.replace(config.executor, **{k: v for k, v in over.items() if v is not None})

    def describe(self, config: Config, store: RunStore, runs: list[Run]) -> list[str]:
        from labreport.engine.runner import pending
        from labreport.cluster.slurm import executor_folder, sbatch_lines, task_threads

        todo = pending(store, runs)[0]
        if not todo:
            return [f"nothing to submit to {self.name}: every run is done"]
        params = self.params(config)
        threads = task_threads(config, params, self.name, 0, len(todo))
        head = (f"would submit {len(todo)} run(s) to {self.name} as one job array, one task per run "
                f"({threads} torch thread(s) each)")
        if self.name != "slurm":
            return [head + f": here, through submitit's LocalExecutor, time limit {params.time_min} min"]
        return [head + "; sbatch parameters:"] + [f"  {line}" for line in sbatch_lines(params, executor_folder(
            config, store), len(todo))]

    def execute(self, req: Request, console: Console) -> Outcome:
        from labreport.cluster.slurm import FOLLOW_POLL_S, follow, submit

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
            summary = follow(sub, req.store, echo=console.err, poll_s=FOLLOW_POLL_S[self.name])
        except KeyboardInterrupt:
            console.err("\nstopped waiting; submitted jobs may still run: labreport status to follow")
            return Outcome(interrupted=True)
        out = Outcome.of(summary)
        print_summary(console, out, req.store)
        return out


@dataclass
class SubmititLocal(JobArray):
    """The same job array, its tasks run here by submitit's LocalExecutor (how the array is tested)."""

    name: ClassVar[str] = "submitit-local"


EXECUTORS: dict[str, type[Executor]] = {c.name: c for c in (Local, Processes, JobArray, SubmititLocal)}


def get(name: str, **options) -> Executor:
    """The executor called `name`, with the options it takes; others are ignored (as `--partition`
    is without a cluster)."""
    try:
        cls = EXECUTORS[name]
    except KeyError:
        raise LabreportError(f"unknown executor '{name}' (executors: {', '.join(EXECUTORS)})") from None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in names})


def run(executor: Executor, config: Config, store: RunStore, *, console: Console, only: tuple[str, ...] = (),
        device: str = "auto", wait: bool = False, threads: int = 0, yes: bool = False) -> int:
    """Train the runs of `only` (all by default) that are not done, through `executor`; the exit code."""
    from labreport.engine.runner import pending, select_runs

    runs = select_runs(config, only)
    if executor.confirms and not yes and len(runs) > CONFIRM_RUNS:
        left = len(pending(store, runs)[0])
        if left > CONFIRM_RUNS:  # a typo in a grid should not start days of training
            raise LabreportError(f"{left:,} runs to train (more than {CONFIRM_RUNS:,}): check with "
                                 "`labreport run --dry-run`, then pass --yes to train them")
    return executor.execute(Request(config, store, only, device, wait, threads), console).exit_code


def data_loader(config: Config, warn: Callable[[str], None]):
    """A loader of the config's CIFAR-10 that reads the files once (training and the gradient-flow
    step of one `run` share it) and passes the data warnings to `warn` once."""
    cache = []

    def load():
        if not cache:
            from labreport.engine.data import load_cifar10, resolve_root

            cache.append(load_cifar10(resolve_root(config.data.root, config.base_dir), download=config.data.download))
            for w in cache[0].warnings:
                warn(f"warning: {w}")
        return cache[0]

    return load


def measure_gradflow(config: Config, store: RunStore, load_data, device: str, console: Console) -> dict:
    """Task 1's gradient-flow measurement ([gradflow]): what is not cached yet, a line per cell."""
    from labreport.engine.gradflow import ensure
    from labreport.science.gradflow import network_label

    measured: list[float] = []

    def progress(cell, res, was_cached):
        if not was_cached:
            measured.append(res["time_s"])
            console.err(f"gradflow: {network_label(cell.family, cell.norm, cell.depth)}, init {cell.init}: "
                        f"{res['time_s']:.1f} s")

    m = ensure(store.root, config.gradflow, load_data, device, on_cell=progress)
    console.out(f"gradflow: {len(measured)} measured ({sum(measured):.0f} s), "
                f"{len(m['cells']) - len(measured)} cached  (store: {store.root})")
    return m
