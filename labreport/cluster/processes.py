"""The processes executor, `labreport run --jobs N`: N worker processes on one machine, cooperating
through the run store.

There is no scheduler: each worker is an ordinary `labreport run --wait` that claims runs through
the store's leases, so N workers here, several machines sharing the runs folder over NFS, and
Slurm array tasks all cooperate the same way, and no run is ever trained twice. The parent only
starts the workers (pinning each to a GPU with CUDA_VISIBLE_DEVICES, or giving each its share of
the CPU cores), follows their logs and the store, and merges their summaries.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from labreport.cluster import worker
from labreport.cluster.executors import RESUME_HINT, Console, Executor, Outcome, Request, cpu_threads, print_summary
from labreport.config import Config
from labreport.errors import Terminated
from labreport.spec import Run
from labreport.store import RunStore


@dataclass
class Processes(Executor):
    """`jobs` worker processes on this machine (`labreport run --jobs N`)."""

    name: ClassVar[str] = "processes"
    jobs: int = 2
    gpus: list[str] = field(default_factory=list)  # spread the workers over these (CUDA_VISIBLE_DEVICES)
    fail_fast: bool = False

    def describe(self, config: Config, store: RunStore, runs: list[Run], threads: int = 0) -> list[str]:
        where = f"spread over GPU(s) {', '.join(self.gpus)}" if self.gpus else \
            f"{cpu_threads(threads, config.run.threads, sharing=self.jobs)} torch thread(s) each"
        return [f"would start {self.jobs} worker processes here, {where}; logs in {store.root / '.workers'}"]

    def execute(self, req: Request, console: Console) -> Outcome:
        from labreport.cluster.progress import LiveWorkers

        live = LiveWorkers() if console.tty and not console.quiet else None
        try:
            with live or contextlib.nullcontext():
                out = run_parallel(req, jobs=self.jobs, gpus=self.gpus, fail_fast=self.fail_fast, echo=console.err,
                                   live=live)
        except KeyboardInterrupt as e:
            out = Outcome(interrupted=True, terminated=isinstance(e, Terminated))
            console.err(f"{'terminated (SIGTERM)' if out.terminated else 'interrupted'}: {RESUME_HINT}")
            return out
        if out.interrupted:
            console.err(f"{'terminated (SIGTERM)' if out.terminated else 'interrupted'}: {RESUME_HINT}")
        print_summary(console, out, req.store)
        return out


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen
    log: Path
    summary: Path
    gpu: str | None
    last_line: str = ""
    lines_seen: int = 0


def start_workers(req: Request, *, jobs: int, gpus: list[str]) -> list[Worker]:
    config, store = req.config, req.store
    logs = store.root / ".workers"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    threads = cpu_threads(req.threads, config.run.threads, sharing=jobs)
    workers = []
    for k in range(jobs):
        env = dict(os.environ)
        gpu = gpus[k % len(gpus)] if gpus else None
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu  # the worker sees one GPU, as cuda:0
        log = logs / f"{stamp}-worker{k}.log"
        summary = logs / f"{stamp}-worker{k}.json"
        cmd = worker.command(config.path, config.profile, config.overrides, store.root, only=req.only,
                             device="cuda" if gpu is not None else req.device, threads=threads, summary=summary)
        with open(log, "w") as fh:  # the child keeps its own handle
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        workers.append(Worker(k, proc, log, summary, gpu))
    return workers


def _new_lines(w: Worker) -> list[str]:
    try:
        lines = w.log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    new = lines[w.lines_seen:]
    w.lines_seen = len(lines)
    if new:
        w.last_line = new[-1]
    return new


def follow(workers: list[Worker], config: Config, store: RunStore, *, only: tuple[str, ...], fail_fast: bool,
           echo, poll_s: float = 1.0, live=None) -> bool:
    """Wait for the workers, showing their progress. Returns False if stopped by --fail-fast."""
    runs = config.select(only)
    failed_before = {r.key for r in runs if store.state(r.key).status == "failed"}
    shown = None
    while True:
        running = [w for w in workers if w.proc.poll() is None]
        states = [store.state(r.key) for r in runs]
        shown = _show(workers, running, states, echo, live, shown)
        if fail_fast and any(s.status == "failed" and r.key not in failed_before for r, s in zip(runs, states)):
            for w in running:
                w.proc.terminate()
            for w in running:
                w.proc.wait()
            return False
        if not running:
            return True
        time.sleep(poll_s)


def _show(workers: list[Worker], running: list[Worker], states: list, echo, live, shown: str | None) -> str:
    """The workers' new log lines (unless a live display shows their last ones) and the matrix's
    progress, when it changed; returns the progress line."""
    for w in workers:
        for line in _new_lines(w):
            if live is None:
                echo(f"[w{w.index}] {line}")
    progress = f"matrix: {sum(s.final for s in states)}/{len(states)} finished, {len(running)} worker(s) running"
    if live is not None:
        live(workers, progress)
    elif progress != shown:
        echo(progress)
    return progress


def merge(workers: list[Worker]) -> Outcome:
    """The workers' outcomes as one (a worker that left none, or exited otherwise than 0 or 1, crashed)."""
    out = Outcome()
    for w in workers:
        data = None
        try:
            data = json.loads(w.summary.read_text())
        except (OSError, ValueError):
            pass
        if w.proc.returncode not in (0, 1) or data is None:
            out.crashed.append((w.index, w.proc.returncode, w.log))
            continue
        out.trained += data["trained"]
        out.diverged += data["diverged"]
        out.failed += [tuple(f) for f in data["failed"]]
        out.cached += data["cached"]
    # a run one worker trained is "cached" for the others: count it once
    done = set(out.trained) | set(out.diverged)
    failed = {label for label, _ in out.failed}
    out.cached = sorted(set(out.cached) - done - failed)
    out.failed = list({label: (label, msg) for label, msg in out.failed}.values())
    return out


def run_parallel(req: Request, *, jobs: int, gpus: list[str], fail_fast: bool, echo, live=None) -> Outcome:
    workers = start_workers(req, jobs=jobs, gpus=gpus)
    try:
        completed = follow(workers, req.config, req.store, only=req.only, fail_fast=fail_fast, echo=echo, live=live)
    except KeyboardInterrupt as e:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.terminate()  # SIGTERM: each worker keeps its last checkpoint and releases its run's claim
        for w in workers:
            w.proc.wait()
        out = merge(workers)
        out.crashed, out.interrupted, out.terminated = [], True, isinstance(e, Terminated)
        return out
    out = merge(workers)
    if not completed:  # stopped by --fail-fast: the workers it terminated did not crash
        out.crashed = [c for c in out.crashed if c[1] not in (-15, 143)]
        out.interrupted = True
    return out
