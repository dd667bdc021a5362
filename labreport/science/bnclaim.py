"""The BatchNorm claim, controlled: "ResNet-110 without BatchNorm does not train, or trains in
about 10 % of cases", tested per initialisation against a control arm. Pure functions, no I/O.

A run *trains* when its best validation accuracy beats `threshold` (chance is 0.1); a diverged
run does not. For every model that ran with and without BatchNorm, runs are split into arms by
normalisation, initialisation and budget (every training setting but norm, init and seed). Each
BN-less arm is matched with the BN arm of the same budget, its *control*:

- the control trains (more than half of its runs): the budget suffices to train the network, so
  the BN-less arm tests the claim: an exact binomial test of "rate <= claim_rate" (contradicted
  when p < alpha), a Wilson interval, and "consistent" only when the observed rate is at most the
  claim's and the number of runs is enough for the test to have been able to reject it;
- the control does not train: the budget is too small to test the claim ("untestable"), whatever
  the BN-less arm did, unless the BN-less arm trains significantly more often than the claim
  allows, which contradicts the claim at any budget;
- no control of the same budget: the claim cannot be told apart from the budget ("no control").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from labreport.models import MODELS
from labreport.ownmodels import model_id
from labreport.science.stats import binom_sf, smallest_rejecting_k, wilson_interval

INIT_ORDER = ("he", "torch", "fixup")  # the order arms are shown in
NOT_BUDGET = ("norm", "init", "seed")  # what may differ between an arm and its control


@dataclass(frozen=True)
class RunOutcome:
    seed: int | None
    best_val: float | None  # best validation accuracy (None: diverged before its first epoch)
    trained: bool
    diverged: bool
    reason: str | None  # why it diverged, as the trainer recorded it


@dataclass(frozen=True)
class SuccessRate:
    """How often one arm trains."""

    model: str
    norm: str
    init: str
    k: int  # trained
    n: int  # finished runs (diverged ones count, as not trained)
    pending: int  # runs of the arm not finished yet: never silently dropped
    rate: float | None
    ci: tuple[float, float]  # Wilson interval at `confidence`
    p_value: float | None  # exact binomial P(X >= k | claim_rate)
    verdict: str  # BN-less arms: consistent | contradicted | inconclusive | untestable | no control | no data;
    #               controls: trains | does not train | no data
    per_run: tuple[RunOutcome, ...]
    precisions: tuple[str, ...] = ()  # what the finished runs computed in (provenance.precision)

    @property
    def label(self) -> str:
        return f"{self.model}, {'BN' if self.norm == 'batch' else 'no BN'}, init {self.init}"

    @property
    def diverged(self) -> int:
        return sum(o.diverged for o in self.per_run)


@dataclass(frozen=True)
class BnClaim:
    """One model's BN-less arms (one per init) against their BN control of the same budget."""

    model: str
    control: SuccessRate | None
    arms: tuple[SuccessRate, ...]
    claim_rate: float
    alpha: float
    threshold: float

    @property
    def control_trains(self) -> bool | None:
        return None if self.control is None or not self.control.n else self.control.verdict == "trains"

    @property
    def narrow_precision(self) -> bool:
        """Some BN-less run computed in fp16, whose largest value (65,504) a BN-less deep network's
        activations can pass: its failure to train may be fp16's, not the network's, and the verdict
        then depends on the GPU. (precision = "auto" never does this: it keeps BN-less runs in fp32's
        range; a BN control in fp16 is no concern, BatchNorm keeps its activations small.)"""
        return any("fp16" in a.precisions for a in self.arms)

    @property
    def lab_arm(self) -> SuccessRate | None:
        """The arm the lab's claim is about: He init (the lab's), else the first."""
        return next((a for a in self.arms if a.init == "he"), self.arms[0] if self.arms else None)


def trained(view, threshold: float) -> bool:
    """A run trains when its best validation accuracy beats the threshold; diverged runs do not."""
    if view.status != "done":
        return False
    acc = view.metric("best_val_acc")
    if acc is None:  # no validation split: fall back to the chosen epoch's test accuracy
        acc = view.metric("test_acc_at_best")
    return acc is not None and acc > threshold


def _outcomes(runs: Sequence, threshold: float) -> tuple[RunOutcome, ...]:
    return tuple(RunOutcome(r.spec.get("seed"), r.metric("best_val_acc"), trained(r, threshold),
                            r.status == "diverged", (r.result or {}).get("diverged_reason"))
                 for r in runs if r.finished)


def _precisions(runs: Sequence) -> tuple[str, ...]:
    seen = [((r.result or {}).get("provenance") or {}).get("precision") for r in runs if r.finished]
    return tuple(dict.fromkeys(p for p in seen if p))


def arm_verdict(k: int, n: int, claim_rate: float, alpha: float, control_trains: bool | None) -> str:
    """The verdict on a BN-less arm with k of n runs trained (see the module docstring)."""
    if n == 0:
        return "no data"
    if binom_sf(k, n, claim_rate) < alpha:
        return "contradicted"  # trains significantly more often than the claim allows, at any budget
    if control_trains is None:
        return "no control"
    if not control_trains:
        return "untestable"
    if smallest_rejecting_k(n, claim_rate, alpha) is None or k / n > claim_rate:
        return "inconclusive"  # too few runs to reject the claim, or more than claimed but not significantly
    return "consistent"


def _rate(runs: Sequence, model: str, norm: str, init: str, threshold: float, claim_rate: float,
          confidence: float, verdict) -> SuccessRate:
    per_run = _outcomes(runs, threshold)
    n, k = len(per_run), sum(o.trained for o in per_run)
    return SuccessRate(model, norm, init, k, n, len(runs) - n, k / n if n else None,
                       wilson_interval(k, n, confidence), binom_sf(k, n, claim_rate) if n else None,
                       verdict(k, n), per_run, _precisions(runs))


def _budget(spec: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in spec.items() if k not in NOT_BUDGET))


def _by_init(arms: dict[tuple, list], norm: str, budget: tuple) -> list[tuple[str, list]]:
    """(init, runs) of the arms with this normalisation and budget, in INIT_ORDER."""
    found = [(i, runs) for (n, i, b), runs in arms.items() if n == norm and b == budget]
    return sorted(found, key=lambda ir: INIT_ORDER.index(ir[0]) if ir[0] in INIT_ORDER else len(INIT_ORDER))


def _control_verdict(k: int, n: int) -> str:
    return "no data" if not n else "trains" if k > n / 2 else "does not train"


def _claim(model: str, arms: dict[tuple, list], budget: tuple, threshold: float, claim_rate: float, alpha: float,
           confidence: float) -> BnClaim:
    """The BN-less arms of one budget against their control: the BN arm of that budget (the first
    init in INIT_ORDER, if several)."""
    controls = _by_init(arms, "batch", budget)
    control = _rate(controls[0][1], model, "batch", controls[0][0], threshold, claim_rate, confidence,
                    _control_verdict) if controls else None
    control_trains = None if control is None or not control.n else control.verdict == "trains"
    rates = tuple(_rate(runs, model, "none", init, threshold, claim_rate, confidence,
                        lambda k, n: arm_verdict(k, n, claim_rate, alpha, control_trains))
                  for init, runs in _by_init(arms, "none", budget))
    return BnClaim(model, control, rates, claim_rate, alpha, threshold)


def bn_claims(views: Sequence, threshold: float | Callable[[str], float], claim_rate: float, alpha: float = 0.05,
              confidence: float = 0.95) -> list[BnClaim]:
    """A BnClaim per (model, budget) that has a BN-less arm, for models that also ran with BN,
    shallowest model first. `threshold`: one for all, or the threshold of a data set."""
    threshold_of = threshold if callable(threshold) else lambda _dataset: threshold
    claims = []
    for m in _models_with_and_without_bn(views):
        arms: dict[tuple, list] = {}  # (norm, init, budget) -> runs
        for v in views:
            if model_id(v.spec) == m:
                arms.setdefault((v.spec.get("norm"), v.spec.get("init", "he"), _budget(v.spec)), []).append(v)
        for budget in dict.fromkeys(b for (norm, _, b) in arms if norm == "none"):
            first = next(r for (_, _, b), runs in arms.items() if b == budget for r in runs)
            claims.append(_claim(m, arms, budget, threshold_of(first.spec.get("dataset", "cifar10")), claim_rate,
                                 alpha, confidence))
    return claims


def _models_with_and_without_bn(views: Sequence) -> list[str]:
    """The catalogue's by depth, then one's own in matrix order (model_id: one per model_args)."""
    used = dict.fromkeys(model_id(v.spec) for v in views)
    models = [m for m in used if {v.spec.get("norm") for v in views if model_id(v.spec) == m} >= {"batch", "none"}]
    return sorted(models, key=lambda m: (MODELS[m].depth or 0) if m in MODELS else 1_000_000)
