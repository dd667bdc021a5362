"""`labreport run --jobs N`: N worker processes on one machine, cooperating through the run store.

There is no scheduler: each worker is an ordinary `labreport run --wait` that claims runs through
the store's leases, so N workers here, several machines sharing the runs folder over NFS, and
Slurm array tasks all cooperate the same way, and no run is ever trained twice. The parent only
starts the workers (pinning each to a GPU with CUDA_VISIBLE_DEVICES, or giving each its share of
the CPU cores), follows their logs and the store, and merges their summaries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from labreport.config import Config
from labreport.engine.runner import FINAL_STATES, select_runs
from labreport.store import RunStore


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen
    log: Path
    summary: Path
    gpu: str | None
    last_line: str = ""
    lines_seen: int = 0


@dataclass
class ParallelSummary:
    trained: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    crashed_workers: list[tuple[int, int, Path]] = field(default_factory=list)  # (index, exit code, log)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.crashed_workers and not self.interrupted


def worker_command(config: Config, store: RunStore, *, profile: str | None, only: tuple[str, ...],
                   device: str, threads: int, summary: Path) -> list[str]:
    cmd = [sys.executable, "-m", "labreport", "--config", str(config.path.resolve()),
           "--runs", str(store.root.resolve()), "run", "--wait", "--device", device,
           "--threads", str(threads), "--summary-json", str(summary)]
    if profile:
        cmd += ["--profile", profile]
    for name in only:
        cmd += ["--only", name]
    return cmd


def worker_threads(config: Config, jobs: int) -> int:
    """torch threads per worker: [run] threads, else the CPU cores divided among the workers (or
    torch's N thread pools oversubscribe them and every worker slows)."""
    return config.run.threads or max(1, (os.cpu_count() or 1) // jobs)


def start_workers(config: Config, store: RunStore, *, jobs: int, gpus: list[str], profile: str | None,
                  only: tuple[str, ...], device: str) -> list[Worker]:
    logs = store.root / ".workers"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    threads = worker_threads(config, jobs)
    workers = []
    for k in range(jobs):
        env = dict(os.environ)
        gpu = gpus[k % len(gpus)] if gpus else None
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu  # the worker sees one GPU, as cuda:0
        log = logs / f"{stamp}-worker{k}.log"
        summary = logs / f"{stamp}-worker{k}.json"
        cmd = worker_command(config, store, profile=profile, only=only,
                             device="cuda" if gpu is not None else device, threads=threads, summary=summary)
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
    runs = select_runs(config, only)
    failed_before = {r.key for r in runs if store.state(r.key).status == "failed"}
    last_progress = None
    while True:
        running = [w for w in workers if w.proc.poll() is None]
        for w in workers:
            for line in _new_lines(w):
                if live is None:
                    echo(f"[w{w.index}] {line}")
        states = [store.state(r.key).status for r in runs]
        final = sum(s in FINAL_STATES for s in states)
        progress = f"matrix: {final}/{len(runs)} finished, {len(running)} worker(s) running"
        if live is not None:
            live(workers, progress)
        elif progress != last_progress:
            echo(progress)
        last_progress = progress
        if fail_fast and any(s == "failed" and r.key not in failed_before for r, s in zip(runs, states)):
            for w in running:
                w.proc.terminate()
            for w in running:
                w.proc.wait()
            return False
        if not running:
            return True
        time.sleep(poll_s)


def merge(workers: list[Worker]) -> ParallelSummary:
    out = ParallelSummary()
    for w in workers:
        data = None
        try:
            data = json.loads(w.summary.read_text())
        except (OSError, ValueError):
            pass
        if w.proc.returncode not in (0, 1) or data is None:
            out.crashed_workers.append((w.index, w.proc.returncode, w.log))
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


def run_parallel(config: Config, store: RunStore, *, jobs: int, gpus: list[str], profile: str | None,
                 only: tuple[str, ...], device: str, fail_fast: bool, echo, live=None) -> ParallelSummary:
    workers = start_workers(config, store, jobs=jobs, gpus=gpus, profile=profile, only=only, device=device)
    try:
        completed = follow(workers, config, store, only=only, fail_fast=fail_fast, echo=echo, live=live)
    except KeyboardInterrupt:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.terminate()  # each worker saves nothing mid-epoch; its last checkpoint stands
        for w in workers:
            w.proc.wait()
        summary = merge(workers)
        summary.crashed_workers = []
        summary.interrupted = True
        return summary
    summary = merge(workers)
    if not completed:
        summary.crashed_workers = [c for c in summary.crashed_workers if c[1] not in (-15, 143)]
        summary.interrupted = True
    return summary
