"""The networks of the model registry (models.py names each one's builder here), and `build_model`.

Reference: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image
Recognition", arXiv:1512.03385 (2015), section 4.2 and Table 6 (CIFAR-10).
The CIFAR ResNets follow that section: a 3x3 conv with 16 filters, three stages
of n = (depth - 2) / 6 basic blocks with 16/32/64 filters on 32/16/8 feature
maps, identity shortcuts with option A where the shape changes (subsample by 2,
zero-pad the new channels: no parameters), global average pooling, a 10-way FC.
The ``plainN`` nets are the same layers with the shortcut removed.

Trainable parameters with the defaults: the catalogue's `params` (`labreport models` lists
them beside the paper's), measured by tests/engine/test_models.py. With norm="none" the CIFAR ResNets
drop BatchNorm and give every conv a bias, e.g. resnet20 = 269,034.

Options (``build_model``; each model lists the ones it honours in ``supports``):

- ``norm``: "batch" puts BatchNorm after every conv; "none" has no BatchNorm at
  all and gives the convs a bias instead.
- ``dropout``: probability p of an ``nn.Dropout``. In the CIFAR ResNets, plain
  nets and resnet18 it acts once, on the pooled features just before the final
  FC layer; in cifarnet it acts after each max-pool and before the last layer.
  p = 0 builds no Dropout module at all (``nn.Identity`` in its place).
- ``init``: "he" (default, as in the paper) draws conv weights with
  ``kaiming_normal_(mode="fan_in", nonlinearity="relu")``, std = sqrt(2 / fan_in)
  (He et al. 2015, "Delving deep into rectifiers", eq. 10), zeroes conv biases,
  sets BatchNorm weight 1 and bias 0, and leaves Linear layers at PyTorch's
  default. "torch" leaves every layer at PyTorch's default (convs:
  kaiming_uniform_(a=sqrt(5)), std = 1 / sqrt(3 * fan_in)). Beware: He init keeps
  the variance of each residual *branch* equal to its input's, so without
  BatchNorm every residual add roughly doubles the variance and a BN-less deep
  ResNet's activations explode: resnet110 has 54 blocks, so std grows ~2**27;
  measured on N(0,1) inputs its output std is ~1e8. Under "torch" init each
  branch shrinks its input, so activations stay small (output std ~0.3).
  resnet18 keeps torchvision's own init, which is He's (fan_out), so it only
  accepts "he".
  "fixup" (CIFAR ResNets with norm="none" only) is Fixup, H. Zhang, Y. N. Dauphin,
  T. Ma, "Fixup Initialization: Residual Learning Without Normalization",
  arXiv:1901.09321 (2019), section 3: the last layer of every residual branch
  and the classifier start at zero, the other branch layers get He init scaled
  by L^(-1/(2m-2)) (L residual branches of m layers: m = 2 here, so L^(-1/2)),
  and every branch gets scalar biases before each conv and activation and a
  scalar multiplier. At init every branch outputs zero and the logits are zero.
  The convs have no per-channel bias then (the scalar biases replace it):
  resnet110 with Fixup has 1,720,138 parameters (resnet20: 268,393).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from labreport import ownmodels
from labreport.models import OPTIONS, ModelInfo, init_problem, model_info
from labreport.engine import owncode
from labreport.errors import ModelError
from labreport.spec import SETTINGS

DEFAULTS = {k: SETTINGS[k].default for k in OPTIONS}  # build_model's defaults: the spec's


# ---------------------------------------------------------------- building blocks


def _conv3x3(in_planes: int, planes: int, stride: int, norm: str) -> nn.Conv2d:
    # Without BatchNorm the conv needs its own bias: BN's shift (beta) is gone.
    return nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=norm == "none")


def _norm(planes: int, norm: str) -> nn.Module:
    return nn.BatchNorm2d(planes) if norm == "batch" else nn.Identity()


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _init_he(model: nn.Module) -> None:
    """He et al. 2015 init for convs; BN to identity; Linear left at PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _apply_init(model: nn.Module, init: str) -> nn.Module:
    if init == "he":
        _init_he(model)
    return model  # "torch": PyTorch's layer defaults, untouched


class ShortcutA(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels; no parameters."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, add the shortcut (if residual), ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str, residual: bool):
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride, norm)
        self.bn1 = _norm(planes, norm)
        self.conv2 = _conv3x3(planes, planes, 1, norm)
        self.bn2 = _norm(planes, norm)
        self.residual = residual
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = ShortcutA(planes - in_planes)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return F.relu(out)


class FixupBlock(nn.Module):
    """The basic block under Fixup: no normalisation; a scalar bias before each conv and the ReLU
    inside the branch, a scalar multiplier and bias at its end, the shortcut added, a ReLU. The
    branch's first conv is He-initialised and scaled by `branch_scale`, its second starts at
    zero, so at init the block outputs ReLU(shortcut(x))."""

    def __init__(self, in_planes: int, planes: int, stride: int, branch_scale: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bias1a, self.bias1b, self.bias2a, self.bias2b = (nn.Parameter(torch.zeros(1)) for _ in range(4))
        self.scale = nn.Parameter(torch.ones(1))
        self.shortcut: nn.Module = (ShortcutA(planes - in_planes) if stride != 1 or in_planes != planes
                                    else nn.Identity())
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_in", nonlinearity="relu")
        with torch.no_grad():
            self.conv1.weight.mul_(branch_scale)
        nn.init.zeros_(self.conv2.weight)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x + self.bias1a) + self.bias1b)
        return self.conv2(out + self.bias2a) * self.scale + self.bias2b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. 2015 section 4.2 ResNet (residual=True) or its plain twin (False)."""

    def __init__(self, depth: int, num_classes: int = 10, norm: str = "batch",
                 dropout: float = 0.0, init: str = "he", *, residual: bool = True):
        super().__init__()
        if (depth - 2) % 6:
            raise ModelError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6  # basic blocks per stage
        self.fixup = init == "fixup"  # a residual net without normalisation: build_model checks (catalog.init_problem)
        # Fixup: scalar biases replace the stem conv's and the classifier input's biases
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False) if self.fixup else _conv3x3(3, 16, 1, norm)
        self.bn1 = _norm(16, norm)
        self.bias1 = nn.Parameter(torch.zeros(1)) if self.fixup else None
        self.bias2 = nn.Parameter(torch.zeros(1)) if self.fixup else None
        branch_scale = (3 * n) ** -0.5  # L^(-1/(2m-2)) with L = 3n branches of m = 2 layers
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):  # on 32x32, 16x16, 8x8 maps
            blocks = []
            for i in range(n):
                s = stride if i == 0 else 1
                blocks.append(FixupBlock(in_planes, planes, s, branch_scale) if self.fixup
                              else BasicBlock(in_planes, planes, s, norm, residual))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.dropout = _dropout(dropout)  # on the pooled features, before the FC
        self.fc = nn.Linear(64, num_classes)
        if self.fixup:
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.fc.weight)  # the classifier starts at zero: zero logits at init
            nn.init.zeros_(self.fc.bias)
        else:
            _apply_init(self, init)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 64-dimensional features the classifier sees."""
        out = self.bn1(self.conv1(x))
        out = F.relu(out + self.bias1 if self.fixup else out)
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return out + self.bias2 if self.fixup else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


class CifarNet(nn.Module):
    """The lab's small CNN baseline: two conv-conv-pool stages and a 512-unit FC.

    Dropout acts after each max-pool and after the hidden FC (before the last
    layer); the lab uses p = 0.15. norm="none" is the lab's original design.
    """

    def __init__(self, num_classes: int = 10, norm: str = "batch",
                 dropout: float = 0.0, init: str = "he"):
        super().__init__()

        def stage(c_in: int, c_out: int) -> list[nn.Module]:
            return [_conv3x3(c_in, c_out, 1, norm), _norm(c_out, norm), nn.ReLU(inplace=True),
                    _conv3x3(c_out, c_out, 1, norm), _norm(c_out, norm), nn.ReLU(inplace=True),
                    nn.MaxPool2d(2), _dropout(dropout)]

        self.features = nn.Sequential(*stage(3, 32), *stage(32, 64))  # 32x32 -> 8x8
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 8 * 8, 512), nn.ReLU(inplace=True),
            _dropout(dropout), nn.Linear(512, num_classes))
        _apply_init(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def torchvision_resnet18(num_classes: int, norm: str, dropout: float, init: str) -> nn.Module:
    """torchvision's resnet18 as the lab loads it (ImageNet stem); norm/init are fixed."""
    import torchvision  # here, not at the top: listing the registry should not load it

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if dropout > 0:  # on the pooled features, before the FC
        model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
    return model


# ---------------------------------------------------------------- building


def builder(info: ModelInfo) -> Callable[..., nn.Module]:
    """The callable an entry of the catalogue names ("module:name")."""
    module, _, name = info.builder.partition(":")
    return getattr(importlib.import_module(module), name)


def build_model(name: str, *, num_classes: int = 10, norm: str = "batch", dropout: float = 0.0, init: str = "he",
                model_args: dict | None = None, lab_dir: Path | None = None) -> nn.Module:
    """Build a fresh, untrained model on the CPU; the caller moves it to a device. `name` is a
    catalogue name, or a model of one's own ("nets.py:Net", found from `lab_dir`, called with
    `model_args`: engine/owncode.py)."""
    given: dict[str, Any] = {"norm": norm, "dropout": dropout, "init": init}
    if ownmodels.is_own(name):
        model, took_init = owncode.build(name, lab_dir or Path("."), dict(model_args or {}),
                                         {"num_classes": num_classes, **given}, DEFAULTS)
        return model if took_init else _apply_init(model, init)  # he: as the catalogue's; torch: as it was built
    info = model_info(name)
    for option, value in given.items():  # the spec's checks: a spec that loaded builds
        s = SETTINGS[option]
        problem = (f"must be one of {', '.join(map(repr, s.choices))}" if s.choices and value not in s.choices
                   else s.check(value) if s.check else None)
        if problem:
            raise ModelError(f"{option} {problem}, got {value!r}")
    if num_classes < 1:
        raise ModelError(f"num_classes must be positive, got {num_classes!r}")
    if problem := init_problem(info, init, norm):
        raise ModelError(f"model {name!r}: {problem}")
    for option in sorted(set(OPTIONS) - info.supports):
        if given[option] != DEFAULTS[option]:
            raise ModelError(
                f"model {name!r} does not support {option}={given[option]!r} "
                f"(only {DEFAULTS[option]!r}); it supports: {', '.join(sorted(info.supports)) or 'nothing'}")
    return builder(info)(num_classes=num_classes, **given, **dict(info.args))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
