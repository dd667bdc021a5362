"""Run the matrix: train every run that is not done, skip the rest, never train one twice.

The store is read first and torch is imported only when something is left to train, so a second
`labreport run` over a finished matrix answers in a fraction of a second.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field

from .config import Config, Run
from .errors import LabreportError
from .store import RunStore

FINAL_STATES = ("done", "diverged")  # never trained again
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


def select_runs(config: Config, only: tuple[str, ...] = ()) -> list[Run]:
    """Distinct runs of the matrix, restricted to the experiments named in `only` (if any)."""
    runs = config.unique_runs()
    if only:
        unknown = [o for o in only if o not in {e.name for e in config.experiments}]
        if unknown:
            from .errors import ConfigError  # noqa: E402
            names = ", ".join(e.name for e in config.experiments)
            raise ConfigError(f"--only: no experiment named '{unknown[0]}' (experiments: {names})")
        first: dict[str, Run] = {}
        for r in config.runs:
            if r.experiment in only:
                first.setdefault(r.key, r)  # as unique_runs: first occurrence, in matrix order
        runs = list(first.values())
    return runs


def pending(store: RunStore, runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """(to train, already final) according to the store."""
    todo, final = [], []
    for r in runs:
        (final if store.state(r.key).status in FINAL_STATES else todo).append(r)
    return todo, final


def run_matrix(config: Config, store: RunStore, *, device: str = "auto", only: tuple[str, ...] = (),
               reporter=None, data_loader=None, retry_failed: bool = True) -> Summary:
    """Train what is missing. `data_loader()` returns a Cifar10 (called at most once, and only if
    something is left to train). Failed runs are retried, unless retry_failed=False: then they are
    left alone and listed in Summary.failed."""
    runs = select_runs(config, only)
    todo, final = pending(store, runs)
    summary = Summary(cached=[r.label for r in final])
    if not retry_failed:  # leave failed runs as they are, and say so
        states = {r.key: store.state(r.key) for r in todo}
        summary.failed = [(r.label, f"{states[r.key].error} (not retried)") for r in todo
                          if states[r.key].status == "failed"]
        todo = [r for r in todo if states[r.key].status != "failed"]
    if not todo:
        return summary

    import torch  # from here on, there is work to do

    from .data import load_cifar10, resolve_root
    from .train import RunOptions, SilentReporter, prepare, prepare_key, resolve_device, train

    reporter = reporter or SilentReporter()
    dev = resolve_device(device if device != "auto" else config.run_options["device"])
    try:
        store.root.mkdir(parents=True, exist_ok=True)
        probe = store.root / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise LabreportError(f"run store {store.root} is not a writable folder ({e.strerror})") from None
    data = (data_loader or (lambda: load_cifar10(resolve_root(config.data_root, config.base_dir),
                                                 download=config.download)))()
    prepared: dict[tuple, object] = {}
    base = RunOptions(channels_last=config.run_options["channels_last"], compile=config.run_options["compile"])
    for n, run in enumerate(todo, 1):
        key = run.key
        if store.state(key).status in FINAL_STATES:  # another worker finished it meanwhile
            summary.cached.append(run.label)
            continue
        if not store.acquire(key):
            summary.skipped_busy.append(run.label)
            reporter.message(f"{run.label}: being trained by another worker, skipped")
            continue
        if store.state(key).status in FINAL_STATES:  # finished between our check and our claim
            store.release(key)
            summary.cached.append(run.label)
            continue
        store.clear_error(key)  # a retry is under way: the old failure no longer describes the run
        try:
            pk = prepare_key(run.spec)
            if pk not in prepared:
                prepared = {pk: prepare(data, run.spec, dev)}  # keep one on the device at a time
            options = base
            while True:
                oom = False
                try:
                    result = train(run.spec, prepared[pk], dev, store, options=options,
                                   reporter=_LeaseKeeper(reporter, store, key),
                                   label=f"[{n}/{len(todo)}] {run.label}",
                                   on_epoch=lambda _e, k=key: store.heartbeat(k))
                    break
                except torch.OutOfMemoryError:
                    oom = True  # handled below, once the traceback no longer pins the GPU tensors
                if oom:
                    micro = (options.micro_batch or run.spec.batch_size) // 2
                    if micro < 1:
                        raise RuntimeError("out of memory even with a micro-batch of 1 image")
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    reporter.message(f"{run.label}: out of memory; retrying with micro-batch {micro} "
                                     f"and gradient accumulation (effective batch {run.spec.batch_size})")
                    options = RunOptions(**{**base.__dict__, "micro_batch": micro})
            store.prune_checkpoints(key)
            (summary.diverged if result["status"] == "diverged" else summary.trained).append(run.label)
        except KeyboardInterrupt:
            summary.interrupted = run.label
            store.release(key)
            break
        except Exception as e:  # one failed run must not stop the matrix
            msg = f"{type(e).__name__}: {e}"
            store.write_error(key, msg, traceback.format_exc())
            summary.failed.append((run.label, f"{msg} (log: {store.run_dir(key) / 'error.json'})"))
            reporter.message(f"{run.label}: FAILED: {msg}")
        finally:
            store.release(key)
    return summary


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
