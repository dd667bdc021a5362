"""He et al. 2015's recipe as `--profile paper`: max_iters (without changing any existing run key),
experiments a profile selects, the schedule at the paper's iterations, the trainer stopping at
max_iters, and the comparison with Table 6's only published spread (ResNet-110, 6.61 ± 0.16)."""
from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from labreport.testing import spec_from_dict
from labreport.report.study import paper_recipe
from labreport.science.conclusions import group_runs, paper_comparison, trained_as, within_spread
from labreport.cli import main
from labreport.config import load_config
from labreport.spec import TrainSpec
from labreport.engine.datasets import load as load_data
from labreport.errors import ConfigError
from labreport.report.build import build
from labreport.science.runs import RunView
from labreport.engine.schedule import lr_at, total_steps
from labreport.store import RunStore
from labreport.engine.splits import prepare
from labreport.engine.trainer import train

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "experiments.toml"

# `labreport plan --json` of the shipped experiments.toml before max_iters and profile experiment
# lists existed: adding them must not change a single key (finished runs would count as missing).
KEYS = {
    "resnet18": "f18e273e0b26e118", "cifarnet": "07e39b3cc643073b",
    "resnet20-reg[dropout=0, weight_decay=0]": "e96da77a29adb522",
    "resnet20-reg[dropout=0, weight_decay=1e-05]": "f7fb5f35107257d4",
    "resnet20-reg[dropout=0, weight_decay=0.0001]": "7e04665b63a75189",
    "resnet20-reg[dropout=0, weight_decay=0.001]": "cc4197dcf1835382",
    "resnet20-reg[dropout=0.15, weight_decay=0]": "5fbb61ba320a2343",
    "resnet20-reg[dropout=0.15, weight_decay=1e-05]": "9e38939d4015c601",
    "resnet20-reg[dropout=0.15, weight_decay=0.0001]": "de6a38a951e7a087",
    "resnet20-reg[dropout=0.15, weight_decay=0.001]": "054a0bfd1f18e49a",
    "resnet20-reg[dropout=0.3, weight_decay=0]": "16404d61d29ca750",
    "resnet20-reg[dropout=0.3, weight_decay=1e-05]": "838c3ea871bed665",
    "resnet20-reg[dropout=0.3, weight_decay=0.0001]": "dfa6afc8a14a2c76",
    "resnet20-reg[dropout=0.3, weight_decay=0.001]": "4cd13f2942e2306b",
    "resnet110-bn[seed=0]": "df09623d426997ec", "resnet110-bn[seed=1]": "12d1443dd273aa32",
    "resnet110-bn[seed=2]": "9c11a2c5d6f57a22",
    "resnet110-nobn[seed=0]": "4c13ac5d1aa06807", "resnet110-nobn[seed=1]": "b7fbed0f473e73d8",
    "resnet110-nobn[seed=2]": "a3665d50edc79cdd", "resnet110-nobn[seed=3]": "b67b6bd21aaa70f1",
    "resnet110-nobn[seed=4]": "61a2fee59d37efc0", "resnet110-nobn[seed=5]": "37c8ff9498a6d6d7",
    "resnet110-nobn[seed=6]": "84ee3eb3afae8571", "resnet110-nobn[seed=7]": "f0c32067c2c3c325",
    "resnet110-nobn[seed=8]": "5b6248d18e325fbf", "resnet110-nobn[seed=9]": "165963295dd753c3",
}
QUICK_KEYS = {  # the quick profile (more images, 2 BN-less seeds): a pin against code changes
    "resnet18": "eff513f49cd5e439", "resnet20-reg[dropout=0.15, weight_decay=0]": "80df1d82673d2f6a",
    "resnet20-reg[dropout=0.3, weight_decay=0.0001]": "497ba815b7c528cc",
    "resnet110-nobn[seed=0]": "066db85e3aae4581", "resnet110-nobn[seed=1]": "adaac94ca6f1dc96",
}


def test_shipped_keys_are_unchanged():
    assert {r.label: r.key for r in load_config(SHIPPED).runs} == KEYS
    quick = {r.label: r.key for r in load_config(SHIPPED, "quick").runs}
    assert {k: quick[k] for k in QUICK_KEYS} == QUICK_KEYS


def test_max_iters_is_in_the_spec_and_the_key_only_when_set():
    plain = TrainSpec(model="resnet20")
    assert "max_iters" not in plain.to_dict()
    capped = TrainSpec(model="resnet20", max_iters=100)
    assert capped.to_dict()["max_iters"] == 100 and capped.key != plain.key
    assert spec_from_dict(capped.to_dict()) == capped and spec_from_dict(plain.to_dict()) == plain


# --------------------------------------------------------------------------------------------
# The profile
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paper():
    return load_config(SHIPPED, "paper")


def test_paper_profile_runs_the_paper_depths_only(paper):
    assert [(r.experiment, r.spec.model, r.spec.seed) for r in paper.runs] == [
        *(("paper-depths", f"resnet{d}", 0) for d in (20, 32, 44, 56)),
        *(("paper-resnet110", "resnet110", s) for s in range(5))]
    assert {r.task for r in paper.runs} == {"paper"}
    recipe = paper_recipe(paper)  # read from [profile.paper]: the one place it is written
    assert recipe == {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 128,
                      "schedule": "step", "schedule_unit": "iter", "milestones": [32000, 48000], "max_iters": 64000,
                      "augment": True, "val_size": 5000}
    for r in paper.runs:
        s = r.spec
        assert (s.optimizer, s.lr, s.momentum, s.weight_decay, s.batch_size) == ("sgd", 0.1, 0.9, 1e-4, 128)
        assert (s.schedule, s.milestones, s.schedule_unit, s.max_iters) == ("step", (32000, 48000), "iter", 64000)
        assert s.augment and s.val_size == 5000 and s.norm == "batch"
        assert s.epochs == 183  # 45,000 // 128 = 351 steps per epoch; 64,000 / 351 = 182.3
        assert trained_as(s.to_dict(), recipe)
        assert (s.warmup, s.warmup_lr) == ((400, 0.01) if s.model == "resnet110" else (0, 0.0))
    # the lab's matrix does not include them
    assert not {r.experiment for r in load_config(SHIPPED).runs} & {"paper-depths", "paper-resnet110"}


def test_paper_schedule_at_the_papers_iterations(paper):
    depths = next(r.spec for r in paper.runs if r.spec.model == "resnet20")
    r110 = next(r.spec for r in paper.runs if r.spec.model == "resnet110")
    per_epoch = 351
    assert [lr_at(depths, i, per_epoch) for i in (0, 399, 400, 31999)] == [0.1] * 4
    assert lr_at(depths, 32000, per_epoch) == pytest.approx(0.01)
    assert lr_at(depths, 47999, per_epoch) == pytest.approx(0.01)
    assert lr_at(depths, 48000, per_epoch) == pytest.approx(0.001)
    assert lr_at(depths, 63999, per_epoch) == pytest.approx(0.001)
    # ResNet-110: 0.01 until the training error is below 80% (about 400 iterations), then 0.1
    assert lr_at(r110, 0, per_epoch) == lr_at(r110, 399, per_epoch) == 0.01
    assert lr_at(r110, 400, per_epoch) == 0.1 and lr_at(r110, 31999, per_epoch) == 0.1
    assert lr_at(r110, 32000, per_epoch) == pytest.approx(0.01)
    assert lr_at(r110, 48000, per_epoch) == pytest.approx(0.001)
    assert total_steps(r110, per_epoch) == 64000


def test_plan_lists_the_paper_runs_with_their_schedule():
    res = CliRunner().invoke(main, ["--config", str(SHIPPED), "plan", "--profile", "paper"])
    assert res.exit_code == 0, res.output
    assert "paper-depths (task paper): resnet20, 4 run(s), 183 epochs, sgd lr=0.1, batch 128; " \
           "lr x0.1 at 32000, 48000 iter; stop at 64000 iter" in res.output
    assert "paper-resnet110 (task paper): resnet110, 5 run(s), 183 epochs, sgd lr=0.1, batch 128; " \
           "warm-up lr 0.01 for 400 iter; lr x0.1 at 32000, 48000 iter; stop at 64000 iter" in res.output
    assert "9 runs (9 distinct), profile 'paper'" in res.output and "resnet20-reg" not in res.output


# --------------------------------------------------------------------------------------------
# enabled = false and [profile.NAME] experiments
# --------------------------------------------------------------------------------------------
def _load(tmp_path, text, profile=None):
    p = tmp_path / "e.toml"
    p.write_text(text)
    return load_config(p, profile)


TWO = ('[[experiment]]\nname = "a"\nmodel = "resnet20"\n'
       '[[experiment]]\nname = "b"\nmodel = "resnet32"\nenabled = false\n')


def test_disabled_experiments_run_only_when_a_profile_lists_them(tmp_path):
    assert [e.name for e in _load(tmp_path, TWO).experiments] == ["a"]
    text = TWO + '[profile.p]\nexperiments = ["b"]\nepochs = 2\n[profile.q]\nepochs = 3\n'
    cfg = _load(tmp_path, text, "p")
    assert [(r.experiment, r.spec.epochs) for r in cfg.runs] == [("b", 2)]
    assert [(r.experiment, r.spec.epochs) for r in _load(tmp_path, text, "q").runs] == [("a", 3)]


@pytest.mark.parametrize("text, profile, fragment", [
    (TWO.replace("enabled = false", "enabled = 0"), None, "experiment 'b': 'enabled' must be true or false"),
    (TWO.replace('name = "a"\nmodel = "resnet20"\n', 'name = "a"\nmodel = "resnet20"\nenabled = false\n'), None,
     "every [[experiment]] has enabled = false"),
    (TWO + '[profile.p]\nexperiments = ["c"]\n', None, "[profile.p]: 'experiments': unknown experiment 'c'"),
    (TWO + '[profile.p]\nexperiments = []\n', None, "'experiments' must be a non-empty list"),
    (TWO + '[profile.p]\nexperiments = "a"\n', None, "'experiments' must be a non-empty list"),
    (TWO + '[profile.p]\nexperiments = ["a", "a"]\n', "p", "lists the same experiment twice"),
    (TWO + '[profile.p]\nexperiment = ["a"]\n', "p", "'experiment' must be a table"),
    (TWO.replace('model = "resnet32"', 'model = "resnet32"\nmax_iters = -1'), None, "'max_iters' must be >= 0"),
    (TWO.replace('model = "resnet32"', 'model = "resnet32"\nmax_iters = 10\nval_size = 49999\nbatch_size = 2'),
     None, "batch_size is larger than the 1 training images"),
])
def test_experiment_selection_errors(tmp_path, text, profile, fragment):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, profile)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------------------------
# The trainer stops at max_iters
# --------------------------------------------------------------------------------------------
def test_training_stops_at_max_iters_in_a_partial_last_epoch(tmp_path, cifar_dir):
    data = load_data(cifar_dir, download=False)
    spec = TrainSpec(model="cifarnet", batch_size=32, train_subset=64, val_size=32, test_subset=32, lr=1e-3,
                     max_iters=5, epochs=3)  # 2 steps per epoch: epochs 1, 2 and one step of epoch 3
    store = RunStore(tmp_path / "runs")
    res = train(spec, prepare(data, spec, torch.device("cpu")), torch.device("cpu"), store)
    hist = store.read_history(spec.key)
    assert res["status"] == "completed" and res["steps"] == 5 and res["epochs_run"] == 3
    assert [h["steps"] for h in hist] == [2, 4, 5]
    assert res["spec"]["max_iters"] == 5
    capped = TrainSpec(**{**spec.to_dict(), "max_iters": 3, "epochs": 50})  # max_iters wins over epochs
    res = train(capped, prepare(data, capped, torch.device("cpu")), torch.device("cpu"), store)
    assert res["steps"] == 3 and res["epochs_run"] == 2


# --------------------------------------------------------------------------------------------
# Table 6's spread
# --------------------------------------------------------------------------------------------
def report_text(html: Path) -> str:
    """The report's body as a reader reads it: inline tags (names, references) gone, a block's end a space."""
    body = re.sub(r"</?(span|a|b|i|sub|sup)\b[^>]*>", "", html.read_text().split("<body", 1)[1])
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_within_spread():
    assert within_spread(6.70, 6.61, 0.16) is True
    assert within_spread(6.77, 6.61, 0.16) is True  # the edge counts
    assert within_spread(6.80, 6.61, 0.16) is False
    assert within_spread(None, 6.61, 0.16) is None and within_spread(7.0, 6.61, None) is None


def _view(model, acc, seed=0, recipe=True):
    spec = {"model": model, "norm": "batch", "seed": seed, "epochs": 183, **(
        {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 128, "schedule": "step",
         "milestones": [32000, 48000], "gamma": 0.1, "schedule_unit": "iter", "max_iters": 64000, "augment": True,
         "val_size": 5000}
        if recipe else {})}
    result = {"status": "completed", "test_acc_at_best": acc, "best_val_acc": acc, "final_test_acc": acc,
              "final_train_acc": acc, "epochs_run": 183}
    return RunView(model, "paper", f"{model}[seed={seed}]", "0" * 16, spec, {"seed": seed}, "done", result, ())


def test_paper_comparison_with_the_only_published_spread():
    views = [_view("resnet110", a, s) for s, a in enumerate((0.9330, 0.9340, 0.9350))]  # error 6.6 ± 0.1
    views += [_view("resnet20", 0.9120), _view("resnet56", 0.9290, recipe=False)]  # 8.80 (+0.05), 7.10 (+0.13)
    rows = {r.model: r for r in paper_comparison(group_runs(views), recipe=paper_recipe(load_config(SHIPPED)))}
    r110 = rows["resnet110"]
    assert r110.ours_error == pytest.approx(6.60) and r110.ours_std == pytest.approx(0.10)
    assert (r110.paper_error, r110.paper_mean, r110.paper_std, r110.paper_runs) == (6.43, 6.61, 0.16, 5)
    assert r110.within is True and r110.recipe is True
    assert rows["resnet20"].paper_std is None and rows["resnet20"].within is None
    assert rows["resnet20"].within_yardstick is True and rows["resnet56"].within_yardstick is True
    assert rows["resnet56"].recipe is False


def test_report_says_which_depths_are_within_the_spread(tmp_path):
    toml = SHIPPED.read_text()
    (tmp_path / "experiments.toml").write_text(toml.replace('language = "ru"', 'language = "en"'))
    config = load_config(tmp_path / "experiments.toml", "paper")
    store = RunStore(tmp_path / "runs")
    errors = {"resnet20": 8.80, "resnet32": 7.00, "resnet44": 7.20, "resnet56": 6.90}  # 20, 44, 56 within 0.16
    for i, run in enumerate(config.runs):
        acc = 1 - (errors.get(run.spec.model) or 6.40 + 0.1 * i) / 100  # 110: 6.8 .. 7.2: outside 6.61 ± 0.16
        res = {"key": run.key, "spec": run.spec.to_dict(), "status": "completed", "epochs_run": 183,
               "best_epoch": 183, "best_val_acc": acc, "test_acc_at_best": acc, "final_test_acc": acc,
               "final_train_acc": acc, "final_val_acc": acc, "mean_epoch_time_s": 1.0, "provenance": {},
               "params": 1000, "peak_mem_alloc_mib": None, "diverged_at_epoch": None}
        store.write_result(run.key, res)
    build(config, store, None, tmp_path / "r.html")
    html = report_text(tmp_path / "r.html")
    assert "Only ResNet-110 has a published spread there" in html
    assert "Our ResNet-110 error, 7.00 ± 0.16% over 5 runs, is outside 6.61 ± 0.16%." in html
    assert "6.43% (6.61 ± 0.16%)" in html
    assert "ResNet-110's ±0.16 points serve as a borrowed yardstick." in html
    for model, where in (("ResNet-20", "within"), ("ResNet-44", "within"), ("ResNet-56", "within"),
                         ("ResNet-32", "outside")):
        assert re.search(rf"Our {model} error, [\d.]+%, is {where} [\d.]+% ± 0.16 points.", html), model
    assert "These runs follow the paper's recipe (profile paper)" in html
    assert "The paper's recipe: ResNet-20…110" in html  # a user-visible title


# ---- task 5 with one's own ResNet-110: the README's example compared with the paper ----------------
EXAMPLE = ROOT / "examples" / "own-model"


def _own_study(tmp_path: Path, lang: str, extra: str = "") -> str:
    """The README's example (its nets.py, its experiments.toml) with hand-made results: the BatchNorm
    runs count the catalogue's 1,727,962 parameters, as the example's trained runs do, and a
    gradient-flow measurement of the built-in networks is in the store. The report's text, tags
    removed."""
    import random
    import shutil

    from labreport.testing import _write_made_up_gradflow

    for name in ("nets.py", "experiments.toml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    toml = tmp_path / "experiments.toml"
    toml.write_text(toml.read_text().replace("[report]\n", f'[report]\nlanguage = "{lang}"\n') + extra
                    + "[gradflow]\nenabled = true\n")  # off by default in the tests (conftest.py)
    config = load_config(toml)
    store = RunStore(tmp_path / "runs")
    for run in config.runs:
        bn = run.spec.norm == "batch"
        acc = 0.93 - 0.001 * run.spec.seed if bn else 0.1
        res = {"key": run.key, "spec": run.spec.to_dict(), "status": "completed", "epochs_run": 50, "best_epoch": 50,
               "best_val_acc": acc, "test_acc_at_best": acc, "final_test_acc": acc, "final_train_acc": acc,
               "final_val_acc": acc, "mean_epoch_time_s": 1.0, "params": 1_727_962 if bn else 1_723_914,
               "provenance": {"device": "AMD EPYC 7B13", "device_type": "cpu", "threads": 2, "cuda": "13.0",
                              "torch": "2.14.1+cu130", "precision": "fp32"},
               "peak_mem_alloc_mib": None, "diverged_at_epoch": None}
        store.write_result(run.key, res)
    _write_made_up_gradflow(tmp_path / "runs", config.gradflow, random.Random(0))
    build(config, store, None, tmp_path / "r.html")
    return report_text(tmp_path / "r.html")


def test_the_readme_example_is_compared_with_the_paper_as_the_students_resnet110(tmp_path):
    en = _own_study(tmp_path, "en")
    # the name the student gave, in the models table, with how its identity is known
    assert "ResNet-110 own implementation of ResNet-110 (the same number of parameters): ResNet(depth=110) " \
           "from nets.py 1,727,962 1.70" in en
    # section 3.4 and the conclusions: the student's ResNet-110 against Table 6
    assert "Our ResNet-110 (own implementation) error, 7.45 ± 0.30% over 10 runs, is outside 6.61 ± 0.16%." in en
    assert "There is no ResNet-110 with BatchNorm among these runs" not in en
    assert "ResNet-110 (own implementation): test error 7.45% against 6.43% in [1]" in en
    assert "ResNet-110 (own implementation) without BatchNorm, He init: 0 of 10 runs trained" in en
    # the gradient flow was measured on the built-in networks: said so, and not quoted for the student's
    assert "These are labreport's built-in networks: the author's own implementation (ResNet-110) was not " \
           "measured" in en
    assert "(measured on it, subsection 1.1)" not in en  # the logits' spread is quoted for the built-in net only
    assert "labreport's built-in ResNet-110 without BatchNorm is" in en  # the conclusion names the network


def test_the_russian_report_and_a_declared_name(tmp_path):
    ru = _own_study(tmp_path, "ru", 'family = "cifar-resnet"\n')
    assert "Наша ошибка ResNet-110 (собственная реализация) – 7,45 ± 0,30 % по 10 запускам – вне пределов " \
           "6,61 ± 0,16 %." in ru
    assert "собственная реализация ResNet-110 (так объявлено в experiments.toml): ResNet(depth=110) из nets.py" in ru
    assert "Это встроенные сети labreport: собственная реализация автора (ResNet-110) не измерялась" in ru


@pytest.mark.parametrize("lines, error", [
    ('display_name = "Моя ResNet"\nfamily = "cifar-resnet"\n', None),
    ('family = "cifar-resnet"\ndepth = 110\n', None),
    ('family = "resnet"\n', "'family' must be one of"),
    ('family = "cifar-resnet"\ndepth = 100\n', "depth = 100, but model_args builds depth = 110"),
    ('display_name = ""\n', "'display_name' must be non-empty text"),
])
def test_what_the_report_is_told_of_an_own_model_never_changes_a_run_key(tmp_path, lines, error):
    import shutil

    for name in ("nets.py", "experiments.toml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    keys = [r.key for r in load_config(tmp_path / "experiments.toml").runs]
    toml = tmp_path / "experiments.toml"
    toml.write_text(toml.read_text().replace('display_name = "ResNet-110"', "").rstrip() + "\n" + lines)
    if error:
        with pytest.raises(ConfigError, match=re.escape(error)):
            load_config(toml)
    else:
        assert [r.key for r in load_config(toml).runs] == keys


def test_a_catalogue_model_takes_no_display_name(tmp_path):
    (tmp_path / "experiments.toml").write_text('[[experiment]]\nname = "a"\nmodel = "resnet20"\ndisplay_name = "X"\n')
    with pytest.raises(ConfigError, match="'display_name' is for a model of your own"):
        load_config(tmp_path / "experiments.toml")


def test_the_papers_recipe_is_what_profile_paper_says(tmp_path):
    """Editing [profile.paper] changes which runs count as trained with the paper's recipe: the recipe
    is read from the profile, never from a second copy of it."""
    text = SHIPPED.read_text(encoding="utf-8")
    edited = tmp_path / "experiments.toml"
    edited.write_text(text.replace("lr = 0.1\n", "lr = 0.05\n", 1), encoding="utf-8")
    recipe = paper_recipe(load_config(edited))
    assert recipe["lr"] == 0.05
    assert all(trained_as(r.spec.to_dict(), recipe) for r in load_config(edited, "paper").runs)
    assert not any(trained_as(r.spec.to_dict(), recipe) for r in load_config(SHIPPED, "paper").runs)
    no_profile = tmp_path / "bare.toml"
    no_profile.write_text('[[experiment]]\nname = "a"\nmodel = "resnet20"\n', encoding="utf-8")
    assert paper_recipe(load_config(no_profile)) == {}
    assert not trained_as({"lr": 0.1}, {})  # no recipe: no run trained with it
