"""One epoch of training, one optimizer step at a time, and evaluation on a split.

The whole data set lives on the training device as uint8; batches are cut, normalised and
augmented there as tensor ops (see data.py), so a step is a few lines and the device never waits
for Python. Sums are kept on the device (`Sums`) and read once per epoch: reading a CUDA tensor
waits for the GPU. A run diverges when its loss (or, without loss scaling, its gradient norm)
is not finite: `Diverged`, a valid outcome of a run that the trainer records, not a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from labreport.engine.data import iterate_batches
from labreport.engine.precision import StepWatch, autocast, fp32_logits_max
from labreport.engine.schedule import lr_at
from labreport.engine.splits import Split
from labreport.engine.observe import Observer
from labreport.faults import point as fault_point
from labreport.spec import TrainSpec

EVAL_BATCH = 1000  # images per forward pass when evaluating (no gradients: memory is small)
SYNC_EVERY = 32  # steps between reads of the divergence watch on CUDA (a read waits for the GPU)


class Diverged(Exception):
    """The loss (or, without loss scaling, the gradient norm) became NaN or infinite: a valid
    outcome of a run, not a crash. The message is the reason (precision.divergence_reason)."""

    def __init__(self, epoch: int, step: int, reason: str, skipped: int = 0, taken: int | None = None):
        super().__init__(reason)
        self.epoch, self.step, self.reason = epoch, step, reason
        self.skipped = skipped  # fp16 steps skipped in the unfinished epoch: in no epoch's record
        self.taken = step if taken is None else taken  # optimizer steps the run had taken when it stopped


@dataclass
class Sums:
    """What an epoch adds up, on the device."""

    loss: torch.Tensor  # sum of the per-image cross-entropy, float64
    correct: torch.Tensor  # images classified right
    gnorm: torch.Tensor  # sum of the gradient norms of the steps taken, float64
    gnorm_max: torch.Tensor
    skipped: torch.Tensor  # fp16 steps skipped on overflow

    @classmethod
    def zeros(cls, device: torch.device) -> "Sums":
        def z(dtype):
            return torch.zeros((), device=device, dtype=dtype)
        return cls(z(torch.float64), z(torch.int64), z(torch.float64), z(torch.float32), z(torch.int64))


@dataclass
class EpochSums:
    """An epoch's training, read off the device: the inputs of its record."""

    t0: float  # time.perf_counter() at the epoch's start
    train_time_s: float  # the training steps alone
    lr: float  # of the epoch's last step
    steps: int  # optimizer steps taken (skipped ones included)
    loss: float
    correct: int
    gnorm_sum: float
    gnorm_max: float
    skipped: int


@dataclass
class Stepper:
    """The live objects an optimizer step uses. The trainer builds it (trainer.TrainState.live) and
    the epoch loop only reads it: the loop keeps no state of the run, and says what it did in its
    EpochSums (or Diverged), from which the trainer advances its own progress."""

    spec: TrainSpec  # the batch size, augmentation, max_iters and learning-rate schedule
    device: torch.device
    precision: str  # what "auto" resolved to on this device
    channels_last: bool
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # fp16 only; otherwise a pass-through
    gen: torch.Generator  # data order and augmentation
    steps_per_epoch: int
    micro: int  # images per forward pass (the batch, unless an out-of-memory retry halved it)
    fwd: Callable | None = None  # the model, or its compiled form
    mode: str | None = None  # torch.compile's mode ("reduce-overhead": CUDA graphs), None: eager
    params: list = field(default_factory=list)  # the trained parameters, for the gradient norm


def train_epoch(s: Stepper, train: Split, epochs_done: int, step: int, observer: Observer) -> EpochSums:
    """One pass over the training split after `epochs_done` epochs and `step` optimizer steps.
    Raises Diverged (with the steps it took)."""
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)  # the epoch's peak: its record's mem_*_mib
    t0 = time.perf_counter()
    s.model.train()
    sums, watch = Sums.zeros(s.device), StepWatch(s.device)
    start, lr = step, 0.0
    batches = iterate_batches(train.x, train.y, s.spec.batch_size, shuffle=True, augment=s.spec.augment,
                              generator=s.gen, channels_last=s.channels_last, drop_last=True,
                              mean=train.mean, std=train.std)
    for i, (x, y) in enumerate(batches):
        if s.spec.max_iters and step >= s.spec.max_iters:
            break
        lr = lr_at(s.spec, step, s.steps_per_epoch)
        for g in s.opt.param_groups:
            g["lr"] = lr
        _step(s, x, y, sums, watch, step)
        if _must_read(s, i, step):
            bad = watch.divergence(epochs_done + 1, s.precision, s.scaler.is_enabled(),
                                   lambda: fp32_logits_max(s.model, x.split(s.micro)))
            if bad is not None:
                raise Diverged(epochs_done + 1, *bad, skipped=int(sums.skipped.item()), taken=step)
        s.scaler.step(s.opt)  # fp16: skipped when the gradients overflowed; else opt.step()
        s.scaler.update()  # fp16: the scale halves after a skip, doubles after 2000 clean steps
        step += 1
        fault_point("train.step")  # test hook: a kill mid-epoch
        observer.step(epochs_done, i + 1)
    return EpochSums(t0, time.perf_counter() - t0, lr, step - start, sums.loss.item(), int(sums.correct.item()),
                     sums.gnorm.item(), sums.gnorm_max.item(), int(sums.skipped.item()))


def _step(s: Stepper, x: torch.Tensor, y: torch.Tensor, sums: Sums, watch: StepWatch, step: int) -> None:
    """Forward and backward over the batch's micro-batches (their gradients add up to the batch's
    mean), then the gradient norm and the finiteness checks; the optimizer step is the caller's."""
    s.opt.zero_grad(set_to_none=True)
    loss_ok = logits_ok = torch.ones((), device=s.device, dtype=torch.bool)
    for xm, ym in zip(x.split(s.micro), y.split(s.micro)):
        if s.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last graph's outputs are consumed
        with autocast(s.device, s.precision):
            out = s.fwd(xm)
        loss = F.cross_entropy(out.float(), ym)
        s.scaler.scale(loss * (len(ym) / len(y))).backward()  # the mean over the whole batch
        sums.loss += loss.detach().double() * len(ym)
        sums.correct += (out.argmax(1) == ym).sum()
        loss_ok = loss_ok & torch.isfinite(loss.detach())
        logits_ok = logits_ok & torch.isfinite(out.detach()).all()
    s.scaler.unscale_(s.opt)  # fp16: the true gradients, so their norm means what it says
    gnorm = torch.nn.utils.get_total_norm([p.grad for p in s.params if p.grad is not None])
    grad_ok = torch.isfinite(gnorm)
    watch.update(step, loss_ok, logits_ok, grad_ok)
    if s.scaler.is_enabled():  # an overflow of the scaled gradients: the scaler skips the step
        sums.skipped += (~grad_ok & loss_ok).long()
    sums.gnorm += torch.where(grad_ok, gnorm.double(), 0.0)
    sums.gnorm_max = torch.maximum(sums.gnorm_max, torch.where(grad_ok, gnorm.float(), 0.0))


def _must_read(s: Stepper, i: int, step: int) -> bool:
    """Whether to read the divergence watch after batch i: every step on a CPU or under loss
    scaling (which syncs in every step anyway), else every SYNC_EVERY steps and at the epoch's end."""
    return (s.device.type == "cpu" or s.scaler.is_enabled() or i % SYNC_EVERY == SYNC_EVERY - 1
            or i == s.steps_per_epoch - 1 or step + 1 == s.spec.max_iters)


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
                                channels_last=channels_last, mean=split.mean, std=split.std):
        with autocast(x.device, precision):
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
        pred = out.argmax(1)
        correct += (pred == y).sum()
        preds.append(pred)
    if predictions is not None:
        predictions.append(torch.cat(preds).to(torch.uint8).cpu())
    return loss_sum.item() / n, correct.item() / n
