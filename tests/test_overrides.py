"""--set KEY=VALUE: overrides above the profile, checked as the TOML is, on every command."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from labreport.cli import main
from labreport.config import load_config
from labreport.errors import ConfigError
from labreport.config.overrides import parse, value_of

TOML = """
[report]
language = "ru"

[defaults]
epochs = 20
lr = 1e-3

[profile.quick]
epochs = 2

[[experiment]]
name = "base"
model = "cifarnet"

[[experiment]]
name = "resnet20-reg"
model = "resnet20"
dropout = [0.0, 0.2]
"""


@pytest.fixture
def toml(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text(TOML)
    return path


def specs(cfg, name):
    return [r.spec for r in cfg.runs if r.experiment == name]


@pytest.mark.parametrize("raw, value", [("10", 10), ("1e-3", 1e-3), ("true", True), ("[0, 0.1]", [0, 0.1]),
                                        ('"en"', "en"), ("en", "en"), ("a b", "a b")])
def test_values_are_toml_values_and_bare_words_are_text(raw, value):
    assert value_of(raw) == value and type(value_of(raw)) is type(value)


def test_an_experiment_name_may_hold_dots():
    (o,) = parse(["experiment.resnet20.v2.dropout=[0.1]"])
    assert o.path == ("experiment", "resnet20.v2", "dropout") and o.value == [0.1]


def test_a_training_setting_for_every_experiment_comes_after_the_profile(toml):
    assert [s.epochs for s in specs(load_config(toml, "quick"), "base")] == [2]
    cfg = load_config(toml, "quick", ["epochs=5"])
    assert [s.epochs for s in specs(cfg, "base") + specs(cfg, "resnet20-reg")] == [5, 5, 5]
    assert cfg.overrides == ("epochs=5",)


def test_an_experiment_grid_and_seeds(toml):
    cfg = load_config(toml, None, ["experiment.resnet20-reg.dropout=[0, 0.1, 0.3]", "seeds=2"])
    assert sorted({s.dropout for s in specs(cfg, "resnet20-reg")}) == [0.0, 0.1, 0.3]
    assert len(specs(cfg, "resnet20-reg")) == 6 and len(specs(cfg, "base")) == 2  # 3 dropouts x 2 seeds


def test_a_changed_training_setting_changes_the_key(toml):
    (a,), (b,) = specs(load_config(toml), "base"), specs(load_config(toml, None, ["lr=2e-3"]), "base")
    assert a.key != b.key and b.lr == 2e-3


def test_a_settings_section(toml):
    cfg = load_config(toml, None, ["report.language=en", "run.tensorboard=true", "analysis.alpha=0.01"])
    assert cfg.report.language == "en" and cfg.run.tensorboard is True and cfg.analysis.alpha == 0.01


@pytest.mark.parametrize("item, message", [
    ("epochs", "expected KEY=VALUE"),
    ("epoch=10", "did you mean 'epochs'"),
    ("epochs=ten", "epochs"),
    ("epochs=0", "epochs"),
    ("report.languge=en", "did you mean 'language'"),
    ("report.language=3", "language"),
    ("run.tensorboard=maybe", "tensorboard"),
    ("experiment.nope.dropout=[0.1]", "unknown experiment 'nope'"),
    ("experiment.base.dropout=2", "dropout"),
    ("nosuch.key=1", "nosuch.key"),
])
def test_a_bad_override_is_one_config_error_naming_it(toml, item, message):
    with pytest.raises(ConfigError) as e:
        load_config(toml, None, [item])
    text = str(e.value)
    assert "\n" not in text and message in text, text
    assert "--set" in text or str(toml) in text


@pytest.mark.parametrize("command", [["plan"], ["status"], ["run", "--dry-run"], ["export"], ["build"]])
def test_every_command_takes_set_and_a_bad_one_is_exit_2(toml, tmp_path, command):
    runs = tmp_path / "runs"
    res = CliRunner().invoke(main, ["--config", str(toml), "--runs", str(runs), *command, "--set", "epochz=3"])
    assert res.exit_code == 2 and res.stdout == "", res.output
    (line,) = res.stderr.splitlines()
    assert line.startswith("error: ") and "epochz=3" in line and "did you mean 'epochs'" in line
    assert not runs.exists()  # nothing written


def test_plan_shows_the_overridden_matrix(toml, tmp_path):
    res = CliRunner().invoke(main, ["--config", str(toml), "--runs", str(tmp_path / "r"), "plan", "--json",
                                    "--profile", "quick", "--set", "epochs=7", "--set", "experiment.base.lr=0.01"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["spec"]["epochs"] for r in rows} == {7}
    assert [r["spec"]["lr"] for r in rows if r["experiment"] == "base"] == [0.01]
