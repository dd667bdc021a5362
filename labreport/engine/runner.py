"""Run the matrix: train every run that is not done, skip the rest, never train one twice.

The store is read first and torch is imported only when something is left to train, so a second
`labreport run` over a finished matrix answers in a fraction of a second.
"""

from __future__ import annotations

import gc
import os
import time
import traceback
from dataclasses import dataclass, field

from labreport.config import Config
from labreport.spec import Run
from labreport.errors import LabreportError
from labreport.faults import point as fault_point
from labreport.store import RunStore
from labreport.store.records import FINAL_STATES

HEARTBEAT_EVERY_S = 30.0  # lease refresh while training, also mid-epoch; RunStore.acquire's stale_after is 600 s


@dataclass
class Summary:
    trained: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (label, message)
    skipped_busy: list[str] = field(default_factory=list)  # leased by another live worker
    interrupted: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and self.interrupted is None


def select_runs(config: Config, only: tuple[str, ...] = (), keys: tuple[str, ...] = ()) -> list[Run]:
    """Distinct runs of the matrix, restricted to the experiments named in `only` and to the run
    keys in `keys` (if given), first occurrence and matrix order kept."""
    names = {e.name for e in config.experiments}
    unknown = [o for o in only if o not in names]
    if unknown:
        from labreport.errors import ConfigError  # noqa: E402
        raise ConfigError(f"--only: no experiment named '{unknown[0]}' "
                          f"(experiments: {', '.join(e.name for e in config.experiments)})")
    first: dict[str, Run] = {}
    for r in config.runs:
        if (not only or r.experiment in only) and (not keys or r.key in keys):
            first.setdefault(r.key, r)
    return list(first.values())


def pending(store: RunStore, runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """(to train, already final) according to the store."""
    todo, final = [], []
    for r in runs:
        (final if store.state(r.key).status in FINAL_STATES else todo).append(r)
    return todo, final


def run_matrix(config: Config, store: RunStore, *, device: str = "auto", only: tuple[str, ...] = (),
               keys: tuple[str, ...] = (), reporter=None, data_loader=None, retry_failed: bool = True,
               wait: bool = False, poll_s: float = 5.0, threads: int = 0) -> Summary:
    """Train what is missing. `data_loader()` returns a Cifar10 (called at most once, and only if
    something is left to train; by default the data set of the config). Failed runs are retried,
    unless retry_failed=False: then they are left alone and listed in Summary.failed.

    Runs claimed by another live worker are skipped; with `wait`, this worker keeps polling them
    every `poll_s` seconds until each is finished, failed elsewhere, or claimable (its holder died:
    the run resumes here from its checkpoint). `threads` > 0 sets torch's CPU threads."""
    runs = select_runs(config, only, keys)
    todo, final = pending(store, runs)
    for r in final:  # a worker killed between its result and its lease release left a lease behind
        store.tidy_finished(r.key)
    summary = Summary(cached=[r.label for r in final])
    if not retry_failed:  # leave failed runs as they are, and say so
        states = {r.key: store.state(r.key) for r in todo}
        summary.failed = [(r.label, f"{states[r.key].error} (not retried)") for r in todo
                          if states[r.key].status == "failed"]
        todo = [r for r in todo if states[r.key].status != "failed"]
    if not todo:
        return summary

    import torch  # from here on, there is work to do

    fault_point("runner.start")  # test hook (LABREPORT_FAULT_AT): a kill during start-up

    from labreport.engine.data import load_cifar10, resolve_root
    from labreport.engine.device import RunOptions, describe, resolve_device
    from labreport.engine.splits import prepare, prepare_key
    from labreport.engine.trainer import SilentReporter

    reporter = reporter or SilentReporter()
    dev = resolve_device(device if device != "auto" else config.run.device)
    threads = threads or config.run.threads
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        store.root.mkdir(parents=True, exist_ok=True)
        probe = store.root / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise LabreportError(f"run store {store.root} is not a writable folder ({e.strerror})") from None
    data = (data_loader or (lambda: load_cifar10(resolve_root(config.data.root, config.base_dir),
                                                 download=config.data.download)))()
    prepared: dict[tuple, object] = {}
    base = RunOptions(channels_last=config.run.channels_last, compile=config.run.compile)
    if todo:
        reporter.message(describe(dev, base.compile))
    total = len(todo)
    done_here = 0
    while True:
        busy: list[Run] = []
        for run in todo:
            key = run.key
            state = store.state(key)
            if state.status in FINAL_STATES:  # another worker finished it meanwhile
                summary.cached.append(run.label)
                continue
            if not store.acquire(key):
                busy.append(run)
                continue
            if store.state(key).status in FINAL_STATES:  # finished between our check and our claim
                store.release(key)
                summary.cached.append(run.label)
                continue
            fault_point("runner.acquired")  # test hook: a kill right after the claim
            if (store.run_dir(key) / "result.json").exists():  # there, yet not a valid result
                reporter.message(f"warning: {run.label}: {store.run_dir(key) / 'result.json'} is damaged "
                                 "(truncated or not a result): the run is resumed from its checkpoint")
            store.clear_error(key)  # a retry is under way: the old failure no longer describes the run
            done_here += 1
            try:
                pk = prepare_key(run.spec)
                if pk not in prepared:
                    prepared = {pk: prepare(data, run.spec, dev)}  # keep one on the device at a time
                result = _train_with_oom_fallback(run, prepared[pk], dev, store, base, reporter,
                                                  f"[{done_here}/{total}] {run.label}")
                store.prune_checkpoints(key)
                (summary.diverged if result["status"] == "diverged" else summary.trained).append(run.label)
            except KeyboardInterrupt:
                summary.interrupted = run.label
                break
            except Exception as e:  # one failed run must not stop the matrix
                msg = f"{type(e).__name__}: {e}"
                try:
                    store.write_error(key, msg, traceback.format_exc())
                except OSError as e2:  # e.g. the full disk that failed the run: still report it, go on
                    msg += f" (error.json not written either: {e2.strerror})"
                summary.failed.append((run.label, f"{msg} (log: {store.run_dir(key) / 'error.json'})"))
                reporter.message(f"{run.label}: FAILED: {msg}")
            finally:
                store.release(key)
        if summary.interrupted or not busy:
            break
        if not wait:
            summary.skipped_busy = [r.label for r in busy]
            for r in busy:
                reporter.message(f"{r.label}: being trained by another worker, skipped")
            break
        time.sleep(poll_s)
        todo = []
        for r in busy:  # a run that failed in another worker is that worker's failure, not retried here
            st = store.state(r.key)
            if st.status == "failed" and not st.leased_by:
                summary.failed.append((r.label, f"{st.error} (in another worker; log: "
                                                 f"{store.run_dir(r.key) / 'error.json'})"))
            else:
                todo.append(r)
        if not todo:
            break
    return summary


def _train_with_oom_fallback(run: Run, data, dev, store: RunStore, base, reporter, label: str) -> dict:
    """train(), retried with half the micro-batch (gradient accumulation keeps the effective batch)
    after a CUDA out-of-memory error, down to one image per micro-batch."""
    import torch

    from labreport.engine.device import RunOptions
    from labreport.engine.trainer import train

    options = base
    while True:
        oom = False
        try:
            return train(run.spec, data, dev, store, options=options,
                         reporter=_LeaseKeeper(reporter, store, run.key), label=label,
                         on_epoch=lambda _e, k=run.key: store.heartbeat(k))
        except torch.OutOfMemoryError:
            oom = True  # handled below, once the traceback no longer pins the GPU tensors
        if oom:
            micro = (options.micro_batch or run.spec.batch_size) // 2
            if micro < 1:
                raise RuntimeError("out of memory even with a micro-batch of 1 image")
            if dev.type == "cuda":
                gc.collect()  # tensors held only by reference cycles (the failed step's frames) go first
                torch.cuda.empty_cache()
            reporter.message(f"{run.label}: out of memory; retrying with micro-batch {micro} "
                             f"and gradient accumulation (effective batch {run.spec.batch_size})")
            options = RunOptions(**{**base.__dict__, "micro_batch": micro})


class _LeaseKeeper:
    """Passes a Reporter's calls on, and refreshes the run's lease every HEARTBEAT_EVERY_S from the
    step loop: an epoch on a CPU can last longer than the lease's stale_after, and a lease refreshed
    only between epochs would then be taken over by another worker while this one still trains."""

    def __init__(self, reporter, store: RunStore, key: str):
        self.reporter, self.store, self.key = reporter, store, key
        self.last = time.monotonic()

    def run_started(self, *args):
        self.reporter.run_started(*args)

    def step(self, epoch, step):
        self.reporter.step(epoch, step)
        if time.monotonic() - self.last >= HEARTBEAT_EVERY_S:
            self.store.heartbeat(self.key)
            self.last = time.monotonic()

    def epoch_done(self, record):
        self.reporter.epoch_done(record)

    def message(self, text):
        self.reporter.message(text)
