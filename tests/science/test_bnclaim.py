"""The controlled BatchNorm verdict on hand-made runs: per init, against the BN control of the same
budget; "too small to test" when the control does not train."""

from __future__ import annotations

import pytest

from labreport.science.bnclaim import arm_verdict, bn_claims
from labreport.science.stats import binom_sf
from views import view


def arm(k_trained, n, *, norm="none", init="he", pending=0, epochs=3, **kw):
    runs = [view(f"{norm}-{init}", 0.5, seed=i, best_val=0.5, model="resnet110", norm=norm, init=init,
                 epochs=epochs, **kw) for i in range(k_trained)]
    runs += [view(f"{norm}-{init}", 0.1, seed=i, best_val=0.1, model="resnet110", norm=norm, init=init,
                  epochs=epochs, **kw) for i in range(k_trained, n)]
    runs += [view(f"{norm}-{init}", None, seed=n + i, model="resnet110", norm=norm, init=init, epochs=epochs,
                  status="partial") for i in range(pending)]
    return runs


def claim_of(runs, **kw):
    (c,) = bn_claims(runs, threshold=0.2, claim_rate=0.1, **kw)
    return c


def test_consistent_when_the_control_trains_and_few_bn_less_runs_do():
    c = claim_of(arm(3, 3, norm="batch") + arm(1, 10))
    assert c.control_trains and c.control.verdict == "trains"
    a = c.lab_arm
    assert (a.k, a.n, a.rate) == (1, 10, 0.1) and a.verdict == "consistent"
    assert a.p_value == pytest.approx(binom_sf(1, 10, 0.1))


def test_the_budget_is_too_small_when_the_control_does_not_train():
    c = claim_of(arm(0, 2, norm="batch") + arm(0, 10))
    assert c.control_trains is False and c.control.verdict == "does not train"
    assert c.lab_arm.verdict == "untestable"  # 0/10 without BN says nothing when BN fails too


def test_contradicted_whatever_the_control():
    other_budget = arm(3, 3, norm="batch", epochs=9)  # the model ran with BN, but not at this budget
    for control in (arm(3, 3, norm="batch"), arm(0, 3, norm="batch"), other_budget):
        c = bn_claims(control + arm(6, 10), threshold=0.2, claim_rate=0.1)[0]
        assert c.lab_arm.verdict == "contradicted" and c.lab_arm.ci[0] > 0.1


def test_inconclusive_with_too_few_runs_or_a_borderline_rate_and_no_control():
    assert claim_of(arm(2, 2, norm="batch") + arm(0, 1)).lab_arm.verdict == "inconclusive"  # 1 run can't reject
    assert claim_of(arm(2, 2, norm="batch") + arm(2, 10)).lab_arm.verdict == "inconclusive"  # 20 %, p = 0.26
    no_control = bn_claims(arm(3, 3, norm="batch", epochs=9) + arm(0, 10), threshold=0.2, claim_rate=0.1)
    assert no_control[0].control is None and no_control[0].lab_arm.verdict == "no control"
    assert arm_verdict(0, 0, 0.1, 0.05, True) == "no data"


def test_one_arm_per_init_against_the_same_control_and_other_budgets_apart():
    runs = arm(3, 3, norm="batch") + arm(0, 10) + arm(2, 10, init="torch") + arm(9, 10, init="fixup")
    c = claim_of(runs)
    assert [a.init for a in c.arms] == ["he", "torch", "fixup"]
    assert [a.verdict for a in c.arms] == ["consistent", "inconclusive", "contradicted"]
    # a BN-less arm trained longer than the control has no control of its budget
    claims = bn_claims(runs + arm(0, 4, epochs=9), threshold=0.2, claim_rate=0.1)
    assert len(claims) == 2 and claims[1].control is None and claims[1].lab_arm.verdict == "no control"


def test_diverged_runs_count_as_not_trained_with_their_reason_and_pending_runs_are_reported():
    runs = arm(2, 2, norm="batch") + arm(1, 3, pending=2)
    runs.append(view("none-he", None, seed=9, model="resnet110", norm="none", status="diverged",
                     reason="non-finite loss at epoch 1, step 0"))
    a = claim_of(runs).lab_arm
    assert (a.k, a.n, a.pending, a.diverged) == (1, 4, 2, 1)
    assert a.per_run[-1].diverged and a.per_run[-1].reason.startswith("non-finite loss")


def test_the_threshold_is_strict_and_bn_less_runs_in_fp16_are_flagged():
    runs = arm(2, 2, norm="batch", precision="bf16") + [
        view("none-he", 0.2, best_val=0.2, model="resnet110", norm="none", precision="fp32")]
    c = claim_of(runs)
    assert c.lab_arm.k == 0 and c.control.precisions == ("bf16",)
    assert not c.narrow_precision  # fp32's range without BN: the verdict is the network's
    # what precision = "auto" does on a T4: the control in fp16, the BN-less arm in fp32: no concern
    t4 = (arm(2, 2, norm="batch", precision="fp16")
          + [view("none-he", 0.1, model="resnet110", norm="none", precision="fp32")])
    assert not claim_of(t4).narrow_precision
    fp16 = arm(2, 2, norm="batch") + [view("none-he", 0.1, model="resnet110", norm="none", precision="fp16")]
    assert claim_of(fp16).narrow_precision


def test_no_claim_without_both_norms():
    assert bn_claims(arm(0, 3), threshold=0.2, claim_rate=0.1) == []
