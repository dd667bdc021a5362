"""One epoch of training, one optimizer step at a time, and evaluation on a split.

The whole data set lives on the training device as uint8; batches are cut, normalised and
augmented there as tensor ops (see data.py), so a step is a few lines and the device never waits
for Python. Sums are kept on the device (`Sums`) and read once per epoch: reading a CUDA tensor
waits for the GPU. A run diverges when its loss (or, without loss scaling, its gradient norm)
is not finite: `Diverged`, a valid outcome of a run that the trainer records, not a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from labreport.engine.data import iterate_batches
from labreport.engine.precision import StepWatch, autocast, fp32_logits_max
from labreport.engine.schedule import lr_at
from labreport.engine.splits import Split
from labreport.faults import point as fault_point

EVAL_BATCH = 1000  # images per forward pass when evaluating (no gradients: memory is small)
SYNC_EVERY = 32  # steps between reads of the divergence watch on CUDA (a read waits for the GPU)


class Diverged(Exception):
    """The loss (or, without loss scaling, the gradient norm) became NaN or infinite: a valid
    outcome of a run, not a crash. The message is the reason (precision.divergence_reason)."""

    def __init__(self, epoch: int, step: int, reason: str, skipped: int = 0):
        super().__init__(reason)
        self.epoch, self.step, self.reason = epoch, step, reason
        self.skipped = skipped  # fp16 steps skipped in the unfinished epoch: in no epoch's record


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


def train_epoch(run, train: Split, reporter) -> EpochSums:
    """One pass over the training split (`run` is the trainer's _Run). Raises Diverged."""
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)  # the epoch's peak: its record's mem_*_mib
    t0 = time.perf_counter()
    run.model.train()
    sums, watch = Sums.zeros(run.device), StepWatch(run.device)
    start, lr = run.step, 0.0
    batches = iterate_batches(train.x, train.y, run.spec.batch_size, shuffle=True, augment=run.spec.augment,
                              generator=run.gen, channels_last=run.options.channels_last, drop_last=True,
                              mean=train.mean, std=train.std)
    for i, (x, y) in enumerate(batches):
        if run.spec.max_iters and run.step >= run.spec.max_iters:
            break
        lr = lr_at(run.spec, run.step, run.steps_per_epoch)
        for g in run.opt.param_groups:
            g["lr"] = lr
        _step(run, x, y, sums, watch)
        if _must_read(run, i):
            bad = watch.divergence(run.epoch + 1, run.precision, run.scaler.is_enabled(),
                                   lambda: fp32_logits_max(run.model, x.split(run.micro)))
            if bad is not None:
                raise Diverged(run.epoch + 1, *bad, skipped=int(sums.skipped.item()))
        run.scaler.step(run.opt)  # fp16: skipped when the gradients overflowed; else opt.step()
        run.scaler.update()  # fp16: the scale halves after a skip, doubles after 2000 clean steps
        run.step += 1
        fault_point("train.step")  # test hook: a kill mid-epoch
        reporter.step(run.epoch, i + 1)
    return EpochSums(t0, time.perf_counter() - t0, lr, run.step - start, sums.loss.item(), int(sums.correct.item()),
                     sums.gnorm.item(), sums.gnorm_max.item(), int(sums.skipped.item()))


def _step(run, x: torch.Tensor, y: torch.Tensor, sums: Sums, watch: StepWatch) -> None:
    """Forward and backward over the batch's micro-batches (their gradients add up to the batch's
    mean), then the gradient norm and the finiteness checks; the optimizer step is the caller's."""
    run.opt.zero_grad(set_to_none=True)
    loss_ok = logits_ok = torch.ones((), device=run.device, dtype=torch.bool)
    for xm, ym in zip(x.split(run.micro), y.split(run.micro)):
        if run.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last graph's outputs are consumed
        with autocast(run.device, run.precision):
            out = run.fwd(xm)
        loss = F.cross_entropy(out.float(), ym)
        run.scaler.scale(loss * (len(ym) / len(y))).backward()  # the mean over the whole batch
        sums.loss += loss.detach().double() * len(ym)
        sums.correct += (out.argmax(1) == ym).sum()
        loss_ok = loss_ok & torch.isfinite(loss.detach())
        logits_ok = logits_ok & torch.isfinite(out.detach()).all()
    run.scaler.unscale_(run.opt)  # fp16: the true gradients, so their norm means what it says
    gnorm = torch.nn.utils.get_total_norm([p.grad for p in run.params if p.grad is not None])
    grad_ok = torch.isfinite(gnorm)
    watch.update(run.step, loss_ok, logits_ok, grad_ok)
    if run.scaler.is_enabled():  # an overflow of the scaled gradients: the scaler skips the step
        sums.skipped += (~grad_ok & loss_ok).long()
    sums.gnorm += torch.where(grad_ok, gnorm.double(), 0.0)
    sums.gnorm_max = torch.maximum(sums.gnorm_max, torch.where(grad_ok, gnorm.float(), 0.0))


def _must_read(run, i: int) -> bool:
    """Whether to read the divergence watch after batch i: every step on a CPU or under loss
    scaling (which syncs in every step anyway), else every SYNC_EVERY steps and at the epoch's end."""
    return (run.device.type == "cpu" or run.scaler.is_enabled() or i % SYNC_EVERY == SYNC_EVERY - 1
            or i == run.steps_per_epoch - 1 or run.step + 1 == run.spec.max_iters)


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
