"""Conclusions on hand-built results: best model, ties, success rate, interval, test, partial data."""

from __future__ import annotations

import math

import pytest

from labreport.science.conclusions import best_group, conclude, group_runs, mean_std, paper_comparison
from labreport.science.runs import RunView
from views import view  # hand-made runs, shared by the science and report tests


# --- groups ----------------------------------------------------------------------------------
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
    assert best.label == "b" and best.mean == pytest.approx(0.79)


def test_best_of_exactly_equal_means_is_the_first_in_matrix_order():
    assert best_group(group_runs([view("a", 0.8), view("b", 0.8), view("c", 0.7)])).label == "a"


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


# --- the whole study ---------------------------------------------------------------------------
def test_conclude_finds_tasks_grid_arms_and_paper_rows():
    views = [view("cnn", 0.70, model="cifarnet", task="3"), view("r18", 0.80, model="resnet18", task="3")]
    views += [view("r20", 0.80 + d / 10 + w * 100, task="4", dropout=d, weight_decay=w)
              for d in (0.0, 0.15) for w in (0.0, 1e-4)]
    views += [view("r110bn", 0.82, model="resnet110", task="5", seed=s) for s in range(2)]
    views += [view("nobn", 0.5 if s == 0 else 0.1, best_val=0.5 if s == 0 else 0.1, seed=s, model="resnet110",
                   norm="none") for s in range(4)]
    views = [v if v.experiment != "nobn" else RunView(v.experiment, "5", *[getattr(v, f) for f in (
        "label", "key", "spec", "varying", "status", "result", "history", "problems")]) for v in views]
    study = conclude(views, threshold=0.2, claim_rate=0.1)
    assert [t.task for t in study.tasks] == ["3", "4", "5"]
    t4 = study.tasks[1]
    assert t4.heatmap == ("dropout", "weight_decay") and len(t4.groups) == 4
    assert study.ranking.best.label.startswith("r20[dropout=0.15, weight_decay=0.0001")
    assert study.ranking.considered == 2 + 4 + 1 + 1
    claim = study.claim
    assert claim.model == "resnet110" and claim.control.label == "resnet110, BN, init he"
    assert [a.label for a in claim.arms] == ["resnet110, no BN, init he"]
    assert (claim.arms[0].k, claim.arms[0].n) == (1, 4) and claim.control_trains
    paper = {p.model: p for p in study.paper}
    assert paper["resnet110"].ours_error == pytest.approx(18.0) and paper["resnet110"].paper_error == 6.43
    assert paper["resnet20"].ours_error == pytest.approx(100 * (1 - (0.80 + 0.015 + 0.01)))


def test_paper_comparison_ignores_bn_less_runs():
    rows = paper_comparison(group_runs([view("nobn", 0.5, model="resnet110", norm="none")]))
    assert rows == []


def test_a_configuration_counts_as_trained_for_overfitting_only_when_every_run_beat_the_threshold():
    views = [view("bn", 0.85, model="resnet110", task="5", seed=s, train_acc=0.97) for s in range(2)]
    views += [view("nobn", acc, best_val=acc, seed=s, model="resnet110", task="5", norm="none", train_acc=acc + 0.01)
              for s, acc in enumerate((0.55, 0.10))]
    views += [view("chance", 0.10, best_val=0.10, seed=s, model="resnet110", task="5", norm="none") for s in range(2)]
    res = {r.label.split("[")[0]: r for r in conclude(views, threshold=0.2, claim_rate=0.1).resources}
    assert res["bn"].trained and res["bn"].gap == pytest.approx(0.12)
    assert not res["nobn"].trained and res["nobn"].gap == pytest.approx(0.01)  # one of two at chance
    assert not res["chance"].trained
    # the threshold is the one the study uses: at 0.05 both BN-less runs trained
    res = {r.label.split("[")[0]: r for r in conclude(views, threshold=0.05, claim_rate=0.1).resources}
    assert res["nobn"].trained and res["chance"].trained
