"""train(spec, data, device, store) -> result: one run, resumable from its last finished epoch.

    set up       the model, optimizer, loss scaler and data generator, from the run's seed
    resume       from the newest readable checkpoint, if any: every state, exactly
    compile      torch.compile as [run] compile asks (each run as in a fresh process)
    each epoch   train (epoch.py), evaluate, record, checkpoint
    finish       the result: the epoch chosen on validation, its test predictions, provenance

The checkpoint is the single source of truth: it carries the model, the optimizer, every RNG
state, the step and the history, so a resumed run continues exactly where the last finished epoch
left it (bit-identical on CPU with deterministic = true). The epoch whose number is reported is
chosen on the validation split; the test set is evaluated every epoch only to draw the curves and
to report the test accuracy of that chosen epoch.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import torch

from labreport.engine import hostmem
from labreport.engine.device import RunOptions, compile_mode, cudagraph_skips, peak_memory_mib, provenance
from labreport.engine.epoch import EVAL_BATCH, Diverged, EpochSums, Stepper, evaluate, train_epoch
from labreport.engine.networks import build_model, count_parameters
from labreport.engine.observe import Observer
from labreport.engine.precision import grad_scaler, resolve_precision
from labreport.engine.splits import Prepared, Split
from labreport.faults import point as fault_point
from labreport.logs import LOG
from labreport.spec import TRAIN_VERSION, TrainSpec
from labreport.store import RunStore, legacy
from labreport.store.records import EpochRecord, Result, ResultStatus


@dataclass(frozen=True)
class Setup:
    """What a run is, fixed for its life."""

    spec: TrainSpec
    options: RunOptions
    name: str  # how messages call the run
    n_epochs: int  # epochs it trains (with max_iters: as many as the steps take, the last one partial)


@dataclass
class Progress:
    """How far a run has come: what its checkpoint keeps besides the live objects' states."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken
    history: list[EpochRecord] = field(default_factory=list)
    best_val: float | None = None  # the chosen epoch so far: its validation accuracy, number, test predictions
    best_epoch: int | None = None
    best_pred: torch.Tensor | None = None
    oom_events: list[dict] = field(default_factory=list)
    status: ResultStatus = "completed"
    diverged: Diverged | None = None


@dataclass
class TrainState:
    """One run in training, in three parts: what it is (setup), what it computes with (live: the
    model, optimizer, loss scaler and data generator the epoch loop steps, epoch.Stepper) and how far
    it has come (progress). Owned by this module; the epoch loop only reads `live`."""

    setup: Setup
    live: Stepper
    progress: Progress = field(default_factory=Progress)
    graph_skips0: int | None = None  # inductor's CUDA-graph skips before this run compiled


def train(spec: TrainSpec, data: Prepared, device: torch.device, store: RunStore, *,
          options: RunOptions = RunOptions(), observer: Observer = Observer(), label: str = "") -> Result:
    """Train one run (or resume it from the store) and write its result. Returns the result.

    Raises torch.OutOfMemoryError to the caller (the runner retries with a smaller micro-batch).
    """
    precision = resolve_precision(spec.precision, device, spec.norm)
    if device.type == "cpu":
        hostmem.keep_freed_memory()  # no page faults per step or eval batch (measured in hostmem.py)
    store.write_spec(spec.key, spec.to_dict(), TRAIN_VERSION)
    with _determinism(spec.deterministic, device):
        state = _set_up(spec, data, device, precision, options, label or spec.key)
        _resume(state, store)
        _compile(state)
        run, live, done = state.setup, state.live, state.progress
        observer.run_started(run.name, spec.key, run.n_epochs, done.epoch, live.steps_per_epoch)
        while done.epoch < run.n_epochs:
            try:
                sums = train_epoch(live, data.train, done.epoch, done.step, observer)
            except Diverged as d:
                done.step, done.status, done.diverged = d.taken, "diverged", d
                LOG.warning("%s: %s; recorded as diverged", run.name, d)
                break
            done.step += sums.steps
            record = _record_epoch(state, data, sums)
            _checkpoint(state, store)
            observer.epoch_done(record)  # once it is safe: a crash from here on loses nothing of it
    result = _result(state, data)
    store.write_history(spec.key, state.progress.history)
    fault_point("result.before")  # test hook: a kill between the last checkpoint and the result
    store.write_result(spec.key, result)
    return result


def measure_speed(spec: TrainSpec, device: torch.device, *, num_classes: int, options: RunOptions = RunOptions(),
                  steps: int = 2, eval_images: int = 256) -> tuple[float, float]:
    """(seconds per trained image, seconds per evaluated image) of `spec` on `device`, timed on the
    trainer's own set-up, steps and evaluation over random images (the speed does not depend on the
    pixels): one warm-up step (kernel selection, allocator growth), then the quickest of `steps`
    steps timed one by one (another process busy on the machine meanwhile only adds time) and one
    timed evaluation batch of `eval_images`. Nothing is written; the caller's RNG state is kept."""
    precision = resolve_precision(spec.precision, device, spec.norm)
    if device.type == "cpu":
        hostmem.keep_freed_memory()  # as train() runs: the figure must be train()'s
    gen = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen).to(device)
        return Split(x, torch.randint(0, num_classes, (n,), generator=gen).to(device), (0.5,) * 3, (0.25,) * 3)

    batch = spec.batch_size
    data = Prepared(split(batch), split(eval_images), split(0), "", False, num_classes)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            _determinism(spec.deterministic, device):
        state = _set_up(spec, data, device, precision, options, spec.key)
        _compile(state)
        _timed_epoch(state.live, data.train)  # one step: the warm-up
        train_s = min(_timed_epoch(state.live, data.train) for _ in range(steps)) / batch
        t0 = time.perf_counter()
        evaluate(state.live.model, data.val, precision, options.channels_last, eval_images)
        return train_s, (time.perf_counter() - t0) / eval_images


def _timed_epoch(live: Stepper, split: Split) -> float:
    """Seconds of one pass over `split`; a run that diverges meanwhile (a BN-less net at init) is
    timed as far as it came: its steps cost the same."""
    t0 = time.perf_counter()
    try:
        train_epoch(live, split, 0, 0, Observer())
    except Diverged:
        pass
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# The phases
# --------------------------------------------------------------------------------------------
def _set_up(spec: TrainSpec, data: Prepared, device: torch.device, precision: str, options: RunOptions,
            name: str) -> TrainState:
    """A fresh run: the model's initial weights and the data generator from the run's seed."""
    torch.manual_seed(spec.seed)  # the model's initial weights and dropout masks
    model = build_model(spec.model, num_classes=data.num_classes, norm=spec.norm, dropout=spec.dropout, init=spec.init,
                        model_args=spec.model_args.as_dict(), lab_dir=options.lab_dir).to(device)
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    n_train = len(data.train.y)
    steps_per_epoch = n_train // spec.batch_size  # the last partial batch is dropped
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {spec.batch_size} is larger than the {n_train} training images")
    # max_iters > 0 replaces epochs: as many epochs as it takes, the last one stopping at max_iters
    n_epochs = -(-spec.max_iters // steps_per_epoch) if spec.max_iters else spec.epochs
    live = Stepper(spec, device, precision, options.channels_last, model, _make_optimizer(spec, model.parameters()),
                   grad_scaler(device, precision), torch.Generator(device=device).manual_seed(spec.seed),
                   steps_per_epoch, micro=options.micro_batch or spec.batch_size)
    return TrainState(Setup(spec, options, name, n_epochs), live)


def _resume(state: TrainState, store: RunStore) -> None:
    """Continue from the newest readable checkpoint, if there is one."""
    spec, micro = state.setup.spec, state.setup.options.micro_batch
    ckpt, warnings = store.load_checkpoint(spec.key, map_location=state.live.device)
    for w in warnings:
        LOG.warning(w)
    if ckpt is not None:
        _restore(state, ckpt)
    if micro and micro < spec.batch_size and not any(e["micro_batch"] == micro for e in state.progress.oom_events):
        state.progress.oom_events.append({"epoch": state.progress.epoch, "micro_batch": micro})


def _restore(state: TrainState, ckpt: dict) -> None:
    live, done, name = state.live, state.progress, state.setup.name
    ckpt = legacy.checkpoint(ckpt)  # one an older labreport wrote, with today's keys
    live.model.load_state_dict(ckpt["model"])
    live.opt.load_state_dict(ckpt["optimizer"])
    if not _set_rng_state(ckpt["rng"], live.device, live.gen):
        LOG.warning("%s: the checkpoint was made on another device type; data order and augmentation go on from "
                    "the seed (not bit-identical)", name)
    done.epoch, done.step, done.history = ckpt["epoch"], ckpt["step"], list(ckpt["history"])
    live.micro = min(live.micro, ckpt["micro_batch"] or live.micro)
    done.oom_events = list(ckpt["oom_events"])
    if live.scaler.is_enabled() and ckpt["scaler"]:  # the loss scale goes on where it was
        live.scaler.load_state_dict(ckpt["scaler"])
    before = done.history[-1].get("precision") if done.history else None  # None: see store/legacy.py
    if before not in (None, live.precision):
        LOG.warning("%s: trained in %s so far, goes on in %s on this device (each epoch's record says which)",
                    name, before, live.precision)
    done.best_val, done.best_epoch, done.best_pred = ckpt["best_val"], ckpt["best_epoch"], ckpt["best_test_pred"]


def _compile(state: TrainState) -> None:
    """torch.compile the model as [run] compile asks; evaluation stays eager.

    Training steps have one static shape (the last partial batch is dropped; micro-batches add at
    most one more): dynamic=False gives one graph per shape. Evaluation's 1000-image batches amortise
    the launches, and its other mode (BN running statistics) and last partial batch would each
    compile again. Each run compiles as in a fresh process: a matrix of runs in one process would
    otherwise pile up graphs up to dynamo's recompile limit, beyond which it silently runs eager,
    and keep every finished run's CUDA-graph memory pool."""
    live = state.live
    live.mode = compile_mode(state.setup.options.compile)
    if live.mode:
        torch.compiler.reset()
    live.fwd = torch.compile(live.model, mode=live.mode, dynamic=False) if live.mode else live.model
    state.graph_skips0 = cudagraph_skips() if live.mode == "reduce-overhead" else None
    live.params = [p for p in live.model.parameters() if p.requires_grad]


def _record_epoch(state: TrainState, data: Prepared, sums: EpochSums) -> EpochRecord:
    """Evaluate the epoch just trained, keep the test predictions of the best epoch so far, and
    append the epoch's record to the history."""
    live, done, batch = state.live, state.progress, state.setup.spec.batch_size
    # after an OOM the evaluation batch shrinks with the micro-batch: it may be what ran out
    eval_batch = EVAL_BATCH if live.micro == batch else max(1, min(EVAL_BATCH, 2 * live.micro))
    val_loss, val_acc = evaluate(live.model, data.val, live.precision, live.channels_last, eval_batch)
    preds: list = []
    test_loss, test_acc = evaluate(live.model, data.test, live.precision, live.channels_last, eval_batch, preds)
    done.epoch += 1
    # the test predictions of the epoch summarize() will choose: the best validation accuracy,
    # earliest of ties (strictly greater), or the last epoch without validation
    if preds and (val_acc is None or done.best_val is None or val_acc > done.best_val):
        done.best_val, done.best_epoch, done.best_pred = val_acc, done.epoch, preds[0]
    alloc, reserved = peak_memory_mib(live.device)
    seen = sums.steps * batch
    record: EpochRecord = {
        "epoch": done.epoch, "lr": sums.lr, "train_loss": sums.loss / seen, "train_acc": sums.correct / seen,
        "val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc,
        "train_time_s": sums.train_time_s, "epoch_time_s": time.perf_counter() - sums.t0,
        "images_per_s": seen / sums.train_time_s,
        # over the steps that were taken (a skipped step's norm is inf)
        "grad_norm_mean": sums.gnorm_sum / max(sums.steps - sums.skipped, 1), "grad_norm_max": sums.gnorm_max,
        "steps": done.step, "mem_alloc_mib": alloc, "mem_reserved_mib": reserved, "micro_batch": live.micro,
        "precision": live.precision, "skipped_steps": sums.skipped,
        "loss_scale": live.scaler.get_scale() if live.scaler.is_enabled() else None,
    }
    done.history.append(record)
    return record


def _checkpoint(state: TrainState, store: RunStore) -> None:
    """After every epoch: every state the run needs to go on (an epoch is what a crash may lose)."""
    live, done, key = state.live, state.progress, state.setup.spec.key
    store.save_checkpoint(key, {
        "epoch": done.epoch, "step": done.step, "history": done.history, "model": live.model.state_dict(),
        "optimizer": live.opt.state_dict(), "rng": _rng_state(live.device, live.gen),
        "micro_batch": live.micro, "oom_events": done.oom_events,
        "scaler": live.scaler.state_dict(),  # {} unless fp16: the loss scale and its growth counter
        "best_val": done.best_val, "best_epoch": done.best_epoch, "best_test_pred": done.best_pred,
    })
    store.write_history(key, done.history)
    LOG.debug("%s: epoch %d checkpointed in %s", key, done.epoch, store.run_dir(key))


def _result(state: TrainState, data: Prepared) -> Result:
    """The run's result.json: its headline numbers, how and where it was computed."""
    run, live, done = state.setup, state.live, state.progress
    d = done.diverged
    result = summarize(run.spec, done.history, done.status, d.epoch if d else None, d.reason if d else None)
    skips0 = state.graph_skips0
    graph_skips = None if skips0 is None or (now := cudagraph_skips()) is None else now - skips0
    if live.mode:
        live.fwd = None
        torch.compiler.reset()  # frees this run's graphs (and their CUDA memory pool) now
    result.update(provenance=provenance(live.device, data.fingerprint, data.official, live.precision, run.options,
                                        graph_skips),
                  oom_events=done.oom_events, params=count_parameters(live.model), steps=done.step,
                  skipped_steps=(d.skipped if d else 0) + sum(h.get("skipped_steps", 0) for h in done.history),
                  n_train=len(data.train.y), n_val=len(data.val.y), n_test=len(data.test.y))
    if done.best_pred is not None and done.best_epoch == result["best_epoch"]:
        # per-image test predictions of the chosen epoch, and the labels they are scored against,
        # so that two configurations can be compared on the same images (science.compare)
        result.update(test_predictions=digits(done.best_pred), test_labels=digits(data.test.y.cpu()))
    return result


def summarize(spec: TrainSpec, history: list[dict], status: str, diverged_at: int | None,
              diverged_reason: str | None = None) -> dict:
    """The run's headline numbers. The epoch is chosen on validation accuracy (earliest of ties);
    with no validation split the last epoch is taken, never the best test epoch."""
    res: dict = {"key": spec.key, "spec": spec.to_dict(), "status": status, "epochs_run": len(history),
                 "diverged_at_epoch": diverged_at, "diverged_reason": diverged_reason,
                 "total_time_s": sum(h["epoch_time_s"] for h in history)}
    if not history:
        res.update(best_epoch=None, selected_by=None, best_val_acc=None, test_acc_at_best=None,
                   final_test_acc=None, final_train_acc=None, final_val_acc=None)
        return res
    has_val = history[0]["val_acc"] is not None
    best = max(history, key=lambda h: (h["val_acc"], -h["epoch"])) if has_val else history[-1]
    last = history[-1]
    res.update(best_epoch=best["epoch"], selected_by="val_acc" if has_val else "last_epoch",
               best_val_acc=best["val_acc"] if has_val else None, test_acc_at_best=best["test_acc"],
               final_test_acc=last["test_acc"], final_train_acc=last["train_acc"],
               final_val_acc=last["val_acc"] if has_val else None,
               mean_epoch_time_s=res["total_time_s"] / len(history),
               peak_mem_alloc_mib=max((h["mem_alloc_mib"] or 0) for h in history) or None,
               peak_mem_reserved_mib=max((h["mem_reserved_mib"] or 0) for h in history) or None)
    return res


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def digits(classes) -> str:
    """Class indices as one character each, chr(48 + class): the digits 0..9 for CIFAR-10 (10,000
    test predictions in 10 kB of JSON); CIFAR-100's classes 10..99 continue past '9' (':', ';', ...,
    the last 21 escaped by JSON). A per-character comparison is a per-image one (stats.discordant)."""
    return "".join(map(chr, (48 + c for c in classes.tolist())))


def _make_optimizer(spec: TrainSpec, params) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov,
                               weight_decay=spec.weight_decay)
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)  # L2, as the lab states


@contextlib.contextmanager
def _determinism(on: bool, device: torch.device):
    """deterministic = true: deterministic kernels for the duration of the run, restored after."""
    old_det = torch.are_deterministic_algorithms_enabled()
    old_bench = torch.backends.cudnn.benchmark
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS for determinism
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.benchmark = device.type == "cuda" and not on  # autotune conv algorithms
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.backends.cudnn.benchmark = old_bench


def _rng_state(device: torch.device, gen: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device, gen: torch.Generator) -> bool:
    """Restore the RNG states. They must be CPU ByteTensors, whatever map_location moved them to.
    False when the data generator's state is from another device type (a CUDA run resumed on a CPU)."""
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
    try:
        gen.set_state(state["data"].cpu())
    except RuntimeError:  # the CPU and CUDA generators' states differ in size
        return False
    return True
