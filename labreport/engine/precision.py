"""Which floating-point precision a run trains in, and what its overflows mean.

`precision = "auto"` resolves here, from the device (type, compute capability) and the network's
normalisation; the explicit settings ("fp32", "bf16", "fp16") are kept as written. fp16 trains
with loss scaling (torch.amp.GradScaler): a step whose scaled gradients overflow is skipped and
the scale lowered, which is normal and not a divergence. A run diverges when its loss is not
finite; `divergence_reason` says so in words, and whether the precision's range was the cause.

The rule of `auto`, by compute capability:
  >= 8.0 (A100, H100, RTX 30xx/40xx): bf16 autocast, native there; fp32's exponent range.
  7.x (V100 7.0, Colab's T4 7.5): fp16 autocast + loss scaling: their tensor cores compute fp16
      (T4: 65 TFLOPS fp16 against 8 TFLOPS fp32) but only emulate bf16. Except norm = "none":
      a BN-less deep ResNet under He init has activations and logits of std ~1e8 at step 0
      (ResNet-110), far beyond fp16's largest value 65,504, so fp16 would overflow in the
      first forward pass and the BN claim would be decided by the GPU instead of by the
      network. BN-less runs get fp32 there.
  older GPUs and every CPU: fp32 (no fp16/bf16 tensor cores; CPU fp16/bf16 without AVX-512
      FP16/BF16 is slower than fp32).
So a BN-less run always trains with fp32's exponent range (fp32, TF32 convolutions or bf16),
wherever it runs: overflow, if it happens, is the network's and not the number format's.

Pure functions of hand-made inputs, except `resolve_precision` (asks torch for the capability).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch

FP16_MAX = 65_504.0  # largest finite float16: anything beyond becomes inf in an fp16 forward pass
PRECISIONS = ("fp32", "bf16", "fp16")  # what "auto" resolves to; the spec's choices add "auto"


def auto_precision(device_type: str, capability: tuple[int, int] | None, norm: str = "batch") -> str:
    """What precision = "auto" means for a network with `norm` on a device (see the module doc)."""
    if device_type != "cuda" or capability is None:
        return "fp32"
    cap = tuple(capability)
    if cap >= (8, 0):
        return "bf16"  # fp32's range: safe for BN-less networks too
    if cap >= (7, 0):
        return "fp16" if norm != "none" else "fp32"  # fp16's range is too small for BN-less activations
    return "fp32"


def resolve_precision(precision: str, device: torch.device, norm: str = "batch") -> str:
    """The spec's precision on this device: "auto" resolved, explicit settings kept."""
    if precision == "auto":
        return auto_precision(device.type, capability(device), norm)
    return precision


def capability(device: torch.device) -> tuple[int, int] | None:
    """CUDA compute capability (major, minor), None off CUDA."""
    return tuple(torch.cuda.get_device_capability(device)) if device.type == "cuda" else None


def autocast(device: torch.device, precision: str):
    """The autocast context of a forward pass: bf16/fp16 matmuls and convolutions, fp32 otherwise."""
    if precision in ("bf16", "fp16"):
        return torch.autocast(device_type=device.type,
                              dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (gradients below fp16's smallest normal would vanish); disabled, a
    pass-through, for fp32 and bf16 (bf16 has fp32's range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def divergence_reason(epoch: int, step: int, precision: str, *, loss_finite: bool,
                      logits_finite: bool = True, fp32_logits_max: float | None = None) -> str:
    """Why a run was stopped, in words. `step`: the run's optimizer step (0 = the first), `epoch`
    from 1; `loss_finite`: False when the loss was NaN/inf, True when only the gradient norm was
    (fp32/bf16 have no loss scaling to skip such a step); `logits_finite`: whether that step's
    forward pass gave finite logits; `fp32_logits_max`: the largest |logit| of the same batch
    recomputed in fp32 (None: not recomputed), which tells an fp16 overflow from a network
    whose outputs are not finite in any precision."""
    if loss_finite:
        return (f"non-finite gradient norm at epoch {epoch}, step {step} (the loss was finite): "
                f"the gradients overflowed {precision}'s range")
    text = f"non-finite loss at epoch {epoch}, step {step}"
    if logits_finite:
        return text
    if precision != "fp16":
        return text + f"; the logits themselves were not finite in {precision}"
    if fp32_logits_max is None:
        return text + f"; the fp16 logits were not finite (fp16's largest value is {FP16_MAX:,.0f})"
    if math.isfinite(fp32_logits_max):
        return text + (f"; a precision overflow: the fp16 forward pass went beyond fp16's largest value "
                       f"{FP16_MAX:,.0f}, while in fp32 the same batch gives finite logits (largest "
                       f"|logit| {fp32_logits_max:.3g})")
    return text + "; the logits are not finite in fp32 either: the network diverged, not only fp16"


@torch.no_grad()
def fp32_logits_max(model: torch.nn.Module, batches) -> float:
    """Largest |logit| over `batches` in fp32, the model as it is (train mode: BatchNorm on the
    batch's statistics, as in the step that failed). NaN when any logit is NaN."""
    return max(model(x).float().abs().max().item() for x in batches)


class StepWatch:
    """Per-step finiteness of the loss, the logits and the gradient norm, kept on the device: the
    first bad step of each kind is exact even when it is read only every 32 steps (a read syncs
    with the device; on a CPU, or under loss scaling, which syncs anyway, it is read every step)."""

    def __init__(self, device: torch.device):
        # the run's step of the first non-finite loss, logits, gradient norm (-1: none yet)
        self.first = torch.full((3,), -1, dtype=torch.int64, device=device)

    def update(self, step: int, loss_ok: torch.Tensor, logits_ok: torch.Tensor, grad_ok: torch.Tensor) -> None:
        bad = torch.stack([~loss_ok, ~logits_ok, ~grad_ok])
        self.first = torch.where((self.first < 0) & bad, step, self.first)

    def divergence(self, epoch: int, precision: str, scaled: bool,
                   fp32_logits: Callable[[], float] | None = None) -> tuple[int, str] | None:
        """(step, reason) when the run has diverged: a non-finite loss, or without loss scaling
        (`scaled` False) a non-finite gradient norm, which would poison the weights. Under loss
        scaling a non-finite gradient norm with a finite loss is a skipped step, not this.
        `fp32_logits`: recomputes the failing batch's largest |logit| in fp32 (asked for only
        when fp16 logits were not finite, and valid only for the step being checked)."""
        loss_at, logits_at, grad_at = self.first.tolist()
        if loss_at >= 0:
            logits_finite = logits_at != loss_at
            ref = fp32_logits() if fp32_logits and precision == "fp16" and not logits_finite else None
            return loss_at, divergence_reason(epoch, loss_at, precision, loss_finite=False,
                                              logits_finite=logits_finite, fp32_logits_max=ref)
        if grad_at >= 0 and not scaled:
            return grad_at, divergence_reason(epoch, grad_at, precision, loss_finite=True)
        return None
