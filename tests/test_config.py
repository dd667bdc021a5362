"""Tests for labreport.config: experiments.toml -> validated, expanded, keyed runs."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest

from labreport.testing import spec_from_dict
from labreport.models import MODELS
from labreport.config import load_config
from labreport.spec import SETTINGS
from labreport.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "experiments.toml"

EXP = '[[experiment]]\nname = "e"\nmodel = "resnet20"\n'


def exp(*lines: str, name: str = '"e"', model: str = '"resnet20"') -> str:
    """One [[experiment]] table with the given extra lines."""
    return f"[[experiment]]\nname = {name}\nmodel = {model}\n" + "".join(f"{line}\n" for line in lines)


def write(tmp_path: Path, text: str | bytes, filename: str = "experiments.toml") -> Path:
    p = tmp_path / filename
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def load(tmp_path: Path, text: str, profile: str | None = None, filename: str = "experiments.toml"):
    return load_config(write(tmp_path, text, filename), profile=profile)


def only_run(tmp_path: Path, *lines: str, **kw):
    cfg = load(tmp_path, exp(*lines, **kw))
    assert len(cfg.runs) == 1
    return cfg.runs[0]


def config_error(tmp_path: Path, text: str | bytes | None, profile: str | None = None) -> tuple[Path, str]:
    """Load `text` (None: no file at all), expect a ConfigError; return (path, message)."""
    p = tmp_path / "experiments.toml"
    if text is not None:
        write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p, profile=profile)
    assert info.value.exit_code == 2
    return p, str(info.value)


# --------------------------------------------------------------------------------------------
# Import hygiene
# --------------------------------------------------------------------------------------------
def test_importing_config_does_not_import_torch():
    code = "import labreport.config, sys; assert 'torch' not in sys.modules, 'torch imported'"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr


# --------------------------------------------------------------------------------------------
# The shipped experiments.toml
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    return load_config(SHIPPED)


@pytest.fixture(scope="module")
def shipped_quick():
    return load_config(SHIPPED, profile="quick")


def _by_task(cfg, task):
    return [r for r in cfg.runs if r.task == task]


def test_shipped_loads_with_tasks_3_4_5(shipped):
    assert shipped.path == SHIPPED and shipped.profile is None
    assert {r.task for r in shipped.runs} == {"3", "4", "5"}
    assert shipped.profiles == ("quick", "smoke", "bn-claim", "paper")
    assert shipped.report.language == "ru"
    assert shipped.data.root == "data" and shipped.data.download is True
    assert shipped.store.root == "runs"
    assert asdict(shipped.analysis) == {"trained_threshold": 0.2, "claim_rate": 0.10, "confidence": 0.95, "alpha": 0.05}
    assert shipped.base_dir == SHIPPED.parent


def test_shipped_task3_resnet18_and_cifarnet(shipped):
    runs = _by_task(shipped, "3")
    assert [(r.experiment, r.spec.model, r.spec.dropout) for r in runs] == [
        ("resnet18", "resnet18", 0.0), ("cifarnet", "cifarnet", 0.15)]
    assert all(r.spec.epochs == 50 and r.spec.batch_size == 128 for r in runs)


def test_shipped_task4_resnet20_dropout_x_weight_decay(shipped):
    runs = _by_task(shipped, "4")
    assert len(runs) == 12
    assert {r.experiment for r in runs} == {"resnet20-reg"}
    assert all(r.spec.model == "resnet20" and r.spec.optimizer == "adam" and r.spec.lr == 1e-4
               for r in runs)
    grid = list(itertools.product([0.0, 0.15, 0.3], [0.0, 1e-5, 1e-4, 1e-3]))
    assert [(r.spec.dropout, r.spec.weight_decay) for r in runs] == grid
    assert [r.varying for r in runs] == [(("dropout", d), ("weight_decay", w)) for d, w in grid]


def test_shipped_task5_resnet110_batchnorm_and_none(shipped):
    runs = _by_task(shipped, "5")
    assert all(r.spec.model == "resnet110" and r.spec.batch_size == 64 for r in runs)
    bn = [r for r in runs if r.spec.norm == "batch"]
    none = [r for r in runs if r.spec.norm == "none"]
    assert len(bn) + len(none) == len(runs)
    assert {r.experiment for r in bn} == {"resnet110-bn"}
    assert {r.experiment for r in none} == {"resnet110-nobn"}
    assert [r.spec.seed for r in none] == list(range(10))
    assert [r.spec.seed for r in bn] == [0, 1, 2]
    assert none[3].varying == (("seed", 3),)


def test_shipped_keys_are_distinct(shipped):
    keys = [r.key for r in shipped.runs]
    assert len(keys) == len(set(keys)) == 2 + 12 + 3 + 10
    assert shipped.unique_runs() == list(shipped.runs)


def test_shipped_quick_profile_shortens_every_run(shipped, shipped_quick):
    assert shipped_quick.profile == "quick"
    assert {r.experiment for r in shipped_quick.runs} == {r.experiment for r in shipped.runs}
    more = {"cifarnet": (8000, 3), "resnet18": (4000, 3), "resnet110-bn": (3000, 2), "resnet110-nobn": (3000, 2)}
    for r in shipped_quick.runs:
        assert (r.spec.train_subset, r.spec.epochs) == more.get(r.experiment, (2000, 2))
        assert r.spec.test_subset == 1000 and r.spec.val_size == 500 and r.spec.lr == 1e-3
    full = {r.experiment: r.spec.epochs for r in shipped.runs}
    assert all(r.spec.epochs < full[r.experiment] for r in shipped_quick.runs)
    # the BN control and the BN-less arm: 2 seeds each, at the same budget
    assert [r.spec.seed for r in shipped_quick.runs if r.experiment == "resnet110-bn"] == [0, 1]
    assert [r.spec.seed for r in shipped_quick.runs if r.experiment == "resnet110-nobn"] == [0, 1]
    # the settings the profile does not touch survive it
    assert len(_by_task(shipped_quick, "4")) == 12
    assert {r.spec.batch_size for r in _by_task(shipped_quick, "5")} == {64}
    # a profile run is a different training: no key is shared with the full plan
    assert not {r.key for r in shipped_quick.runs} & {r.key for r in shipped.runs}


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------
def test_two_list_keys_expand_to_product_in_written_order(tmp_path):
    # weight_decay written first: it is the outer (slowest) coordinate, not alphabetical order
    cfg = load(tmp_path, exp("weight_decay = [0.0, 1e-3]", "dropout = [0.1, 0.2, 0.3]"))
    assert [(r.spec.weight_decay, r.spec.dropout) for r in cfg.runs] == list(
        itertools.product([0.0, 1e-3], [0.1, 0.2, 0.3]))
    assert cfg.runs[1].varying == (("weight_decay", 0.0), ("dropout", 0.2))
    assert cfg.runs[1].label == "e[weight_decay=0, dropout=0.2]"
    assert len({r.key for r in cfg.runs}) == 6


def test_single_value_list_is_not_a_grid_coordinate(tmp_path):
    run = only_run(tmp_path, "dropout = [0.3]")
    assert run.spec.dropout == 0.3
    assert run.varying == () and run.label == "e"


def test_model_can_be_a_grid(tmp_path):
    cfg = load(tmp_path, exp(model='["resnet20", "resnet32"]'))
    assert [r.spec.model for r in cfg.runs] == ["resnet20", "resnet32"]
    assert cfg.runs[0].varying == (("model", "resnet20"),)


def test_seeds_count_expands_to_0_to_n_minus_1(tmp_path):
    cfg = load(tmp_path, exp("seeds = 3"))
    assert [r.spec.seed for r in cfg.runs] == [0, 1, 2]
    assert [r.varying for r in cfg.runs] == [(("seed", 0),), (("seed", 1),), (("seed", 2),)]
    assert cfg.runs[2].label == "e[seed=2]"
    assert cfg.experiments[0].seeds == (0, 1, 2)


def test_seeds_list_names_the_seeds(tmp_path):
    cfg = load(tmp_path, exp("seeds = [5, 9]"))
    assert [r.spec.seed for r in cfg.runs] == [5, 9]
    assert cfg.runs[1].varying == (("seed", 9),)


def test_seeds_go_innermost_after_grid_keys(tmp_path):
    cfg = load(tmp_path, exp("dropout = [0.1, 0.2]", "seeds = 2"))
    assert [(r.spec.dropout, r.spec.seed) for r in cfg.runs] == [(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)]
    assert cfg.runs[3].varying == (("dropout", 0.2), ("seed", 1))


def test_single_seed_is_not_varying(tmp_path):
    run = only_run(tmp_path, "seeds = [7]")
    assert run.spec.seed == 7 and run.varying == ()


def test_default_seeds_apply_unless_experiment_sets_its_own(tmp_path):
    cfg = load(tmp_path, "[defaults]\nseeds = 2\n" + exp(name='"a"') + exp("seeds = [4]", name='"b"'))
    assert [(r.experiment, r.spec.seed) for r in cfg.runs] == [("a", 0), ("a", 1), ("b", 4)]


def test_flat_milestones_list_is_one_value(tmp_path):
    run = only_run(tmp_path, 'schedule = "step"', "milestones = [30, 60]")
    assert run.spec.milestones == (30, 60)
    assert run.varying == ()
    assert run.spec.to_dict()["milestones"] == [30, 60]


def test_list_of_milestone_lists_is_a_grid(tmp_path):
    cfg = load(tmp_path, exp('schedule = "step"', "milestones = [[30, 60], [50]]"))
    assert [r.spec.milestones for r in cfg.runs] == [(30, 60), (50,)]
    assert cfg.runs[0].varying == (("milestones", (30, 60)),)
    assert cfg.runs[0].key != cfg.runs[1].key


# --------------------------------------------------------------------------------------------
# Layering: SETTINGS defaults < [defaults] < [[experiment]] < [profile.P] < [profile.P.experiment.E]
# --------------------------------------------------------------------------------------------
LAYERED = """\
[defaults]
epochs = 10
lr = 0.01
batch_size = 64
dropout = 0.1

[[experiment]]
name = "a"
model = "resnet20"
epochs = 20
lr = 0.02

[[experiment]]
name = "b"
model = "resnet32"

[profile.fast]
epochs = 3
train_subset = 100

[profile.fast.experiment.a]
epochs = 1
seeds = 2

[profile.other]
epochs = 7
"""


def _specs(cfg):
    return {r.experiment: r.spec for r in cfg.runs}


def test_layering_without_profile(tmp_path):
    s = _specs(load(tmp_path, LAYERED))
    assert (s["a"].epochs, s["a"].lr, s["a"].batch_size, s["a"].dropout) == (20, 0.02, 64, 0.1)
    assert (s["b"].epochs, s["b"].lr, s["b"].batch_size, s["b"].dropout) == (10, 0.01, 64, 0.1)
    assert s["a"].momentum == SETTINGS["momentum"].default and s["a"].train_subset == 0


def test_layering_with_profile_and_profile_experiment(tmp_path):
    cfg = load(tmp_path, LAYERED, profile="fast")
    assert cfg.profile == "fast" and cfg.profiles == ("fast", "other")
    a = [r.spec for r in cfg.runs if r.experiment == "a"]
    b = [r.spec for r in cfg.runs if r.experiment == "b"]
    assert [(x.epochs, x.seed) for x in a] == [(1, 0), (1, 1)]  # profile.experiment wins, own seeds
    assert [(x.epochs, x.seed) for x in b] == [(3, 0)]  # profile beats the defaults
    assert all(x.train_subset == 100 for x in a + b)  # profile applies to every experiment
    assert a[0].lr == 0.02 and b[0].lr == 0.01  # what the profile leaves alone is kept
    assert _specs(load(tmp_path, LAYERED, profile="other"))["a"].epochs == 7


def test_profile_overrides_experiment_grid(tmp_path):
    cfg = load(tmp_path, exp("dropout = [0.1, 0.2]") + "[profile.p]\ndropout = 0.0\n", profile="p")
    assert [(r.spec.dropout, r.varying) for r in cfg.runs] == [(0.0, ())]


def test_profile_seeds_override_experiment_seeds(tmp_path):
    cfg = load(tmp_path, exp("seeds = 10") + "[profile.p]\nseeds = 1\n", profile="p")
    assert [r.spec.seed for r in cfg.runs] == [0]


def test_unknown_profile_lists_the_profiles(tmp_path):
    p, msg = config_error(tmp_path, LAYERED, profile="slow")
    assert msg.startswith(str(p)) and "\n" not in msg
    assert "unknown profile 'slow'" in msg and "fast" in msg and "other" in msg


def test_unknown_profile_when_none_defined(tmp_path):
    _, msg = config_error(tmp_path, EXP, profile="quick")
    assert "unknown profile 'quick'" in msg and "none defined" in msg


# --------------------------------------------------------------------------------------------
# Run keys
# --------------------------------------------------------------------------------------------
def test_key_is_16_hex_and_stable_across_loads(tmp_path):
    text = exp("dropout = [0.0, 0.3]", "seeds = 2")
    k1 = [r.key for r in load(tmp_path, text).runs]
    k2 = [r.key for r in load(tmp_path, text, filename="copy.toml").runs]
    assert k1 == k2 and len(set(k1)) == 4
    assert all(re.fullmatch(r"[0-9a-f]{16}", k) for k in k1)


def test_key_ignores_experiment_name_task_description_and_report(tmp_path):
    a = only_run(tmp_path, "lr = 0.01")
    text_b = ('[report]\ntitle = "Another title"\nstudent = "X"\n'
              + exp("lr = 0.01", "task = 9", 'description = "renamed"', name='"renamed"'))
    b = load(tmp_path, text_b).runs[0]
    assert b.experiment == "renamed" and b.task == "9"
    assert a.key == b.key


def test_key_ignores_run_options(tmp_path):
    a = only_run(tmp_path)
    b = load(tmp_path, '[run]\ndevice = "cpu"\ncompile = true\nchannels_last = false\n' + EXP).runs[0]
    assert a.key == b.key


def test_explicit_default_value_gives_same_key_as_omitted(tmp_path):
    assert only_run(tmp_path).key == only_run(tmp_path, 'norm = "batch"', "dropout = 0.0",
                                              "epochs = 50", "seeds = [0]").key


@pytest.mark.parametrize("a, b", [
    ("lr = 1", "lr = 1.0"),
    ("dropout = 0", "dropout = 0.0"),
    ("weight_decay = 1e-5", "weight_decay = 0.00001"),
    ("lr = [1, 2]", "lr = [1.0, 2.0]"),
])
def test_equal_numbers_give_same_key(tmp_path, a, b):
    ka = [r.key for r in load(tmp_path, exp(a)).runs]
    kb = [r.key for r in load(tmp_path, exp(b)).runs]
    assert ka == kb


def test_int_lr_is_stored_as_float(tmp_path):
    run = only_run(tmp_path, "lr = 1")
    assert run.spec.lr == 1.0 and isinstance(run.spec.lr, float)


# A value different from the default for every training setting (model: resnet20 by default here).
CHANGED = {
    "model": 'model = "resnet32"',
    "model_args": "model_args = { width = 16 }",  # of a model of one's own (the test writes nets.py)
    "norm": 'norm = "none"',
    "dropout": "dropout = 0.5",
    "init": 'init = "torch"',
    "optimizer": 'optimizer = "sgd"',
    "lr": "lr = 0.1",
    "momentum": "momentum = 0.5",
    "nesterov": "nesterov = true",
    "weight_decay": "weight_decay = 1e-4",
    "schedule": 'schedule = "cosine"',
    "milestones": "milestones = [10]",
    "gamma": "gamma = 0.5",
    "schedule_unit": 'schedule_unit = "iter"',
    "warmup_lr": "warmup_lr = 0.01",
    "warmup": "warmup = 2",
    "epochs": "epochs = 51",
    "max_iters": "max_iters = 100",
    "batch_size": "batch_size = 64",
    "augment": "augment = false",
    "val_size": "val_size = 0",
    "train_subset": "train_subset = 1000",
    "test_subset": "test_subset = 1000",
    "precision": 'precision = "fp32"',
    "deterministic": "deterministic = true",
    "dataset": 'dataset = "cifar100"',
    "seed": "seeds = [1]",
}


def test_changed_table_covers_every_training_setting():
    assert set(CHANGED) == set(SETTINGS) | {"seed"}


@pytest.mark.parametrize("setting", sorted(CHANGED))
def test_changing_any_training_setting_changes_the_key(tmp_path, setting):
    base = only_run(tmp_path)
    line = CHANGED[setting]
    if setting == "model_args":
        (tmp_path / "nets.py").write_text("def net(num_classes=10, width=8):\n    ...\n")
        base = only_run(tmp_path, model='"nets.py:net"')
        changed = only_run(tmp_path, line, model='"nets.py:net"')
    elif setting == "model":
        changed = only_run(tmp_path, model='"resnet32"')
    else:
        changed = only_run(tmp_path, line)
    assert getattr(changed.spec, setting) != getattr(base.spec, setting)
    assert changed.key != base.key


def test_train_version_is_part_of_the_key(tmp_path, monkeypatch):
    run = only_run(tmp_path)
    before = run.key
    from labreport import spec as spec_mod  # where the key is computed

    monkeypatch.setattr(spec_mod, "TRAIN_VERSION", spec_mod.TRAIN_VERSION + 1)
    assert run.key != before


def test_trainspec_dict_round_trip_keeps_key(tmp_path):
    spec = only_run(tmp_path, 'schedule = "step"', "milestones = [3, 6]", "seeds = [4]").spec
    again = spec_from_dict(spec.to_dict())
    assert again == spec and again.key == spec.key


def test_unique_runs_dedups_identical_experiments(tmp_path):
    cfg = load(tmp_path, exp("lr = 1e-3", name='"first"') + exp("lr = 0.001", name='"second"')
               + exp("lr = 0.01", name='"third"'))
    assert len(cfg.runs) == 3
    assert cfg.runs[0].key == cfg.runs[1].key != cfg.runs[2].key
    assert [r.experiment for r in cfg.unique_runs()] == ["first", "third"]


def test_unique_runs_dedups_overlapping_grids(tmp_path):
    cfg = load(tmp_path, exp("dropout = [0.0, 0.1]", name='"a"') + exp("dropout = [0.1, 0.2]", name='"b"'))
    assert len(cfg.runs) == 4
    assert [(r.experiment, r.spec.dropout) for r in cfg.unique_runs()] == [
        ("a", 0.0), ("a", 0.1), ("b", 0.2)]


# --------------------------------------------------------------------------------------------
# Broken inputs: (id, file content or None for no file, profile, fragments the message must hold)
# --------------------------------------------------------------------------------------------
PROFILES = '[profile.quick]\nepochs = 2\n[profile.full]\nepochs = 100\n'

BROKEN = [
    # file level
    ("missing-file", None, None, ["no such file"]),
    ("not-utf8", b'[[experiment]]\nname = "\xff\xfe"\nmodel = "resnet20"\n', None, ["not UTF-8", "byte 23"]),
    ("toml-syntax", EXP + "lr = \n", None, ["TOML syntax error", "line 4"]),
    ("toml-duplicate-key", EXP + "lr = 1\nlr = 2\n", None, ["TOML syntax error", "line"]),
    ("toml-huge-int-literal", exp("lr = 1" + "0" * 5000), None, ["TOML syntax error"]),
    ("empty-file", "", None, ["top level", "no [[experiment]]"]),
    ("no-experiments", "[defaults]\nepochs = 3\n", None, ["top level", "no [[experiment]]"]),
    ("experiment-not-array", '[experiment]\nname = "e"\nmodel = "resnet20"\n', None,
     ["top level", "[[experiment]]"]),
    ("experiment-array-of-values", "experiment = [1, 2]\n", None, ["top level", "write [[experiment]]"]),
    ("unknown-section", '[reprot]\ntitle = "x"\n' + EXP, None, ["top level", "unknown section 'reprot'", "'report'"]),
    ("unknown-top-level-key", "epochs = 3\n" + EXP, None, ["top level", "unknown section 'epochs'"]),
    # unknown keys
    ("unknown-key-typo", exp("dropot = 0.1"), None,
     ["experiment 'e'", "unknown key 'dropot'", "did you mean 'dropout'"]),
    ("unknown-key-seed", exp("seed = 1"), None, ["experiment 'e'", "'seed'", "did you mean 'seeds'"]),
    ("unknown-key-no-match", exp("zzzzzz = 1"), None, ["experiment 'e'", "unknown key 'zzzzzz'", "dropout"]),
    ("unknown-key-defaults", "[defaults]\nepoch = 3\n" + EXP, None, ["[defaults]", "'epoch'", "'epochs'"]),
    ("unknown-key-report", '[report]\ntitel = "x"\n' + EXP, None, ["[report]", "'titel'", "'title'"]),
    ("unknown-key-analysis", "[analysis]\nthreshold = 0.5\n" + EXP, None, ["[analysis]", "'threshold'"]),
    ("unknown-key-data", '[data]\nrot = "d"\n' + EXP, None, ["[data]", "'rot'", "'root'"]),
    ("key-with-newline", exp('"dro\\npout" = 1'), None, ["experiment 'e'", "unknown key", "'dropout'"]),
    # wrong types
    ("type-epochs-str", exp('epochs = "ten"'), None, ["experiment 'e'", "'epochs' must be an integer", "'ten'"]),
    ("type-epochs-float", exp("epochs = 2.5"), None, ["'epochs' must be an integer", "2.5"]),
    ("type-epochs-bool", exp("epochs = true"), None, ["'epochs' must be an integer"]),
    ("type-augment-int", exp("augment = 1"), None, ["experiment 'e'", "'augment' must be true or false", "got 1"]),
    ("type-lr-bool", exp("lr = true"), None, ["experiment 'e'", "'lr' must be a number", "True"]),
    ("type-lr-str", exp('lr = "1e-3"'), None, ["'lr' must be a number"]),
    ("type-norm-int", exp("norm = 1"), None, ["'norm' must be a string"]),
    ("type-milestones-int", exp('schedule = "step"', "milestones = 30"), None, ["'milestones' must be a list"]),
    ("type-grid-nested", exp("dropout = [[0.1]]"), None, ["'dropout' must be a number"]),
    ("type-model-int", exp(model="20"), None, ["'model' must be a string"]),
    ("type-task", exp("task = true"), None, ["experiment 'e'", "'task' must be a number or text"]),
    ("type-task-list", exp("task = [3]"), None, ["'task' must be a number or text"]),
    ("type-description", exp("description = 3"), None, ["experiment 'e'", "'description' must be text"]),
    ("type-report-title", "[report]\ntitle = 3\n" + EXP, None, ["[report]", "'title' must be text"]),
    ("type-report-year-bool", "[report]\nyear = true\n" + EXP, None, ["[report]", "'year'"]),
    ("type-data-download", '[data]\ndownload = "yes"\n' + EXP, None, ["[data]", "'download'"]),
    ("type-run-compile", "[run]\ncompile = 1\n" + EXP, None, ["[run]", "'compile'"]),
    ("type-analysis-str", '[analysis]\nconfidence = "high"\n' + EXP, None, ["[analysis]", "'confidence'"]),
    ("type-analysis-bool", "[analysis]\nclaim_rate = true\n" + EXP, None, ["[analysis]", "'claim_rate'"]),
    ("type-defaults", '[defaults]\nepochs = "ten"\n' + EXP, None, ["[defaults]", "'epochs' must be an integer"]),
    ("report-not-table", 'report = "x"\n' + EXP, None, ["[report]", "must be a table"]),
    # out of range
    ("range-epochs-0", exp("epochs = 0"), None, ["experiment 'e'", "'epochs' must be >= 1", "got 0"]),
    ("range-lr-0", exp("lr = 0"), None, ["experiment 'e'", "'lr' must be > 0", "got 0.0"]),
    ("range-lr-negative", exp("lr = -1"), None, ["'lr' must be > 0", "got -1.0"]),
    ("range-lr-nan", exp("lr = nan"), None, ["'lr' must be a finite number"]),
    ("range-lr-inf", exp("lr = inf"), None, ["'lr' must be a finite number"]),
    ("range-lr-minus-inf", exp("lr = -inf"), None, ["'lr' must be a finite number"]),
    ("range-lr-huge-int", exp("lr = 1" + "0" * 400), None, ["experiment 'e'", "'lr'", "too large"]),
    ("range-lr-in-grid", exp("lr = [0.1, 0]"), None, ["experiment 'e'", "'lr' must be > 0"]),
    ("range-dropout-1", exp("dropout = 1.0"), None, ["'dropout' must be < 1.0", "got 1.0"]),
    ("range-dropout-negative", exp("dropout = -0.1"), None, ["'dropout' must be >= 0.0", "got -0.1"]),
    ("range-dropout-nan", exp("dropout = nan"), None, ["'dropout' must be a finite number"]),
    ("range-weight-decay", exp("weight_decay = -1"), None, ["'weight_decay' must be >= 0.0"]),
    ("range-batch-size", exp("batch_size = 0"), None, ["'batch_size' must be >= 1", "got 0"]),
    ("range-val-size", exp("val_size = 50000"), None, ["'val_size' must be <= 49999"]),
    ("range-gamma", exp("gamma = 0"), None, ["'gamma' must be > 0"]),
    ("range-analysis-threshold-1", "[analysis]\ntrained_threshold = 1.0\n" + EXP, None,
     ["[analysis]", "'trained_threshold'", "between 0 and 1"]),
    ("range-analysis-threshold-0", "[analysis]\ntrained_threshold = 0\n" + EXP, None,
     ["[analysis]", "'trained_threshold'"]),
    ("range-analysis-claim-rate", "[analysis]\nclaim_rate = 1.5\n" + EXP, None, ["[analysis]", "'claim_rate'"]),
    ("range-analysis-confidence-nan", "[analysis]\nconfidence = nan\n" + EXP, None, ["[analysis]", "'confidence'"]),
    ("range-analysis-huge-int", "[analysis]\nconfidence = 1" + "0" * 400 + "\n" + EXP, None,
     ["[analysis]", "'confidence'", "too large"]),
    # choices
    ("choice-optimizer", exp('optimizer = "rmsprop"'), None, ["'optimizer' must be one of 'adam', 'sgd'", "'rmsprop'"]),
    ("choice-norm", exp('norm = "layer"'), None, ["'norm' must be one of", "'layer'"]),
    ("choice-precision", exp('precision = "fp8"'), None, ["'precision'", "'fp8'"]),
    ("report-language", '[report]\nlanguage = "Russian"\n' + EXP, None, ["[report]", "'language'", "'Russian'"]),
    ("report-font", '[report]\nfont = "Comic Sans"\n' + EXP, None, ["[report]", "'font'", "Liberation Serif"]),
    ("report-font-size", '[report]\nfont_size = 10\n' + EXP, None, ["[report]", "'font_size'", "12, 13 or 14"]),
    ("report-accessed", '[report]\naccessed = "2026-12-01"\n' + EXP, None, ["[report]", "'accessed'", "DD.MM.YYYY"]),
    # models
    ("unknown-model", exp(model='"resnet21"'), None,
     ["experiment 'e'", "unknown model 'resnet21'", "resnet20", "resnet110", "cifarnet"]),
    ("unknown-model-in-grid", exp(model='["resnet20", "vgg16"]'), None, ["unknown model 'vgg16'", "resnet20"]),
    ("model-with-newline", exp(model='"res\\nnet20"'), None, ["experiment 'e'", "unknown model"]),
    ("missing-model", '[[experiment]]\nname = "e"\n', None, ["experiment 'e'", "'model' is missing", "resnet20"]),
    ("unsupported-norm", exp('norm = "none"', model='"resnet18"'), None,
     ["experiment 'e'", "model 'resnet18' does not support norm='none'"]),
    ("unsupported-init", exp('init = "torch"', model='"resnet18"'), None, ["'resnet18' does not support init='torch'"]),
    ("unsupported-in-grid", exp('norm = ["batch", "none"]', model='"resnet18"'), None,
     ["'resnet18' does not support norm='none'"]),
    # experiments and names
    ("duplicate-names", EXP + EXP, None, ["experiment 'e'", "duplicate experiment name"]),
    ("name-dotdot", exp(name='"../x"'), None, ["experiment #1", "'name' must be", "'../x'"]),
    ("name-slash", exp(name='"a/b"'), None, ["experiment #1", "'name' must be", "'a/b'"]),
    ("name-empty", exp(name='""'), None, ["experiment #1", "'name' must be", "''"]),
    ("name-space", exp(name='"a b"'), None, ["experiment #1", "'name' must be"]),
    ("name-nul", exp(name='"a\\u0000b"'), None, ["experiment #1", "'name' must be"]),
    ("name-tab", exp(name='"a\\tb"'), None, ["experiment #1", "'name' must be"]),
    ("name-trailing-newline", exp(name='"abc\\n"'), None, ["experiment #1", "'name' must be", "'abc\\n'"]),
    ("name-65-chars", exp(name='"' + "a" * 65 + '"'), None, ["experiment #1", "'name' must be"]),
    ("name-leading-dot", exp(name='".hidden"'), None, ["experiment #1", "'name' must be"]),
    ("name-missing", '[[experiment]]\nmodel = "resnet20"\n', None, ["experiment #1", "'name' must be", "None"]),
    ("name-int", exp(name="3"), None, ["experiment #1", "'name' must be"]),
    ("name-list", exp(name='["a"]'), None, ["experiment #1", "'name' must be"]),
    ("name-table", exp(name="{ a = 1 }"), None, ["experiment #1", "'name' must be"]),
    ("name-bad-second", EXP + exp(name='"x/y"'), None, ["experiment #2", "'name' must be"]),
    # grids
    ("empty-grid", exp("dropout = []"), None, ["experiment 'e'", "'dropout' is an empty grid"]),
    ("empty-milestones-grid", exp('schedule = "step"', "milestones = [[]]"), None, ["experiment 'e'", "milestones"]),
    ("duplicate-grid-values", exp("dropout = [0.1, 0.1]"), None,
     ["experiment 'e'", "'dropout' lists the same value twice"]),
    ("duplicate-grid-int-float", exp("lr = [1, 1.0]"), None, ["'lr' lists the same value twice"]),
    ("duplicate-milestone-grid", exp('schedule = "step"', "milestones = [[10], [10]]"), None,
     ["'milestones' lists the same value twice"]),
    ("defaults-list", "[defaults]\ndropout = [0.1, 0.2]\n" + EXP, None, ["[defaults]", "'dropout'", "grids belong"]),
    # seeds
    ("seeds-0", exp("seeds = 0"), None, ["experiment 'e'", "'seeds'", "got 0"]),
    ("seeds-negative", exp("seeds = -1"), None, ["'seeds'", "-1"]),
    ("seeds-too-many", exp("seeds = 10001"), None, ["'seeds'", "10001"]),
    ("seeds-empty", exp("seeds = []"), None, ["experiment 'e'", "'seeds'", "[]"]),
    ("seeds-duplicate", exp("seeds = [1, 1]"), None, ["experiment 'e'", "'seeds' lists the same seed twice"]),
    ("seeds-negative-in-list", exp("seeds = [0, -1]"), None, ["'seeds'"]),
    ("seeds-bool", exp("seeds = true"), None, ["'seeds'", "True"]),
    ("seeds-float", exp("seeds = 2.0"), None, ["'seeds'", "2.0"]),
    ("seeds-defaults", "[defaults]\nseeds = 0\n" + EXP, None, ["[defaults]", "'seeds'"]),
    # schedules
    ("step-without-milestones", exp('schedule = "step"'), None, ["experiment 'e'", "'milestones'"]),
    ("milestones-decreasing", exp('schedule = "step"', "milestones = [60, 30]"), None,
     ["experiment 'e'", "'milestones' must be strictly increasing"]),
    ("milestones-repeated", exp('schedule = "step"', "milestones = [30, 30]"), None, ["strictly increasing"]),
    ("milestones-zero", exp('schedule = "step"', "milestones = [0, 10]"), None,
     ["'milestones' must be a list of positive"]),
    ("milestones-bool", exp('schedule = "step"', "milestones = [true]"), None,
     ["'milestones' must be a list of positive"]),
    ("milestones-float", exp('schedule = "step"', "milestones = [1.5]"), None,
     ["'milestones' must be a list of positive"]),
    ("milestones-grid-bad-point", exp('schedule = "step"', "milestones = [[10], [5, 2]]"), None,
     ["strictly increasing"]),
    ("milestones-grid-mixed", exp('schedule = "step"', "milestones = [[10], 20]"), None,
     ["'milestones' must be a list"]),
    # profiles
    ("profile-not-table", "[profile]\nquick = 3\n" + EXP, None, ["[profile.quick]", "must be a table"]),
    ("profile-section-not-table", "profile = 3\n" + EXP, None, ["[profile]", "must be a table"]),
    ("profile-unknown", EXP + PROFILES, "slow", ["unknown profile 'slow'", "quick", "full"]),
    ("profile-bad-type", EXP + '[profile.quick]\nepochs = "x"\n', "quick",
     ["[profile.quick]", "'epochs' must be an integer"]),
    ("profile-unknown-key", EXP + "[profile.quick]\nepoks = 2\n", "quick", ["[profile.quick]", "'epochs'"]),
    ("profile-bad-seeds", EXP + "[profile.quick]\nseeds = 0\n", "quick", ["[profile.quick]", "'seeds'"]),
    ("profile-experiment-not-table", EXP + "[profile.quick]\nexperiment = 3\n", "quick",
     ["[profile.quick]", "'experiment'"]),
    ("profile-unknown-experiment", EXP + "[profile.quick.experiment.nope]\nepochs = 1\n", "quick",
     ["[profile.quick]", "unknown experiment 'nope'"]),
    ("profile-experiment-value-not-table", EXP + "[profile.quick.experiment]\ne = 3\n", "quick",
     ["[profile.quick.experiment.e]", "must be a table"]),
    ("profile-experiment-bad-value", EXP + "[profile.quick.experiment.e]\nlr = 0\n", "quick",
     ["[profile.quick.experiment.e]", "'lr' must be > 0"]),
    ("profile-experiment-bad-seeds", EXP + "[profile.quick.experiment.e]\nseeds = [1, 1]\n", "quick",
     ["[profile.quick.experiment.e]", "'seeds'"]),
    ("profile-makes-unsupported", exp(model='"resnet18"') + '[profile.quick]\nnorm = "none"\n', "quick",
     ["'resnet18' does not support norm='none'"]),
    ("profile-name-with-newline", EXP + '[profile."a\\nb"]\nepochs = 0\n', "a\nb",
     ["[profile.a\\nb]", "'epochs' must be >= 1"]),
]

_IDS = [c[0] for c in BROKEN]
assert len(_IDS) == len(set(_IDS))


@pytest.mark.parametrize("text, profile", [c[1:3] for c in BROKEN], ids=_IDS)
def test_broken_config_raises_one_line_config_error_starting_with_path(tmp_path, text, profile):
    p, msg = config_error(tmp_path, text, profile)
    assert "\n" not in msg and "\r" not in msg
    assert msg.startswith(f"{p}: ")
    assert len(msg) > len(f"{p}: ") + 10


@pytest.mark.parametrize("text, profile, fragments", [c[1:] for c in BROKEN], ids=_IDS)
def test_broken_config_message_names_place_and_problem(tmp_path, text, profile, fragments):
    _, msg = config_error(tmp_path, text, profile)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


def test_unknown_model_message_lists_every_model(tmp_path):
    _, msg = config_error(tmp_path, exp(model='"resnet21"'))
    assert all(name in msg for name in MODELS)
    assert "did you mean 'resnet20'" in msg or "did you mean 'resnet32'" in msg


def test_unreadable_path_is_config_error(tmp_path):
    d = tmp_path / "dir.toml"
    d.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(d)
    msg = str(info.value)
    assert msg.startswith(str(d)) and "cannot read" in msg and "\n" not in msg


def test_valid_names_are_accepted(tmp_path):
    names = ["a", "A1", "resnet110-nobn", "x.y_z-1", "9" * 64]
    text = "".join(exp(name=f'"{n}"') for n in names)
    assert [e.name for e in load(tmp_path, text).experiments] == names


def test_report_accepts_int_or_text_for_year_and_lab_number(tmp_path):
    cfg = load(tmp_path, '[report]\nyear = "2026"\nlab_number = 3\nlanguage = "en"\n' + EXP)
    assert (cfg.report.year, cfg.report.lab_number, cfg.report.language) == ("2026", 3, "en")


@pytest.mark.parametrize("settings, message", [
    ('model = "resnet110"\ninit = "fixup"', "use it with norm = 'none'"),
    ('model = "plain110"\nnorm = "none"\ninit = "fixup"', "plain110 has none"),
    ('model = "resnet18"\ninit = "fixup"', "does not support init='fixup'"),
])
def test_fixup_is_refused_in_the_toml_with_a_clear_message(tmp_path, settings, message):
    path = tmp_path / "e.toml"
    path.write_text(f'[[experiment]]\nname = "x"\n{settings}\n')
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_fixup_without_bn_on_a_cifar_resnet_is_accepted(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('[[experiment]]\nname = "x"\nmodel = "resnet110"\nnorm = "none"\ninit = "fixup"\n')
    assert load_config(path).runs[0].spec.init == "fixup"


def test_the_bn_claim_profile_has_an_arm_per_init_and_reuses_the_labs_runs():
    lab = {r.key for r in load_config(SHIPPED).runs}
    runs = load_config(SHIPPED, "bn-claim").runs
    arms: dict = {}
    for r in runs:
        arms.setdefault((r.spec.norm, r.spec.init), []).append(r)
    assert {a: len(rs) for a, rs in arms.items()} == {("batch", "he"): 3, ("none", "he"): 10,
                                                       ("none", "torch"): 10, ("none", "fixup"): 10}
    assert all(r.spec.model == "resnet110" and r.spec.epochs == 50 for r in runs)
    # the BN control and the He arm are the lab's own runs: `run --profile bn-claim` trains 20 more
    assert {r.key for r in arms["batch", "he"] + arms["none", "he"]} <= lab
    assert not {r.key for r in arms["none", "torch"] + arms["none", "fixup"]} & lab
