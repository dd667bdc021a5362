"""Subsection 1.1, measured: what the gradient-flow measurement says (science/gradflow.facts), as
the theory section words it: per network how the gradient norm changes from the last layer to the
first, the shortcut's gain at the first layer, and where the argument does not explain it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from labreport.report.labels import N_
from labreport.report.i18n import Lang
from labreport.science.conclusions import Study

STEADY = 0.05  # orders of magnitude: a smaller change shows as 0.0 and "stays about the same"


class Change(NamedTuple):
    """How a network's gradient norm changes from the last layer to the first."""

    kind: str  # "falls" | "grows" | "same" | "zero" (the first layer's is 0 in float32) | "none" (not measured)
    orders: float | None = None  # by how many orders of magnitude (positive)


def change(row: Mapping | None, when: str) -> Change:
    """`row`: science.gradflow.summary_rows's; `when`: "init" or "trained"."""
    if row is None:
        return Change("none")
    o = row[f"orders_{when}"]
    if o is None:
        return Change("zero" if row[f"first_{when}"] == 0 else "none")
    if o >= STEADY:
        return Change("falls", o)
    return Change("grows", -o) if o <= -STEADY else Change("same")


class Gain(NamedTuple):
    """By how much the first layer's gradient of ResNet exceeds the plain network's."""

    kind: str  # "larger" | "smaller" | "finite" (the plain network's is 0 in float32) | "none"
    orders: float | None = None  # orders of magnitude (positive)


def gain(orders: float | None, plain: Mapping | None) -> Gain:
    if orders is None:
        return Gain("finite" if plain is not None and plain["first_init"] == 0 else "none")
    return Gain("larger", orders) if orders >= 0 else Gain("smaller", -orders)


class Logits(NamedTuple):
    """The standard deviation of the BN-less ResNet's logits at initialisation, per init."""

    he: float | None
    torch: float | None


class Networks(NamedTuple):
    """A Change per network, in the order the sentences name them."""

    resnet_batch: Change
    resnet_none: Change
    plain_batch: Change
    plain_none: Change


def networks(nets: Mapping[str, Mapping | None], when: str) -> Networks:
    return Networks(*(change(nets[name], when) for name in Networks._fields))


@dataclass(frozen=True)
class FlowRow:
    """A row of the table: first- and last-layer gradient norms, and the orders of magnitude between."""

    family: str  # "resnet" | "plain"
    norm: str
    depth: int
    init: str
    first_init: float | None
    last_init: float | None
    orders_init: float | None
    vanished_init: bool  # the first layer's gradient is 0 in float32: no finite ratio
    first_trained: float | None
    last_trained: float | None
    orders_trained: float | None
    vanished_trained: bool


def flow_row(r: Mapping) -> FlowRow:
    def vanished(when):
        return r[f"orders_{when}"] is None and r[f"first_{when}"] == 0

    return FlowRow(r["family"], r["norm"], r["depth"], r["init"], r["first_init"], r["last_init"], r["orders_init"],
                   vanished("init"), r["first_trained"], r["last_trained"], r["orders_trained"], vanished("trained"))


# The cases facts["steadier"] names, as a sentence lists those where ResNet's norm is no steadier
CASES = {"batch_init": N_("with BN before training"), "batch_trained": N_("with BN after training"),
         "none_init": N_("without BN before training"), "none_trained": N_("without BN after training")}


@dataclass(frozen=True)
class Measured:
    """What was measured (science.gradflow.facts), for the deepest measured depth."""

    probe: int  # images of the fixed batch
    depth: int
    steps: int  # Adam steps between the two measurements
    lr: float
    batch: int
    init: str  # the init the comparison is under: the first of the lab's that was measured
    refs: tuple[tuple[str, str], ...]  # what the first paragraph refers to: ("figure" | "table", name)
    own_names: tuple[str, ...]  # the author's own models: not measured, and the text says so
    complete: bool  # all four networks measured: the comparison follows in words
    at_init: Networks
    trained: Networks
    other_init: str | None  # another init measured on every network
    other: Networks | None
    gain_bn: Gain
    gain_nobn: Gain
    steadier: bool  # in every measured case ResNet's norm changes less with depth than the plain net's
    unexplained: str  # the cases where it does not, in words ("" for none)
    he_note: bool  # a case is He init without BN before training: say what He init is made for
    lab_inits: tuple[str, ...]
    logits: Logits | None  # where both He and PyTorch's default init were measured
    fixup: bool  # Fixup was measured
    fixup_trained: Change | None  # Fixup's gradient after the training steps
    nobn_inits: tuple[str, ...]  # the inits of the lab's runs without BN
    nobn_other_inits: tuple[str, ...]  # ... other than He
    missing: int  # cases not measured yet
    done: int
    total: int
    rows: tuple[FlowRow, ...]


@dataclass(frozen=True)
class Theory:
    enabled: bool  # [gradflow] enabled
    measured: Measured | None  # None: nothing measured yet, and the section says how


def _steadiness(gf: Mapping, L: Lang) -> tuple[bool, str, bool]:
    """(ResNet steadier in every measured case, the cases where it is not in words, the He note)."""
    bad = [k for k, v in gf["steadier"].items() if v is False]
    cases = L.join_and([L._(CASES[k]) for k in bad])
    steadier = not bad and any(v is True for v in gf["steadier"].values())
    return steadier, cases, gf["init"] == "he" and "none_init" in bad


def measured_of(gf: Mapping[str, Any], flow: Mapping[str, Any], study: Study, figures: Mapping, L: Lang) -> Measured:
    nets, std = gf["nets"], gf["nobn_logits_std"]
    steadier, unexplained, he_note = _steadiness(gf, L)
    fixup = [r for r in gf["rows"] if r["init"] == "fixup"]
    return Measured(
        gf["probe"], gf["depth"], gf["steps"], gf["lr"], gf["batch"], gf["init"],
        ((("figure", "gradflow"),) if "gradflow" in figures else ()) + (("table", "gradflow"),),
        tuple(o.name for o in study.own.values()), all(v is not None for v in nets.values()),
        networks(nets, "init"), networks(nets, "trained"),
        gf["other_init"], networks(gf["other_nets"], "init") if gf["other_init"] else None,
        gain(gf["gain_bn"], nets["plain_batch"]), gain(gf["gain_nobn"], nets["plain_none"]),
        steadier, unexplained, he_note, tuple(flow["lab_inits"]) or ("he",),
        Logits(std["he"], std["torch"]) if "he" in std and "torch" in std else None, "fixup" in std,
        change(fixup[0], "trained") if fixup and fixup[0]["orders_trained"] is not None else None,
        tuple(flow["nobn_inits"]), tuple(i for i in flow["nobn_inits"] if i != "he"),
        gf["missing"], gf["total"] - gf["missing"], gf["total"], tuple(flow_row(r) for r in gf["rows"]))


def theory_of(flow: Mapping[str, Any], study: Study, figures: Mapping, L: Lang) -> Theory:
    """`flow`: study.gradflow_context's {"enabled", "facts" (None: nothing measured), "lab_inits", "nobn_inits"}."""
    gf = flow["facts"] if flow["enabled"] else None
    return Theory(flow["enabled"], measured_of(gf, flow, study, figures, L) if gf is not None else None)
