"""Which catalogue model a model of one's own implements, and what the report calls it. Pure: the
run views and what the experiments declare in, no torch (an own model's parameters are known only
by building it, so they are read from its trained runs' result.json).

An own model implements a catalogue model (and is then compared with He et al. 2015 as the
student's implementation of it) when

- its [[experiment]] declares it: `family = "cifar-resnet"` and the depth (model_args' or `depth`);
- or its trained runs with BatchNorm on CIFAR-10 (the catalogue counts parameters so) count exactly
  the parameters of one catalogue model. ResNet-N and plain-N have the same count (option-A
  shortcuts have no parameters): there the class's name decides ("ResNet" or "plain" in it), and
  a name that says neither claims neither.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from labreport import ownmodels
from labreport.models import MODELS, ModelInfo
from labreport.ownmodels import Declared, model_id
from labreport.science.runs import RunView

BASES = ("declared", "parameters")  # how the catalogue model an own model implements is known


@dataclass(frozen=True)
class OwnModel:
    """A model of one's own as the report names it."""

    id: str  # ownmodels.model_id: "nets.py:ResNet(depth=110)"
    ref: str  # "nets.py:ResNet"
    name: str  # what the report calls it: the declared display_name, else "ResNet-110"
    implements: str | None = None  # the catalogue model it is compared as ("resnet110"), if any
    basis: str | None = None  # one of BASES, when it implements one
    params: int | None = None  # counted by its trained runs (the BatchNorm variant's on CIFAR-10)


def _counted(runs: Sequence[RunView]) -> int | None:
    """The parameters the runs counted with BatchNorm on CIFAR-10 (the catalogue's conditions), else any run's."""
    counted = [(r.spec.get("norm") != "batch" or r.spec.get("dataset", "cifar10") != "cifar10", int(p))
               for r in runs if (p := r.metric("params"))]
    return min(counted)[1] if counted else None


def _same_parameters(name: str, params: int | None) -> ModelInfo | None:
    """The catalogue model with exactly these parameters; between ResNet-N and plain-N, the one the
    class's name says (None: it says neither, or no catalogue model counts as many)."""
    found = [i for i in MODELS.values() if params and i.params == params]
    if len(found) > 1:
        lower = name.lower()
        found = [i for i in found if (i.family == "plain") == ("plain" in lower) and
                 (i.family != "cifar-resnet" or "resnet" in lower)]
    return found[0] if len(found) == 1 else None


def identify(views: Sequence[RunView], declared: Mapping[str, Declared] | None = None) -> dict[str, OwnModel]:
    """Every model of one's own among the runs, by model_id, in matrix order; `declared`: per
    experiment, what it declares of its model (display_name, family, depth)."""
    declared = declared or {}
    runs: dict[str, list[RunView]] = {}
    for v in views:
        if ownmodels.is_own(v.spec["model"]):
            runs.setdefault(model_id(v.spec), []).append(v)
    out = {}
    for mid, rs in runs.items():
        first = rs[0]
        said = declared.get(first.experiment, Declared())
        args = first.spec.get("model_args") or {}
        params = _counted([r for r in rs if r.status == "done"])
        info, basis = ownmodels.implemented(said, args), "declared"
        if info is None:
            info, basis = _same_parameters(ownmodels.split(first.spec["model"])[1], params), "parameters"
        out[mid] = OwnModel(mid, first.spec["model"], ownmodels.display_name(first.spec["model"], args, said),
                            info.name if info else None, basis if info else None, params)
    return _told_apart(out)


def _told_apart(own: dict[str, OwnModel]) -> dict[str, OwnModel]:
    """Models that would share a name (one display_name over a grid of model_args, one class name in
    two files) get their arguments, or their file, beside it: "ResNet (depth=20)", "Net (a.py)"."""
    names = [m.name for m in own.values()]

    def told(mid: str, m: OwnModel) -> OwnModel:
        target, _, args = ownmodels.parse_id(mid)
        return replace(m, name=f"{m.name} ({args or target})")

    return {mid: told(mid, m) if names.count(m.name) > 1 else m for mid, m in own.items()}
