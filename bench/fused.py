"""Fused training of same-architecture runs: a measurement probe, not a labreport feature.

N members of one architecture (runs of the lab that differ only in seed, dropout and weight decay)
train as one stacked model: `torch.func.stack_module_state` stacks their weights and buffers,
`functional_call` + `vmap` run them as one network (each convolution becomes one grouped
convolution over the N members, each BatchNorm one call with per-member batch and running
statistics). What stays each member's own, as labreport's trainer (labreport/engine/trainer.py)
would give it in a run of its own:

- initial weights: `torch.manual_seed(seed)` then `build_model`, as the trainer's set-up;
- data order and augmentation: a `torch.Generator(device).manual_seed(seed)` per member, the
  trainer's data generator, driving labreport's own `iterate_batches` (engine/data.py);
- dropout masks: drawn outside vmap from a generator per member (vmap's own randomness is one
  generator for all) and passed into the network as a buffer. On a CPU the generator starts from
  the global RNG state the trainer's dropout would draw from after the model is built, and the
  mask is drawn as CPU dropout draws it (`bernoulli_(1 - p)`, divided by 1 - p): the same masks.
  On a GPU the trainer's dropout is one fused kernel with its own draws: same distribution,
  different masks;
- dropout rate and weight decay: the members' own (a member with p = 0 gets a mask of ones,
  where the trainer builds no Dropout and draws nothing);
- Adam: torch.optim.Adam's update (L2 weight decay added to the gradient, as the trainer's
  `Adam(weight_decay=...)`), on each member's own moments, with its own weight decay;
- divergence: a member whose loss or logits are not finite, or whose gradient norm is not, is
  frozen from that step on (weights and Adam state kept as they were), as the trainer stops a
  run that diverged. The loss is the sum of the members' mean losses, so no member's gradient
  depends on another's; there is no global gradient norm and no loss scale shared by members
  (fp16 loss scaling is not built: the probe trains fp32 or bf16).

The weights of all members live in one flat tensor, each parameter a (N, *shape) block of it, so
the optimizer and the per-member gradient norms are a few elementwise kernels whatever the
number of layers. tests/engine/test_fused_probe.py checks each member against the trainer.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from labreport.engine.data import iterate_batches
from labreport.engine.networks import build_model
from labreport.engine.precision import autocast
from labreport.engine.schedule import lr_at
from labreport.engine.splits import Split
from labreport.spec import TrainSpec

LAB_TOML = Path(__file__).resolve().parents[1] / "experiments.toml"
MEMBER_SETS = ("resnet110-nobn", "resnet110-bn", "resnet20-reg")  # experiments of the lab, most time first
VARYING = frozenset({"seed", "dropout", "weight_decay"})  # what members may differ in
# the trainer's optimizer is torch.optim.Adam(params, lr, weight_decay) with torch's other defaults
ADAM = torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults


def member_specs(name: str, config: Path = LAB_TOML) -> list[TrainSpec]:
    """The TrainSpecs of one experiment of the lab's matrix (no profile): one member per run."""
    from labreport.config import load_config

    return [r.spec for r in load_config(config).select((name,))]


def check_members(specs: list[TrainSpec]) -> None:
    """ValueError unless the specs can train fused: one architecture and schedule, Adam, no fp16."""
    if not specs:
        raise ValueError("no members")
    first = specs[0]
    for spec in specs[1:]:
        differ = [f.name for f in fields(TrainSpec) if f.name not in VARYING
                  and getattr(spec, f.name) != getattr(first, f.name)]
        if differ:
            raise ValueError(f"members differ in {', '.join(differ)}: only {', '.join(sorted(VARYING))} may")
    if first.optimizer != "adam":
        raise ValueError(f"the probe mirrors the lab's Adam, not {first.optimizer}")
    if first.precision == "fp16":
        raise ValueError("fp16 needs a loss scale per member, which the probe does not build")


class MaskDropout(nn.Module):
    """Dropout with its mask given (a buffer that functional_call fills, one per member): the mask
    is drawn outside vmap, by the member's own generator. Without a mask (the shape probe on the
    meta device) it records the shape of its input and passes it on."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mask", None, persistent=False)
        self.shape: tuple[int, ...] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            self.shape = tuple(x.shape)
            return x
        return x * self.mask.to(x.dtype)


def skeleton(spec: TrainSpec, num_classes: int, dropout: float) -> tuple[nn.Module, dict[str, tuple[int, ...]]]:
    """The members' architecture on the meta device (no memory: functional_call supplies every
    tensor), each dropout (if any member has one: `dropout` > 0) a MaskDropout; and the shape of each
    dropout's mask at the batch size, in the order the forward pass meets them (the order the
    trainer's dropout draws them)."""
    with torch.random.fork_rng(devices=[]):
        net = build_model(spec.model, num_classes=num_classes, norm=spec.norm, dropout=dropout, init=spec.init,
                          model_args=spec.model_args.as_dict())
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.Dropout):
            parent, _, leaf = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, leaf, MaskDropout())
    net, met = net.to("meta").train(), []
    hooks = [m.register_forward_hook(lambda m, *_, name=n: met.append((name, m.shape)))
             for n, m in net.named_modules() if isinstance(m, MaskDropout)]
    with torch.no_grad():
        net(torch.empty(spec.batch_size, 3, 32, 32, device="meta"))
    for h in hooks:
        h.remove()
    return net, {f"{name}.mask": shape for name, shape in met}


@dataclass
class Member:
    """What each member owns besides its weights: its spec and its two generators."""

    spec: TrainSpec
    data: Iterator[tuple[torch.Tensor, torch.Tensor]]  # its batches, epoch after epoch
    dropout_gen: torch.Generator


def build_member(spec: TrainSpec, train: Split, num_classes: int, device: torch.device) -> tuple[nn.Module, Member]:
    """The member's initial model, as the trainer's set-up builds it, and its generators. The
    caller's global RNG state is kept."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(spec.seed)  # the trainer's: initial weights, then dropout masks
        model = build_model(spec.model, num_classes=num_classes, norm=spec.norm, dropout=spec.dropout,
                            init=spec.init, model_args=spec.model_args.as_dict())
        dropout_gen = torch.Generator(device)
        if device.type == "cpu":
            dropout_gen.set_state(torch.get_rng_state())  # where the trainer's first mask is drawn from
        else:
            dropout_gen.manual_seed(spec.seed)
    data_gen = torch.Generator(device).manual_seed(spec.seed)  # the trainer's data generator
    return model, Member(spec, _epochs(train, spec, data_gen), dropout_gen)


def _epochs(train: Split, spec: TrainSpec, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:  # the trainer's epoch: one permutation, full batches only
        yield from iterate_batches(train.x, train.y, spec.batch_size, shuffle=True, augment=spec.augment,
                                   generator=gen, drop_last=True, mean=train.mean, std=train.std)


@torch.no_grad()
def adam_update(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, step: int, lr: float,
                weight_decay: torch.Tensor, ok: torch.Tensor) -> None:
    """torch.optim.Adam's update (its single-tensor form) in place on flat tensors, `step` counted
    from 1; where `ok` is False the weights and moments are left exactly as they were."""
    (beta1, beta2), eps = ADAM["betas"], ADAM["eps"]
    g = torch.where(ok, torch.addcmul(g, weight_decay, p), 0.0)  # L2: grad + weight_decay * p
    m_new = m.lerp(g, 1 - beta1)
    v_new = v.mul(beta2).addcmul_(g, g, value=1 - beta2)
    bias1, bias2 = 1 - beta1 ** step, 1 - beta2 ** step
    denom = (v_new.sqrt() / bias2 ** 0.5).add_(eps)
    p_new = p.addcdiv(m_new, denom, value=-lr / bias1)
    for old, new in ((p, p_new), (m, m_new), (v, v_new)):
        old.copy_(torch.where(ok, new, old))


@dataclass
class Blocks:
    """Tensors stacked over the N members, (N, *shape) each, held as the blocks of one flat tensor:
    an update of every member is a few elementwise kernels on `flat`, whatever the number of layers."""

    flat: torch.Tensor
    views: dict[str, torch.Tensor]  # name -> its (N, *shape) block, a view of `flat`
    member_of: torch.Tensor  # each element's member
    lengths: torch.Tensor  # the flat tensor as segments of one member each, in order: per-member sums
    n: int  # members

    @classmethod
    def of(cls, stacked: dict[str, torch.Tensor], n: int, device: torch.device) -> Blocks:
        flat = torch.cat([t.detach().reshape(-1) for t in stacked.values()]).to(device)
        views, at, lengths, owner = {}, 0, [], []
        for name, t in stacked.items():
            views[name] = flat[at:at + t.numel()].view(t.shape)
            at += t.numel()
            lengths += [t[0].numel()] * n
            owner.append(torch.arange(n).repeat_interleave(t[0].numel()))
        return cls(flat, views, torch.cat(owner).to(device), torch.tensor(lengths, device=device), n)

    def member_sums(self, values: torch.Tensor) -> torch.Tensor:
        """Per-member sums of `values`, laid out as `flat`: (N,)."""
        return torch.segment_reduce(values, "sum", lengths=self.lengths).view(-1, self.n).sum(0)

    def keep(self, saved: torch.Tensor, alive: torch.Tensor) -> None:
        """Members not alive get their `saved` values back."""
        self.flat.copy_(torch.where(alive[self.member_of], self.flat, saved))


class FusedRun:
    """The members training as one stacked model; `step()` is one optimizer step of every member."""

    def __init__(self, specs: list[TrainSpec], train: Split, device: torch.device, *, num_classes: int = 10,
                 precision: str = "fp32", compile_mode: str | None = None, channels_last: bool = True):
        check_members(specs)
        self.spec, self.device, self.precision, self.n = specs[0], device, precision, len(specs)
        self.mode, self.channels_last = compile_mode, channels_last
        built = [build_member(s, train, num_classes, device) for s in specs]
        self.members = [m for _, m in built]
        self.net, self.mask_shapes = skeleton(self.spec, num_classes, max(s.dropout for s in specs))
        params, buffers = stack_module_state([model for model, _ in built])
        self.weights = Blocks.of(params, self.n, device)
        # autograd's leaves: the weight blocks themselves, sharing the flat tensor's memory
        self.params = {k: v.detach().requires_grad_() for k, v in self.weights.views.items()}
        self.stats = [Blocks.of({k: b for k, b in buffers.items() if b.dtype == dtype}, self.n, device)
                      for dtype in sorted({b.dtype for b in buffers.values()}, key=str)]  # BN: float and int64
        self.buffers = {k: v for blocks in self.stats for k, v in blocks.views.items()}
        self.adam_m, self.adam_v = torch.zeros_like(self.weights.flat), torch.zeros_like(self.weights.flat)
        wd = torch.tensor([s.weight_decay for s in specs], device=device)
        self.weight_decay = wd[self.weights.member_of]  # each weight's member's
        self.alive = torch.ones(self.n, dtype=torch.bool, device=device)
        self.frozen_at = torch.full((self.n,), -1, dtype=torch.int64, device=device)  # the step it froze at
        self.steps_per_epoch = len(train.y) // self.spec.batch_size
        self.step_count = 0
        self.forward = self._compiled(compile_mode)

    def _compiled(self, mode: str | None):
        def one(params, buffers, masks, x, y):
            out = functional_call(self.net, {**params, **buffers, **masks}, (x,))
            return out, F.cross_entropy(out.float(), y)

        fused = vmap(one)
        if mode is None:
            return fused
        if mode == "reduce-overhead":  # the weights and statistics stay where they are: no copy per replay
            for t in [*self.params.values(), *self.buffers.values()]:
                torch._dynamo.mark_static_address(t)
        return torch.compile(fused, mode=mode, dynamic=False)

    def _stack_images(self, images: list[torch.Tensor]) -> torch.Tensor:
        """(N, B, C, H, W). channels_last: laid out as (B, H, W, N, C) in memory, so that the (B, N*C,
        H, W) input vmap makes of it for the grouped convolution is channels_last, as the trainer's."""
        if not self.channels_last:
            return torch.stack(images)
        return torch.stack([x.permute(0, 2, 3, 1) for x in images], dim=3).permute(3, 0, 4, 1, 2)

    def _masks(self) -> dict[str, torch.Tensor]:
        """Each member's dropout masks for one step, drawn as CPU dropout draws them."""
        masks = {}
        for name, shape in self.mask_shapes.items():
            per_member = []
            for m in self.members:
                keep = 1.0 - m.spec.dropout
                mask = torch.ones(shape, device=self.device)
                if m.spec.dropout > 0:
                    mask = torch.empty(shape, device=self.device).bernoulli_(keep, generator=m.dropout_gen).div_(keep)
                per_member.append(mask)
            masks[name] = torch.stack(per_member)
        return masks

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step of every member: (each member's mean loss, gradient norm), on the
        device; nothing here waits for it."""
        batches = [next(m.data) for m in self.members]
        x, y = self._stack_images([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        for p in self.params.values():
            p.grad = None
        saved = [blocks.flat.clone() for blocks in self.stats]  # a frozen member's statistics stay
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last replay's outputs are consumed
        with autocast(self.device, self.precision), warnings.catch_warnings():
            # vmap loops over the members for one metadata-only op of channels_last pooling
            warnings.filterwarnings("ignore", message=".*batching rule for aten::as_strided_")
            logits, losses = self.forward(self.params, self.buffers, self._masks(), x, y)
        losses.sum().backward()  # each member's gradient is that of its own mean loss
        return self._update(logits.detach(), losses.detach(), saved)

    @torch.no_grad()
    def _update(self, logits: torch.Tensor, losses: torch.Tensor,
                saved: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Freeze the members whose step was not finite, then Adam for the others."""
        grad = torch.cat([p.grad.reshape(-1) for p in self.params.values()])
        norms = self.weights.member_sums(grad.float().square()).sqrt()  # each member's, over all its weights
        finite = torch.isfinite(losses) & torch.isfinite(logits).flatten(1).all(1) & torch.isfinite(norms)
        self.frozen_at = torch.where(self.alive & ~finite, self.step_count, self.frozen_at)
        self.alive &= finite
        for blocks, before in zip(self.stats, saved, strict=True):
            blocks.keep(before, self.alive)
        self.step_count += 1
        lr = lr_at(self.spec, self.step_count - 1, self.steps_per_epoch)
        adam_update(self.weights.flat, grad, self.adam_m, self.adam_v, step=self.step_count, lr=lr,
                    weight_decay=self.weight_decay, ok=self.alive[self.weights.member_of])
        return losses, norms

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's weights and buffers, named as in its model's state_dict."""
        return {k: t[i].detach() for k, t in [*self.params.items(), *self.buffers.items()]}


@contextlib.contextmanager
def fp32_exact():
    """fp32 as it is written on a GPU (no TF32 convolutions or matmuls), restored afterwards."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old

