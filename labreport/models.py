"""The model registry: one entry per model, with the facts about it and the builder that makes it.

`labreport plan`, `status` and a `run` that has nothing left to train must answer in well under a
second, and importing torch alone costs more than that. So an entry names its builder as text
("labreport.engine.networks:CifarResNet" and the arguments it is called with): the config
validator and the report read the facts here without torch, and engine/networks.py imports the
builder only when a network is built. tests/engine/test_models.py builds every entry and checks its
parameter count and its options against the facts.

Paper figures are from He et al. 2015, "Deep Residual Learning for Image Recognition"
(arXiv 1512.03385), Table 6: CIFAR-10 test error (%) and parameter count (millions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labreport.errors import ModelError, did_you_mean

OPTIONS = ("norm", "dropout", "init")  # per-model options that a spec may set
NETWORKS = "labreport.engine.networks"  # where the built-in builders live


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # "cifar-resnet" | "plain" | "torchvision" | "baseline"
    description: str
    builder: str  # "module:callable", called as callable(num_classes=, norm=, dropout=, init=, **args)
    args: tuple[tuple[str, Any], ...] = ()  # more keyword arguments of the builder
    depth: int | None = None  # weighted layers (conv + fc), as the paper counts them
    paper_params_m: float | None = None  # He et al. 2015 Table 6, millions
    paper_error: float | None = None  # He et al. 2015 Table 6, test error % (the best run for ResNet-110)
    paper_mean: float | None = None  # Table 6's mean error % over several runs, where it gives one
    paper_std: float | None = None  # ... and their standard deviation: ResNet-110 only, "6.43 (6.61±0.16)"
    paper_runs: int | None = None  # how many runs that mean and std are over
    supports: frozenset[str] = frozenset(OPTIONS)
    params: int | None = None  # trainable parameters with the default options, 10 classes


def _cifar_resnet(depth: int, params: int, paper_m: float, error: float,
                  spread: tuple = (None, None, None)) -> ModelInfo:
    mean, std, runs = spread
    return ModelInfo(
        f"resnet{depth}", "cifar-resnet",
        (f"CIFAR ResNet-{depth} (He et al. 2015 sec. 4.2): 3 stages x {(depth - 2) // 6} basic blocks, "
         "option-A shortcuts"),
        f"{NETWORKS}:CifarResNet", (("depth", depth),), depth, paper_m, error, mean, std, runs, params=params)


def _plain(resnet: ModelInfo) -> ModelInfo:
    depth = resnet.depth
    return ModelInfo(
        f"plain{depth}", "plain",
        f"plain {depth}-layer net: ResNet-{depth} with the skip connections removed (gradient-flow study)",
        f"{NETWORKS}:CifarResNet", (("depth", depth), ("residual", False)), depth,
        params=resnet.params)  # option-A shortcuts have no parameters


# Table 6 of the paper: depth, parameters (exact, BN on), params (M) and error (%); for ResNet-110 also
# (mean, std, runs): "6.43 (6.61±0.16)", best (mean±std) over 5 runs. The other depths have one number each.
_RESNETS = [_cifar_resnet(*row) for row in [
    (20, 269_722, 0.27, 8.75), (32, 464_154, 0.46, 7.51), (44, 658_586, 0.66, 7.17),
    (56, 853_018, 0.85, 6.97), (110, 1_727_962, 1.7, 6.43, (6.61, 0.16, 5)), (1202, 19_421_274, 19.4, 7.93),
]]
_INFOS = [
    ModelInfo("resnet18", "torchvision", "torchvision ResNet-18, ImageNet stem, 10 classes (as the lab loads it)",
              f"{NETWORKS}:torchvision_resnet18", depth=18, supports=frozenset({"dropout"}), params=11_181_642),
    # 2,168,362 parameters with norm = "none", the lab's original design
    ModelInfo("cifarnet", "baseline", "small CNN baseline of the lab: 4 conv + 2 fc, dropout after each stage",
              f"{NETWORKS}:CifarNet", depth=6, params=2_168_554),
    *_RESNETS,
    *(_plain(r) for r in _RESNETS if r.depth <= 110),
]

MODELS: dict[str, ModelInfo] = {info.name: info for info in _INFOS}


def init_problem(info: ModelInfo, init: str, norm: str) -> str | None:
    """Why `init` cannot be used with this model and norm (None: it can). Fixup (Zhang et al. 2019)
    rescales residual branches and replaces normalisation, so it needs both."""
    if init != "fixup":
        return None
    if info.family != "cifar-resnet":
        return (f"init = 'fixup' is for the CIFAR ResNets (resnet20 ... resnet1202): it rescales residual "
                f"branches, and {info.name} has none")
    if norm != "none":
        return "init = 'fixup' replaces normalisation: use it with norm = 'none'"
    return None


def model_info(name: str) -> ModelInfo:
    """The catalog entry for `name`; a ModelError listing the valid names if there is none."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model '{name}'{did_you_mean(name, MODELS)}; known models: {', '.join(MODELS)}"
                         ) from None
