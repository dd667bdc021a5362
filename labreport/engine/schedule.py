"""The learning-rate schedule as one pure function of the step (no torch scheduler object to save).

Because the lr is a function of the global step alone, a resumed run needs only its step count to
be back on schedule, and the schedule can be unit-tested on hand-picked steps.
"""

from __future__ import annotations

import math

from labreport.spec import TrainSpec


def total_steps(spec: TrainSpec, steps_per_epoch: int) -> int:
    return spec.max_iters or spec.epochs * steps_per_epoch  # max_iters > 0 replaces epochs


def lr_at(spec: TrainSpec, step: int, steps_per_epoch: int) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    # 1) where we are, in the unit the milestones and warm-up are written in
    per_unit = 1 if spec.schedule_unit == "iter" else steps_per_epoch
    t = step / per_unit
    # 2) warm-up: a constant low lr first (He et al. 2015 use 0.01 for ResNet-110 for ~400 iterations)
    if spec.warmup and t < spec.warmup and spec.warmup_lr > 0:
        return spec.warmup_lr
    # 3) the schedule proper
    if spec.schedule == "step":  # lr * gamma^(milestones passed), e.g. /10 at 32k and 48k iterations
        passed = sum(1 for m in spec.milestones if t >= m)
        return spec.lr * spec.gamma ** passed
    if spec.schedule == "cosine":  # from lr down to 0 over the whole run
        progress = min(step / max(total_steps(spec, steps_per_epoch), 1), 1.0)
        return 0.5 * spec.lr * (1.0 + math.cos(math.pi * progress))
    return spec.lr


def describe(spec: TrainSpec) -> str:
    """The schedule in one line, in the units it is written in ("" for a constant lr), for `plan`."""
    unit = "iter" if spec.schedule_unit == "iter" else "epochs"
    parts = []
    if spec.warmup and spec.warmup_lr > 0:
        parts.append(f"warm-up lr {spec.warmup_lr:g} for {spec.warmup} {unit}")
    if spec.schedule == "step":
        parts.append(f"lr x{spec.gamma:g} at {', '.join(map(str, spec.milestones))} {unit}")
    elif spec.schedule == "cosine":
        parts.append("cosine decay to 0")
    if spec.max_iters:
        parts.append(f"stop at {spec.max_iters} iter")
    return "; ".join(parts)
