"""Conclusions on hand-built results: best model, ties, success rate, interval, test, partial data."""

from __future__ import annotations

import math

import pytest

from labreport.analysis import (
    best_group,
    binom_sf,
    conclude,
    factor_effect,
    group_runs,
    mean_std,
    paper_comparison,
    success_rate,
    wilson_interval,
)
from labreport.results import RunView


def view(exp, acc, *, model="resnet20", task="4", status="done", best_val=None, seed=None, norm="batch",
         epochs=3, train_acc=None, **coords) -> RunView:
    varying = dict(coords)
    if seed is not None:
        varying["seed"] = seed
    spec = {"model": model, "norm": norm, "seed": seed or 0, "epochs": epochs, **coords}
    result = None
    if status in ("done", "diverged"):
        result = {"status": "completed" if status == "done" else "diverged", "test_acc_at_best": acc,
                  "best_val_acc": best_val if best_val is not None else acc, "final_test_acc": acc,
                  "final_train_acc": train_acc if train_acc is not None else acc, "mean_epoch_time_s": 2.0,
                  "params": 100, "epochs_run": epochs}
    label = exp + (f"[{', '.join(f'{k}={v}' for k, v in varying.items())}]" if varying else "")
    return RunView(exp, task, label, "0" * 16, spec, varying, status, result, ())


# --- statistics ------------------------------------------------------------------------------
def test_wilson_interval_known_values():
    # reference values: k=0, n=10 -> (0, 0.2775); k=5, n=10 -> (0.2366, 0.7634)
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_binomial_tail_exact():
    assert binom_sf(0, 10, 0.1) == pytest.approx(1.0)
    assert binom_sf(10, 10, 0.1) == pytest.approx(1e-10)
    # P(X >= 3 | n=10, p=0.1) = 1 - P(0) - P(1) - P(2) = 0.0702
    assert binom_sf(3, 10, 0.1) == pytest.approx(0.0702, abs=1e-4)
    assert binom_sf(4, 10, 0.1) == pytest.approx(0.0128, abs=1e-4)


def test_mean_std_single_and_several():
    assert mean_std([]) == (None, None)
    assert mean_std([0.5]) == (0.5, None)
    m, s = mean_std([0.5, 0.7])
    assert m == pytest.approx(0.6) and s == pytest.approx(math.sqrt(0.02))


# --- best model --------------------------------------------------------------------------------
def test_best_is_by_mean_over_seeds_not_by_single_best_run():
    runs = [view("a", 0.90, seed=0), view("a", 0.50, seed=1),  # mean 0.70, one lucky seed
            view("b", 0.80, seed=0), view("b", 0.78, seed=1)]  # mean 0.79
    best = best_group(group_runs(runs))
    assert [g.label for g in best.groups] == ["b"] and best.mean == pytest.approx(0.79)
    assert best.considered == 2


def test_best_reports_ties():
    best = best_group(group_runs([view("a", 0.8), view("b", 0.8), view("c", 0.7)]))
    assert sorted(g.label for g in best.groups) == ["a", "b"]


def test_best_on_nothing_finished_is_none():
    assert best_group(group_runs([view("a", None, status="missing"), view("b", None, status="partial")])) is None


def test_partial_group_keeps_missing_seeds_visible():
    g = group_runs([view("a", 0.8, seed=0), view("a", None, seed=1, status="partial"),
                    view("a", None, seed=2, status="missing")])[0]
    assert g.n_total == 3 and len(g.finished) == 1 and not g.complete
    assert g.mean == pytest.approx(0.8) and g.std is None


def test_diverged_run_without_result_metric_is_not_averaged_as_zero():
    g = group_runs([view("a", 0.8, seed=0), view("a", None, seed=1, status="diverged")])[0]
    assert len(g.finished) == 2 and g.values == (0.8,)


# --- effects of a grid ----------------------------------------------------------------------------
def test_factor_effect_direction_and_spread():
    runs = [view("g", acc, dropout=d, weight_decay=w)
            for d, w, acc in [(0.0, 0.0, 0.80), (0.0, 1e-4, 0.82), (0.3, 0.0, 0.70), (0.3, 1e-4, 0.74)]]
    groups = group_runs(runs)
    e = factor_effect(groups, "dropout")
    assert e.direction == "decreasing" and e.best_level == 0.0
    assert e.spread == pytest.approx(0.81 - 0.72)
    w = factor_effect(groups, "weight_decay")
    assert w.direction == "increasing" and w.best_level == 1e-4 and w.spread == pytest.approx(0.78 - 0.75)


def test_factor_effect_flat_and_single_level():
    groups = group_runs([view("g", 0.8001, dropout=0.0), view("g", 0.8, dropout=0.1)])
    assert factor_effect(groups, "dropout").direction == "flat"
    assert factor_effect(group_runs([view("g", 0.8, dropout=0.0)]), "dropout").direction == "n/a"


# --- the BatchNorm claim -------------------------------------------------------------------------
def nobn(k_trained, n, pending=0):
    runs = [view("nobn", 0.5, seed=i, best_val=0.5, model="resnet110", norm="none") for i in range(k_trained)]
    runs += [view("nobn", 0.1, seed=i, best_val=0.1, model="resnet110", norm="none") for i in range(k_trained, n)]
    runs += [view("nobn", None, seed=n + i, model="resnet110", norm="none", status="partial") for i in range(pending)]
    return runs


def test_success_rate_supported_when_few_train():
    sr = success_rate("x", nobn(1, 10), threshold=0.2, claim_rate=0.1)
    assert (sr.k, sr.n, sr.rate) == (1, 10, 0.1)
    assert sr.verdict == "supported" and sr.p_value == pytest.approx(binom_sf(1, 10, 0.1))


def test_success_rate_contradicted_when_many_train():
    sr = success_rate("x", nobn(6, 10), threshold=0.2, claim_rate=0.1)
    assert sr.verdict == "contradicted" and sr.p_value < 0.05
    assert sr.ci[0] > 0.1


def test_success_rate_inconclusive_with_few_runs_or_borderline():
    assert success_rate("x", nobn(0, 1), 0.2, 0.1).verdict == "inconclusive"  # one run proves nothing
    assert success_rate("x", nobn(2, 10), 0.2, 0.1).verdict == "inconclusive"  # 20% observed, p = 0.26


def test_success_rate_counts_diverged_as_not_trained_and_reports_pending():
    runs = nobn(1, 3, pending=2) + [view("nobn", None, seed=9, model="resnet110", norm="none", status="diverged")]
    sr = success_rate("x", runs, 0.2, 0.1)
    assert (sr.k, sr.n, sr.pending) == (1, 4, 2)
    assert sr.per_run[-1][2] is False


def test_success_rate_threshold_is_strict():
    runs = [view("nobn", 0.2, best_val=0.2, model="resnet110", norm="none")]
    assert success_rate("x", runs, threshold=0.2, claim_rate=0.1).k == 0


def test_no_data_verdict():
    sr = success_rate("x", nobn(0, 0, pending=3), 0.2, 0.1)
    assert sr.verdict == "no data" and sr.rate is None and sr.pending == 3


# --- the whole study ---------------------------------------------------------------------------
def test_conclude_finds_tasks_grid_arms_and_paper_rows():
    views = [view("cnn", 0.70, model="cifarnet", task="3"), view("r18", 0.80, model="resnet18", task="3")]
    views += [view("r20", 0.80 + d / 10 + w * 100, task="4", dropout=d, weight_decay=w)
              for d in (0.0, 0.15) for w in (0.0, 1e-4)]
    views += [view("r110bn", 0.82, model="resnet110", task="5", seed=s) for s in range(2)]
    views += nobn(1, 4)
    views = [v if v.experiment != "nobn" else RunView(v.experiment, "5", *[getattr(v, f) for f in (
        "label", "key", "spec", "varying", "status", "result", "history", "problems")]) for v in views]
    study = conclude(views, threshold=0.2, claim_rate=0.1)
    assert [t.task for t in study.tasks] == ["3", "4", "5"]
    t4 = study.tasks[1]
    assert t4.heatmap == ("dropout", "weight_decay") and len(t4.groups) == 4
    assert study.best.groups[0].label.startswith("r20[dropout=0.15, weight_decay=0.0001")
    assert [a.label for a in study.arms] == ["resnet110, BN", "resnet110, no BN"]
    assert study.claim.label == "resnet110, no BN" and (study.claim.k, study.claim.n) == (1, 4)
    paper = {p.model: p for p in study.paper}
    assert paper["resnet110"].ours_error == pytest.approx(18.0) and paper["resnet110"].paper_error == 6.43
    assert paper["resnet20"].ours_error == pytest.approx(100 * (1 - (0.80 + 0.015 + 0.01)))


def test_paper_comparison_ignores_bn_less_runs():
    rows = paper_comparison(group_runs([view("nobn", 0.5, model="resnet110", norm="none")]))
    assert rows == []
