"""train(spec, data, device, store) -> result: one run, resumable from its last finished epoch.

The whole data set lives on the training device as uint8; batches are cut, normalised and
augmented there as tensor ops (see data.py), so the loop body is a few lines and the device never
waits for Python. The checkpoint is the single source of truth: it carries the model, the
optimizer, every RNG state, the step and the history, so a resumed run continues exactly where
the last finished epoch left it (bit-identical on CPU with deterministic = true).

The epoch whose number is reported is chosen on the validation split; the test set is evaluated
every epoch only to draw the curves and to report the test accuracy of that chosen epoch.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from labreport.engine import hostmem
from labreport.engine.device import RunOptions, compile_mode, cudagraph_skips, peak_memory_mib, provenance
from labreport.spec import TRAIN_VERSION, TrainSpec
from labreport.engine.data import iterate_batches
from labreport.faults import point as fault_point
from labreport.engine.networks import build_model, count_parameters
from labreport.engine.precision import StepWatch, autocast, fp32_logits_max, grad_scaler, resolve_precision
from labreport.engine.schedule import lr_at
from labreport.engine.splits import Prepared, Split
from labreport.store import RunStore

EVAL_BATCH = 1000  # images per forward pass when evaluating (no gradients: memory is small)


class Diverged(Exception):
    """The loss (or, without loss scaling, the gradient norm) became NaN or infinite: a valid
    outcome of a run, not a crash. The message is the reason (precision.divergence_reason)."""

    def __init__(self, epoch: int, step: int, reason: str):
        super().__init__(reason)
        self.epoch, self.step, self.reason = epoch, step, reason


class Reporter(Protocol):
    def run_started(self, label: str, key: str, epochs: int, start_epoch: int, steps: int) -> None: ...
    def step(self, epoch: int, step: int) -> None: ...
    def epoch_done(self, record: dict) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    def run_started(self, *a, **k): pass
    def step(self, *a, **k): pass
    def epoch_done(self, *a, **k): pass
    def message(self, *a, **k): pass


# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, split: Split, precision: str, channels_last: bool,
             batch: int = EVAL_BATCH, predictions: list | None = None) -> tuple[float | None, float | None]:
    """Mean cross-entropy and accuracy over a split (None, None for an empty split). With a
    `predictions` list, the predicted class of every image (uint8, on the CPU) is appended to it."""
    n = len(split.y)
    if n == 0:
        return None, None
    model.eval()
    loss_sum = torch.zeros((), device=split.y.device, dtype=torch.float64)
    correct = torch.zeros((), device=split.y.device, dtype=torch.int64)
    preds = []
    for x, y in iterate_batches(split.x, split.y, batch, shuffle=False, augment=False, generator=None,
                                channels_last=channels_last):
        with autocast(x.device, precision):
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
        pred = out.argmax(1)
        correct += (pred == y).sum()
        preds.append(pred)
    if predictions is not None:
        predictions.append(torch.cat(preds).to(torch.uint8).cpu())
    return loss_sum.item() / n, correct.item() / n


def digits(classes) -> str:
    """Class indices 0..9 as a string of digits: 10,000 test predictions in 10 kB of JSON."""
    return bytes(int(c) + 48 for c in classes.tolist()).decode("ascii")


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


# --------------------------------------------------------------------------------------------
def train(spec: TrainSpec, data: Prepared, device: torch.device, store: RunStore, *,
          options: RunOptions = RunOptions(), reporter: Reporter = SilentReporter(), label: str = "",
          on_epoch: Callable[[int], None] | None = None) -> dict:
    """Train one run (or resume it from the store) and write its result. Returns the result.

    Raises torch.OutOfMemoryError to the caller (the runner retries with a smaller micro-batch).
    """
    key = spec.key
    precision = resolve_precision(spec.precision, device, spec.norm)
    if device.type == "cpu":
        hostmem.keep_freed_memory()  # no page faults per step or eval batch (measured in hostmem.py)
    store.write_spec(key, spec.to_dict(), TRAIN_VERSION)
    with _determinism(spec.deterministic, device):
        torch.manual_seed(spec.seed)  # the model's initial weights and dropout masks
        model = build_model(spec.model, norm=spec.norm, dropout=spec.dropout, init=spec.init).to(device)
        if options.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = _make_optimizer(spec, model.parameters())
        scaler = grad_scaler(device, precision)  # fp16 only; otherwise a pass-through
        gen = torch.Generator(device=device).manual_seed(spec.seed)  # data order and augmentation
        n_train = len(data.train.y)
        steps_per_epoch = n_train // spec.batch_size  # the last partial batch is dropped
        if steps_per_epoch == 0:
            raise ValueError(f"batch_size {spec.batch_size} is larger than the {n_train} training images")
        # max_iters > 0 replaces epochs: as many epochs as it takes, the last one stopping at max_iters
        n_epochs = -(-spec.max_iters // steps_per_epoch) if spec.max_iters else spec.epochs
        micro = options.micro_batch or spec.batch_size

        start_epoch, step, history = 0, 0, []
        # the chosen epoch so far: its validation accuracy, number and test predictions
        best_val, best_epoch, best_pred = None, None, None
        ckpt, warnings = store.load_checkpoint(key, map_location=device)
        for w in warnings:
            reporter.message(f"warning: {w}")
        oom_events: list[dict] = []
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            if not _set_rng_state(ckpt["rng"], device, gen):
                reporter.message(f"warning: {label or key}: the checkpoint was made on another device type; "
                                 "data order and augmentation go on from the seed (not bit-identical)")
            start_epoch, step, history = ckpt["epoch"], ckpt["step"], list(ckpt["history"])
            micro = min(micro, ckpt.get("micro_batch", micro))
            oom_events = list(ckpt.get("oom_events", []))
            if scaler.is_enabled() and ckpt.get("scaler"):  # the loss scale goes on where it was
                scaler.load_state_dict(ckpt["scaler"])
            before = history[-1].get("precision") if history else None  # None: a record from before issue 14
            if before not in (None, precision):
                reporter.message(f"warning: {label or key}: trained in {before} so far, goes on in {precision} "
                                 "on this device (each epoch's record says which)")
            best_val, best_epoch, best_pred = ckpt.get("best_val"), ckpt.get("best_epoch"), ckpt.get("best_test_pred")
            if best_epoch is None and history:  # a checkpoint from before predictions were kept
                best_val = max((h["val_acc"] for h in history if h["val_acc"] is not None), default=None)
        if options.micro_batch and options.micro_batch < spec.batch_size and not any(
                e["micro_batch"] == options.micro_batch for e in oom_events):
            oom_events.append({"epoch": start_epoch, "micro_batch": options.micro_batch})
        # Training steps have one static shape (the last partial batch is dropped; micro-batches
        # add at most one more shape): dynamic=False gives one graph per shape, no symbolic sizes.
        # Evaluation stays eager: 1000-image batches amortise the launches, and its other mode
        # (BN running statistics) and last partial batch would each compile again.
        # Each run compiles as in a fresh process: a matrix of runs in one process would otherwise pile
        # up graphs (each architecture, dropout rate, ... is another) up to dynamo's recompile limit,
        # beyond which it silently runs eager, and keep every finished run's CUDA-graph memory pool.
        mode = compile_mode(options.compile)
        if mode:
            torch.compiler.reset()
        fwd = torch.compile(model, mode=mode, dynamic=False) if mode else model
        graph_skips0 = cudagraph_skips() if mode == "reduce-overhead" else None
        params = [p for p in model.parameters() if p.requires_grad]
        reporter.run_started(label or key, key, n_epochs, start_epoch, steps_per_epoch)

        status, diverged_at, diverged_reason, skipped_total = "completed", None, None, 0
        for epoch in range(start_epoch, n_epochs):
            epoch_start_step = step
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            gnorm_sum = torch.zeros((), device=device, dtype=torch.float64)
            gnorm_max = torch.zeros((), device=device)
            skipped = torch.zeros((), device=device, dtype=torch.int64)  # fp16 steps skipped on overflow
            watch = StepWatch(device)
            batches = iterate_batches(data.train.x, data.train.y, spec.batch_size, shuffle=True,
                                      augment=spec.augment, generator=gen, channels_last=options.channels_last,
                                      drop_last=True)
            try:
                for i, (x, y) in enumerate(batches):
                    if spec.max_iters and step >= spec.max_iters:
                        break
                    lr = lr_at(spec, step, steps_per_epoch)
                    for g in opt.param_groups:
                        g["lr"] = lr
                    opt.zero_grad(set_to_none=True)
                    loss_ok = logits_ok = torch.ones((), device=device, dtype=torch.bool)
                    for xm, ym in zip(x.split(micro), y.split(micro)):
                        if mode == "reduce-overhead":
                            torch.compiler.cudagraph_mark_step_begin()  # the last graph's outputs are consumed
                        with autocast(device, precision):
                            out = fwd(xm)
                        loss = F.cross_entropy(out.float(), ym)
                        scaler.scale(loss * (len(ym) / len(y))).backward()  # the mean over the whole batch
                        loss_sum += loss.detach().double() * len(ym)
                        correct += (out.argmax(1) == ym).sum()
                        loss_ok = loss_ok & torch.isfinite(loss.detach())
                        logits_ok = logits_ok & torch.isfinite(out.detach()).all()
                    scaler.unscale_(opt)  # fp16: the true gradients, so their norm means what it says
                    gnorm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
                    grad_ok = torch.isfinite(gnorm)
                    watch.update(step, loss_ok, logits_ok, grad_ok)
                    if scaler.is_enabled():  # an overflow of the scaled gradients: the scaler skips the step
                        skipped += (~grad_ok & loss_ok).long()
                    gnorm_sum += torch.where(grad_ok, gnorm.double(), 0.0)
                    gnorm_max = torch.maximum(gnorm_max, torch.where(grad_ok, gnorm.float(), 0.0))
                    # Reading the watch syncs with the device: on CUDA only every 32 steps and at the
                    # end of the epoch, unless the scaler (which syncs in every step) is on anyway.
                    if device.type == "cpu" or scaler.is_enabled() or i % 32 == 31 \
                            or i == steps_per_epoch - 1 or step + 1 == spec.max_iters:
                        bad = watch.divergence(epoch + 1, precision, scaler.is_enabled(),
                                               lambda: fp32_logits_max(model, x.split(micro)))
                        if bad is not None:
                            raise Diverged(epoch + 1, *bad)
                    scaler.step(opt)  # fp16: skipped when the gradients overflowed; else opt.step()
                    scaler.update()  # fp16: the scale halves after a skip, doubles after 2000 clean steps
                    step += 1
                    fault_point("train.step")  # test hook: a kill mid-epoch
                    reporter.step(epoch, i + 1)
            except Diverged as d:
                status, diverged_at, diverged_reason = "diverged", d.epoch, d.reason
                skipped_total += int(skipped.item())  # the partial epoch's skips: not in the history
                reporter.message(f"{label or key}: {d}; recorded as diverged")
                break
            train_time = time.perf_counter() - t0
            epoch_steps = step - epoch_start_step  # steps_per_epoch, except in a max_iters run's last epoch
            seen = epoch_steps * spec.batch_size
            # after an OOM the evaluation batch shrinks with the micro-batch: it may be what ran out
            eval_batch = EVAL_BATCH if micro == spec.batch_size else max(1, min(EVAL_BATCH, 2 * micro))
            val_loss, val_acc = evaluate(model, data.val, precision, options.channels_last, eval_batch)
            preds: list = []
            test_loss, test_acc = evaluate(model, data.test, precision, options.channels_last, eval_batch, preds)
            # the test predictions of the epoch summarize() will choose: the best validation
            # accuracy, earliest of ties (strictly greater), or the last epoch without validation
            if preds and (val_acc is None or best_val is None or val_acc > best_val):
                best_val, best_epoch, best_pred = val_acc, epoch + 1, preds[0]
            alloc, reserved = peak_memory_mib(device)
            n_skipped = int(skipped.item())
            record = {
                "epoch": epoch + 1, "lr": lr, "train_loss": loss_sum.item() / seen,
                "train_acc": correct.item() / seen, "val_loss": val_loss, "val_acc": val_acc,
                "test_loss": test_loss, "test_acc": test_acc, "train_time_s": train_time,
                "epoch_time_s": time.perf_counter() - t0, "images_per_s": seen / train_time,
                # over the steps that were taken (a skipped step's norm is inf)
                "grad_norm_mean": gnorm_sum.item() / max(epoch_steps - n_skipped, 1),
                "grad_norm_max": gnorm_max.item(),
                "steps": step,  # optimizer steps so far, this epoch and skipped steps included
                "mem_alloc_mib": alloc, "mem_reserved_mib": reserved, "micro_batch": micro,
                "precision": precision, "skipped_steps": n_skipped,  # skipped: fp16 overflows, not divergence
                "loss_scale": scaler.get_scale() if scaler.is_enabled() else None,
            }
            history.append(record)
            reporter.epoch_done(record)
            if (epoch + 1) % options.checkpoint_every == 0 or epoch + 1 == n_epochs:
                store.save_checkpoint(key, {
                    "epoch": epoch + 1, "step": step, "history": history, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "rng": _rng_state(device, gen),
                    "micro_batch": micro, "oom_events": oom_events,
                    "scaler": scaler.state_dict(),  # {} unless fp16: the loss scale and its growth counter
                    "best_val": best_val, "best_epoch": best_epoch, "best_test_pred": best_pred,
                })
                store.write_history(key, history)
            if on_epoch is not None:
                on_epoch(epoch + 1)

    result = summarize(spec, history, status, diverged_at, diverged_reason)
    graph_skips = None if graph_skips0 is None or (now := cudagraph_skips()) is None else now - graph_skips0
    if mode:
        del fwd
        torch.compiler.reset()  # frees this run's graphs (and their CUDA memory pool) now
    result.update(provenance=provenance(device, data.fingerprint, data.official, precision, options, graph_skips), oom_events=oom_events,
                  params=count_parameters(model), steps=step,
                  skipped_steps=skipped_total + sum(h.get("skipped_steps", 0) for h in history),
                  n_train=n_train, n_val=len(data.val.y), n_test=len(data.test.y))
    if best_pred is not None and best_epoch == result["best_epoch"]:
        # per-image test predictions of the chosen epoch, and the labels they are scored against,
        # so that two configurations can be compared on the same images (analysis.mcnemar)
        result.update(test_predictions=digits(best_pred), test_labels=digits(data.test.y.cpu()))
    store.write_history(key, history)
    fault_point("result.before")  # test hook: a kill between the last checkpoint and the result
    store.write_result(key, result)
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
    if has_val:
        best = max(history, key=lambda h: (h["val_acc"], -h["epoch"]))
    else:
        best = history[-1]
    last = history[-1]
    res.update(best_epoch=best["epoch"], selected_by="val_acc" if has_val else "last_epoch",
               best_val_acc=best["val_acc"] if has_val else None, test_acc_at_best=best["test_acc"],
               final_test_acc=last["test_acc"], final_train_acc=last["train_acc"],
               final_val_acc=last["val_acc"] if has_val else None,
               mean_epoch_time_s=res["total_time_s"] / len(history),
               peak_mem_alloc_mib=max((h["mem_alloc_mib"] or 0) for h in history) or None,
               peak_mem_reserved_mib=max((h["mem_reserved_mib"] or 0) for h in history) or None)
    return res
