"""Run the matrix: train every run that is not done, skip the rest, never train one twice.

    run_matrix(config, store) -> Outcome
      1. what is left: the matrix less the runs the store has final (and, unless retried, failed)
      2. open a session: torch, the device, the data set (only now: nothing left, no torch)
      3. train each run left under its lease; a run another live worker holds is busy: skipped,
         or with `wait` polled until it is final, failed there, or its holder died (then resumed here)

The store is read first and torch is imported only when something is left to train, so a second
`labreport run` over a finished matrix answers in a fraction of a second. Every executor trains
through here in the end (a --jobs worker and a Slurm task are `labreport run` processes too), and
reports what it did as an Outcome.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from labreport.config import Config
from labreport.errors import LabreportError, ModelError, Terminated
from labreport.faults import point as fault_point
from labreport.spec import NUM_CLASSES, Run
from labreport.engine.observe import Observer, Observers
from labreport.logs import LOG
from labreport.store import RunStore

HEARTBEAT_EVERY_S = 30.0  # lease refresh while training, also mid-epoch; a lease goes stale after 600 s


@dataclass
class Outcome:
    """What training the matrix did, the same for every executor (labels of runs)."""

    trained: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)  # final already, or finished by another worker
    diverged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (label, message)
    busy: list[str] = field(default_factory=list)  # claimed by a live worker elsewhere, skipped
    # --jobs workers that left no outcome: (index, exit code, log)
    crashed: list[tuple[int, int, Path]] = field(default_factory=list)
    interrupted: bool = False
    interrupted_run: str | None = None  # the run in training when it was interrupted
    terminated: bool = False  # interrupted by SIGTERM, not Ctrl-C

    @property
    def exit_code(self) -> int:
        """0 ok, 1 some runs failed (or a worker crashed), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""
        if self.interrupted:
            return Terminated.exit_code if self.terminated else 130
        return 1 if self.failed or self.crashed else 0

    def to_json(self) -> dict[str, Any]:
        """What a --jobs worker leaves for its parent (crashes are the parent's to see)."""
        return {k: v for k, v in asdict(self).items() if k in ("trained", "cached", "diverged", "failed")}


def loader_for(config: Config, store: RunStore | None = None) -> Callable:
    """The one way a worker loads its data sets ([data], LABREPORT_DATA): `load(dataset)` reads a
    data set's files at its first call only (training and the gradient-flow measurement of one `run`
    share it: torch and the data only when something is left to do). Its warnings (files that are
    not the official download) are said once per data folder and `store`, then only with -v."""
    cache: dict = {}

    def load(dataset: str = "cifar10"):
        if dataset not in cache:
            from labreport.engine.datasets import load, resolve_root

            cache[dataset] = data = load(resolve_root(config.data.root, config.base_dir),
                                         download=config.data.download, dataset=dataset)
            first = store is None or not data.warnings or store.first_notice(str(data.root), data.fingerprint)
            for w in data.warnings:
                (LOG.warning if first else LOG.debug)(w)
        return cache[dataset]

    return load


def pending(store: RunStore, runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """(to train, already final) according to the store."""
    todo, final = [], []
    for r in runs:
        (final if store.state(r.key).final else todo).append(r)
    return todo, final


def run_matrix(config: Config, store: RunStore, *, device: str = "auto", only: tuple[str, ...] = (),
               keys: tuple[str, ...] = (), observer: Observer | None = None, data_loader: Callable | None = None,
               wait: bool = False, poll_s: float = 5.0, threads: int = 0) -> Outcome:
    """Train what is missing. `data_loader(dataset)` returns a CifarData (called once per data set, and only if
    something is left to train; by default the data set of the config). Failed runs are retried.

    Runs claimed by another live worker are skipped; with `wait`, this worker keeps polling them
    every `poll_s` seconds until each is finished, failed elsewhere, or claimable (its holder died:
    the run resumes here from its checkpoint). `threads` > 0 sets torch's CPU threads."""
    outcome = Outcome()
    todo = _left_to_train(config.select(only, keys), store, outcome)
    if not todo:
        return outcome
    session = _Session.open(config, store, device, observer, data_loader, threads, todo)
    store.remember_run(config.profile, config.overrides)  # what a `build` without them reads (Lab.reading)
    try:
        while todo:
            busy = session.train_all(todo, outcome)
            if outcome.interrupted or not busy:
                break
            if not wait:
                outcome.busy = [r.label for r in busy]
                for r in busy:
                    LOG.info("%s: being trained by another worker, skipped", r.label)
                break
            time.sleep(poll_s)
            todo = _still_wanted(busy, store, outcome)
    finally:
        session.close()
    return outcome


def _left_to_train(runs: list[Run], store: RunStore, outcome: Outcome) -> list[Run]:
    """The runs not final yet (failed ones are retried); final ones are counted as cached (and tidied:
    a worker killed between its result and its lease release left the lease behind)."""
    todo, final = pending(store, runs)
    for r in final:
        store.tidy_finished(r.key)
        store.ensure_metrics_csv(r.key)  # store/legacy.py: a run an older labreport finished
    outcome.cached = [r.label for r in final]
    LOG.debug("%d of %d runs final in %s, %d left", len(final), len(runs), store.root, len(todo))
    return todo


def _still_wanted(busy: list[Run], store: RunStore, outcome: Outcome) -> list[Run]:
    """The busy runs worth waiting for: a run that failed in another worker is that worker's
    failure, not retried here."""
    todo = []
    for r in busy:
        st = store.state(r.key)
        if st.status == "failed" and not st.leased_by:
            outcome.failed.append((r.label,
                                   f"{st.error} (in another worker; log: {store.run_dir(r.key) / 'error.json'})"))
        else:
            todo.append(r)
    return todo


def check_own_models(runs: list[Run], lab_dir: Path) -> None:
    """Each model of one's own among `runs`, built as its first run's spec says, gives one logit per
    class for a batch of 2 images, and its file is the one the run key hashed; a ModelError otherwise."""
    from labreport import ownmodels
    from labreport.engine import owncode
    from labreport.engine.networks import build_model

    seen = set()
    for run in runs:
        s = run.spec
        if not ownmodels.is_own(s.model) or (s.model, s.model_args, s.model_source) in seen:
            continue
        seen.add((s.model, s.model_args, s.model_source))
        if ownmodels.read(s.model, lab_dir).digest != s.model_source:
            raise ModelError(f"model '{s.model}': its file changed after experiments.toml was read: run again")
        model = build_model(s.model, norm=s.norm, dropout=s.dropout, init=s.init, model_args=s.model_args.as_dict(),
                            lab_dir=lab_dir)
        owncode.check(model, s.model, lab_dir, num_classes=NUM_CLASSES[s.dataset])
        LOG.debug("%s: %s builds and gives [2, %d] logits", run.label, s.model, NUM_CLASSES[s.dataset])


class _Session:
    """What training the runs left needs once: torch, the device, the data set, the splits of the
    last spec (one on the device at a time), and the count of runs trained here."""

    def __init__(self, store: RunStore, dev, observer: Observer, data, options, total: int):
        self.store, self.dev, self.observer, self.data, self.options = store, dev, observer, data, options
        self.total, self.done_here, self.prepared = total, 0, {}
        self.tensorboard: Path | None = None  # where event files go, when [run] tensorboard is on
        self.threads_before: int | None = None  # torch's CPU threads as the caller had them, restored by close()

    @classmethod
    def open(cls, config: Config, store: RunStore, device: str, observer: Observer | None, data_loader, threads: int,
             todo: list[Run]) -> "_Session":
        import torch  # from here on, there is work to do

        from labreport.engine.device import resolve_device
        fault_point("runner.start")  # test hook (LABREPORT_FAULT_AT): a kill during start-up
        observer = observer or Observer()
        dev = resolve_device(device if device != "auto" else config.run.device)
        threads_before = torch.get_num_threads()
        if threads > 0:
            torch.set_num_threads(threads)
        try:
            return cls._opened(config, store, dev, observer, data_loader, todo, threads_before)
        except BaseException:
            torch.set_num_threads(threads_before)
            raise

    @classmethod
    def _opened(cls, config: Config, store: RunStore, dev, observer: Observer, data_loader, todo: list[Run],
                threads_before: int) -> "_Session":
        from labreport.engine.device import RunOptions, describe

        check_own_models(todo, config.base_dir)  # a broken model of one's own: one line, nothing trained
        _check_writable(store)
        if config.run.tensorboard:
            from labreport.engine.tbevents import check_installed

            check_installed()  # before the data set is read: one line, nothing else said or done
        load = data_loader or loader_for(config, store)
        data = {d: load(d) for d in dict.fromkeys(r.spec.dataset for r in todo)}  # a missing one: before any run
        options = RunOptions(channels_last=config.run.channels_last, compile=config.run.compile,
                             lab_dir=config.base_dir)
        LOG.info(describe(dev, options.compile))
        session = cls(store, dev, observer, data, options, len(todo))
        session.threads_before = threads_before
        if config.run.tensorboard:
            session.tensorboard = config.base_dir / config.run.tensorboard_dir if config.run.tensorboard_dir \
                else store.root / "tensorboard"
        return session

    def close(self) -> None:
        """Leave torch as the caller had it (a notebook that called Lab.run keeps its thread count)."""
        import torch

        if self.threads_before is not None:
            torch.set_num_threads(self.threads_before)

    def train_all(self, todo: list[Run], outcome: Outcome) -> list[Run]:
        """Train each run of `todo` this worker can claim; returns the runs other workers hold."""
        busy = []
        for run in todo:
            claimed = self._claim(run, outcome)
            if claimed is None:
                busy.append(run)
            elif claimed:
                self._train(run, outcome)
                if outcome.interrupted:
                    break
        return busy

    def _claim(self, run: Run, outcome: Outcome) -> bool | None:
        """True: this worker holds the run's lease now; False: the run is final (cached); None: busy."""
        store, key = self.store, run.key
        if store.state(key).final:  # another worker finished it meanwhile
            outcome.cached.append(run.label)
            return False
        if not store.acquire(key):
            return None
        if store.state(key).final:  # finished between our check and our claim
            store.release(key)
            outcome.cached.append(run.label)
            return False
        return True

    def _train(self, run: Run, outcome: Outcome) -> None:
        """Train a claimed run to its result; one failed run must not stop the matrix."""
        store, key = self.store, run.key
        fault_point("runner.acquired")  # test hook: a kill right after the claim
        if (store.run_dir(key) / "result.json").exists():  # there, yet not a valid result
            LOG.warning("%s: %s is damaged (truncated or not a result): the run is resumed from its checkpoint",
                        run.label, store.run_dir(key) / "result.json")
        store.clear_error(key)  # a retry is under way: the old failure no longer describes the run
        self.done_here += 1
        try:
            with self._observers(run) as observer:
                result = _train_with_oom_fallback(run, self._splits(run), self.dev, store, self.options, observer,
                                                  f"[{self.done_here}/{self.total}] {run.label}")
            store.prune_checkpoints(key)
            (outcome.diverged if result["status"] == "diverged" else outcome.trained).append(run.label)
        except KeyboardInterrupt as e:
            outcome.interrupted, outcome.interrupted_run = True, run.label
            outcome.terminated = isinstance(e, Terminated)
        except Exception as e:  # noqa: BLE001
            self._failed(run, e, outcome)
        finally:
            store.release(key)

    def _observers(self, run: Run) -> Observers:
        """Who watches this run: the lease's heartbeat, the user's progress (closed by whoever made it,
        after the last run), and TensorBoard's event files when asked for."""
        watchers: list[Observer] = [LeaseKeeper(self.store, run.key), _Borrowed(self.observer)]
        if self.tensorboard is not None:
            from labreport.engine.tbevents import TensorBoard, run_dir

            watchers.append(TensorBoard(run_dir(self.tensorboard, run)))
        return Observers(*watchers)

    def _splits(self, run: Run):
        from labreport.engine.splits import prepare, prepare_key

        pk = prepare_key(run.spec)
        if pk not in self.prepared:
            # one on the device at a time
            self.prepared = {pk: prepare(self.data[run.spec.dataset], run.spec, self.dev)}
        return self.prepared[pk]

    def _failed(self, run: Run, e: Exception, outcome: Outcome) -> None:
        msg = f"{type(e).__name__}: {e}"
        try:
            self.store.write_error(run.key, msg, traceback.format_exc())
        except OSError as e2:  # e.g. the full disk that failed the run: still report it, go on
            msg += f" (error.json not written either: {e2.strerror})"
        outcome.failed.append((run.label, f"{msg} (log: {self.store.run_dir(run.key) / 'error.json'})"))
        LOG.error("%s: FAILED: %s", run.label, msg)


def _check_writable(store: RunStore) -> None:
    try:
        store.root.mkdir(parents=True, exist_ok=True)
        probe = store.root / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise LabreportError(f"run store {store.root} is not a writable folder ({e.strerror})") from None


def _train_with_oom_fallback(run: Run, data, dev, store: RunStore, base, observer: Observer, label: str) -> dict:
    """train(), retried with half the micro-batch (gradient accumulation keeps the effective batch)
    after a CUDA out-of-memory error, down to one image per micro-batch."""
    import torch

    from labreport.engine.trainer import train

    options = base
    while True:
        try:
            return train(run.spec, data, dev, store, options=options, observer=observer, label=label)
        except torch.OutOfMemoryError:
            pass  # handled below, once the traceback no longer pins the GPU tensors
        micro = (options.micro_batch or run.spec.batch_size) // 2
        if micro < 1:
            raise RuntimeError("out of memory even with a micro-batch of 1 image")
        if dev.type == "cuda":
            gc.collect()  # tensors held only by reference cycles (the failed step's frames) go first
            torch.cuda.empty_cache()
        LOG.warning("%s: out of memory; retrying with micro-batch %d and gradient accumulation (effective batch %d)",
                    run.label, micro, run.spec.batch_size)
        options = dataclasses.replace(base, micro_batch=micro)


class LeaseKeeper(Observer):
    """Refreshes the run's lease after every epoch, and every HEARTBEAT_EVERY_S from the step loop: an
    epoch on a CPU can last longer than a lease's stale_after, and a lease refreshed only between
    epochs would then be taken over by another worker while this one still trains."""

    def __init__(self, store: RunStore, key: str):
        self.store, self.key = store, key
        self.last = time.monotonic()

    def step(self, epoch: int, step: int) -> None:
        if time.monotonic() - self.last >= HEARTBEAT_EVERY_S:
            self.beat()

    def epoch_done(self, record: dict) -> None:
        self.beat()

    def beat(self) -> None:
        self.store.heartbeat(self.key)
        self.last = time.monotonic()


class _Borrowed(Observer):
    """An observer another owner closes (the user's progress, which lasts for every run): passed on, never closed."""

    def __init__(self, inner: Observer):
        self.inner = inner

    def run_started(self, *args) -> None:
        self.inner.run_started(*args)

    def step(self, epoch: int, step: int) -> None:
        self.inner.step(epoch, step)

    def epoch_done(self, record: dict) -> None:
        self.inner.epoch_done(record)
