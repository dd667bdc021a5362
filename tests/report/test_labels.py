"""Human names for configurations: the model and the settings that tell it apart, in the report's language."""

from __future__ import annotations

import pytest

from labreport.science.conclusions import group_runs
from labreport.report.i18n import Lang
from labreport.report.labels import Labels, factor_value, model_name
from views import view


@pytest.fixture(scope="module")
def ru():
    return Lang("ru")


def test_a_grid_point_reads_as_a_reader_writes_it(ru):
    groups = group_runs([view("resnet20-reg", 0.3, dropout=d, weight_decay=w)
                         for d in (0.0, 0.15) for w in (0.0, 1e-5)])
    names = Labels(groups, ru)
    assert names(groups[3]) == "ResNet-20, dropout 0,15, L2 1·10⁻⁵"
    assert names(groups[0]) == "ResNet-20, dropout 0, L2 0"
    assert names.coords(groups[3]) == "dropout 0,15, L2 1·10⁻⁵"
    en = Labels(groups, Lang("en"))
    assert en(groups[3]) == "ResNet-20, dropout 0.15, L2 1·10⁻⁵"


def test_settings_outside_the_grid_tell_experiments_of_one_model_apart(ru):
    runs = [view("resnet110-bn", 0.5, model="resnet110", seed=0), view("resnet110-nobn", 0.1, model="resnet110",
                                                                          norm="none", seed=0),
            view("resnet110-nobn-fixup", 0.3, model="resnet110", norm="none", init="fixup", seed=0),
            view("resnet18", 0.6, model="resnet18")]
    names = Labels(group_runs(runs), ru)
    assert [names.of(g) for g in ("resnet110-bn[seed=0]", "resnet110-nobn[seed=0]")] == [
        "resnet110-bn[seed=0]", "resnet110-nobn[seed=0]"]  # raw labels of runs are not group labels
    labels = [names(g) for g in group_runs(runs)]
    assert labels == ["ResNet-110, BN, инициализация He", "ResNet-110, без BN, инициализация He",
                      "ResNet-110, без BN, инициализация Fixup", "ResNet-18"]


def test_two_experiments_with_the_same_settings_are_named_by_experiment(ru):
    names = Labels(group_runs([view("a", 0.5), view("b", 0.6)]), ru)
    assert names.of("a") == "ResNet-20 (a)" and names.of("b") == "ResNet-20 (b)"


def test_values_and_models(ru):
    assert factor_value("batch_size", 64, ru) == "батч 64"
    assert factor_value("epochs", 21, ru) == "21 эпоха"
    assert factor_value("lr", 1e-3, ru) == "lr 1·10⁻³"
    assert model_name("plain110", ru) == "плоская-110" and model_name("cifarnet", ru) == "CIFARNet"


def test_ones_own_model_is_named_as_the_student_names_it_and_told_from_the_catalogues(ru):
    from labreport.science.identity import identify

    mine = [view(f"own-{n}", 0.9, model="nets.py:ResNet", norm=n) for n in ("batch", "none")]
    for v in mine:
        v.spec["model_args"] = {"depth": 110}
    alone = Labels(group_runs(mine), ru, identify(mine))
    assert [alone(g) for g in group_runs(mine)] == ["ResNet-110, BN", "ResNet-110, без BN"]
    both = [view("cat", 0.9, model="resnet110"), *mine]
    names = Labels(group_runs(both), ru, identify(both))
    assert [names(g) for g in group_runs(both)] == [
        "ResNet-110", "ResNet-110 (собственная реализация), BN", "ResNet-110 (собственная реализация), без BN"]
