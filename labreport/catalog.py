"""What the model zoo holds, without importing torch.

`labreport plan`, `status` and a `run` that has nothing left to train must answer in well under a
second, and importing torch alone costs more than that. So the facts about each model that the
config validator and the report need (name, family, depth, options it honours, the paper's
figures) live here; `models.py` maps the same names to the factories that build the networks, and
a test checks that both agree.

Paper figures are from He et al. 2015, "Deep Residual Learning for Image Recognition"
(arXiv 1512.03385), Table 6: CIFAR-10 test error (%) and parameter count (millions).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from labreport.errors import ModelError

OPTIONS = ("norm", "dropout", "init")  # per-model options that a spec may set


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # "cifar-resnet" | "plain" | "torchvision" | "baseline"
    description: str
    depth: int | None = None  # weighted layers (conv + fc), as the paper counts them
    paper_params_m: float | None = None  # He et al. 2015 Table 6, millions
    paper_error: float | None = None  # He et al. 2015 Table 6, test error % (the best run for ResNet-110)
    paper_mean: float | None = None  # Table 6's mean error % over several runs, where it gives one
    paper_std: float | None = None  # ... and their standard deviation: ResNet-110 only, "6.43 (6.61±0.16)"
    paper_runs: int | None = None  # how many runs that mean and std are over
    supports: frozenset[str] = frozenset(OPTIONS)
    params: int | None = None  # trainable parameters with the default options (tests/test_models.py checks)


# Exact counts with BatchNorm (norm="batch"), 10 classes: measured, and checked by a test.
_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}


def _cifar_resnet(depth: int, params: float, error: float, spread: tuple | None = None) -> ModelInfo:
    n = (depth - 2) // 6
    mean, std, runs = spread or (None, None, None)
    return ModelInfo(
        f"resnet{depth}", "cifar-resnet",
        f"CIFAR ResNet-{depth} (He et al. 2015 sec. 4.2): 3 stages x {n} basic blocks, option-A shortcuts",
        depth, params, error, mean, std, params=_PARAMS[depth], paper_runs=runs,
    )


def _plain(depth: int) -> ModelInfo:
    return ModelInfo(
        f"plain{depth}", "plain",
        f"plain {depth}-layer net: ResNet-{depth} with the skip connections removed (gradient-flow study)",
        depth, params=_PARAMS[depth],
    )


_INFOS = [
    ModelInfo("resnet18", "torchvision",
              "torchvision ResNet-18, ImageNet stem, 10 classes (as the lab loads it)",
              18, supports=frozenset({"dropout"}), params=11_181_642),
    ModelInfo("cifarnet", "baseline",
              "small CNN baseline of the lab: 4 conv + 2 fc, dropout after each stage",
              6, params=2_168_554),
    # Table 6 of the paper: depth, params (M), error (%); for ResNet-110 also (mean, std, runs):
    # "6.43 (6.61±0.16)", best (mean±std) over 5 runs. The other depths have one number each.
    *(_cifar_resnet(d, p, e, *spread) for d, p, e, *spread in [
        (20, 0.27, 8.75), (32, 0.46, 7.51), (44, 0.66, 7.17),
        (56, 0.85, 6.97), (110, 1.7, 6.43, (6.61, 0.16, 5)), (1202, 19.4, 7.93),
    ]),
    *(_plain(d) for d in (20, 32, 44, 56, 110)),
]

CATALOG: dict[str, ModelInfo] = {info.name: info for info in _INFOS}


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
        return CATALOG[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(CATALOG), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ModelError(
            f"unknown model '{name}'{hint}; known models: {', '.join(CATALOG)}"
        ) from None
