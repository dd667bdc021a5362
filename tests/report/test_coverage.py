"""What of the lab's matrix a profile leaves out, said per task: the smoke profile's task 3 without
ResNet-18, task 4 at 2 of its 12 configurations, the bn-claim profile without tasks 3 and 4."""

from __future__ import annotations

from pathlib import Path

from labreport.config import load_config
from labreport.report.coverage import not_run, texts
from labreport.report.i18n import Lang

LAB = Path(__file__).resolve().parents[2] / "experiments.toml"


def test_the_smoke_profile_leaves_out_resnet18_and_most_of_the_grid():
    lab, smoke = load_config(LAB), load_config(LAB, "smoke")
    found = {n.experiment: n for n in not_run(smoke.runs, lab.runs)}
    assert set(found) == {"resnet18", "resnet20-reg"}  # seeds and epochs are the preview's, not configurations
    r18, grid = found["resnet18"], found["resnet20-reg"]
    assert (r18.task, r18.models, r18.missing, r18.total, r18.levels) == ("3", ("resnet18",), 1, 1, ())
    assert (grid.missing, grid.total) == (10, 12)
    assert grid.levels == (("dropout", (0.15, 0.3)), ("weight_decay", (1e-05, 0.001)))


def test_the_sentences_in_both_languages():
    smoke = load_config(LAB, "smoke")
    ru, en = texts(smoke, Lang("ru")), texts(smoke, Lang("en"))
    assert set(ru) == {"3", "4"}
    assert ru["3"] == "В лабораторной матрице есть также ResNet-18 (эксперимент resnet18) – в профиле smoke эта сеть " \
                      "не обучалась."
    assert en["4"] == ("ResNet-20 (experiment resnet20-reg) is run in profile smoke at 2 of the 12 configurations of "
                       "the lab's matrix (without dropout 0.15 and 0.3; L2 1·10⁻⁵ and 1·10⁻³).")
    assert ru["4"].startswith("Для ResNet-20 (эксперимент resnet20-reg) в профиле smoke обучено лишь 2 из 12 "
                              "конфигураций лабораторной матрицы (без значений dropout 0,15 и 0,3;")


def test_tasks_left_out_altogether_and_the_labs_own_report():
    bn = texts(load_config(LAB, "bn-claim"), Lang("en"))
    assert bn == {"-": "The lab's matrix also has the tasks “ResNet-18 against the baseline CNN (task 3)” and "
                       "“ResNet-20: dropout and L2 regularisation (task 4)”, not run in profile bn-claim."}
    assert texts(load_config(LAB), Lang("ru")) == {}  # the lab's matrix leaves nothing out of itself
    quick = load_config(LAB, "quick")  # shorter runs of every configuration: a preview, nothing left out
    assert texts(quick, Lang("ru")) == {}
    narrowed = load_config(LAB, None, ["experiment.resnet20-reg.dropout=[0.0, 0.15]"])
    (n,) = not_run(narrowed.runs, load_config(LAB).runs)
    assert (n.missing, n.levels) == (4, (("dropout", (0.3,)),))
    assert "with the settings given on top of experiments.toml" in texts(narrowed, Lang("en"))["4"]
