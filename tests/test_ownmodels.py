"""Models of the student's own: `model = "nets.py:Net"` / "package.module:factory" with model_args.

`plan` reads the source (no torch, no import of the student's code); `run` imports it, checks one
forward pass and trains it; every mistake is one line, exit 2, nothing trained.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from labreport.api import Lab
from labreport.models import MODELS
from labreport.cli import main
from labreport.config import load_config
from labreport.errors import ConfigError
from labreport.store import RunStore
from procs import tiny_toml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own-model"

NETS = '''from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes=10, width=8, dropout=0.0, norm="batch"):
        super().__init__()
        bn = nn.BatchNorm2d(width) if norm == "batch" else nn.Identity()
        self.f = nn.Sequential(nn.Conv2d(3, width, 3, stride=4, padding=1), bn, nn.ReLU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                               nn.Linear(width, num_classes))

    def forward(self, x):
        return self.f(x)


def make(num_classes, dropout=0.0):
    return Tiny(num_classes=num_classes, dropout=dropout)


class Fixed(nn.Module):  # takes nothing: inherits nn.Module's __init__
    def forward(self, x):
        return x.mean((2, 3)).repeat(1, 4)[:, :10]
'''


def lab(tmp_path: Path, cifar_dir: Path, experiment: str, nets: str = NETS) -> Path:
    (tmp_path / "nets.py").write_text(nets)
    toml = tmp_path / "experiments.toml"
    toml.write_text(tiny_toml(cifar_dir, epochs=1) + "[[experiment]]\n" + experiment)
    return toml


def cli(toml: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(toml), "--runs", str(toml.parent / "runs"), *args])


def one_line_error(res, *words: str) -> str:
    assert res.exit_code == 2 and res.stdout == "", res.output
    (line,) = res.stderr.splitlines()
    assert line.startswith("error: ") and "Traceback" not in res.output
    for w in words:
        assert w in line, line
    return line


# ---- plan: the source read, not run ---------------------------------------------------------
def test_the_key_covers_the_reference_the_arguments_and_the_source(tmp_path, cifar_dir):
    toml = lab(tmp_path, cifar_dir, 'name = "mine"\nmodel = "nets.py:Tiny"\nmodel_args = { width = 4 }\n')
    (run,) = load_config(toml).runs
    assert run.spec.model_args.as_dict() == {"width": 4} and len(run.spec.model_source) == 16
    assert run.spec.to_dict()["model_args"] == {"width": 4}
    toml.write_text(toml.read_text().replace("width = 4", "width = 6"))
    assert load_config(toml).runs[0].key != run.key
    toml.write_text(toml.read_text().replace("width = 6", "width = 4"))
    (tmp_path / "nets.py").write_text(NETS.replace("stride=4", "stride=2"))  # the student edits the model
    assert load_config(toml).runs[0].key != run.key
    (tmp_path / "nets.py").write_text(NETS)
    assert load_config(toml).runs[0].key == run.key  # the same source: the same run


def test_a_catalogue_models_key_is_unchanged_by_the_new_fields(tmp_path, cifar_dir):
    toml = lab(tmp_path, cifar_dir, 'name = "base"\nmodel = "cifarnet"\n')
    spec = load_config(toml).runs[0].spec.to_dict()
    assert "model_args" not in spec and "model_source" not in spec


def test_a_grid_of_model_args_and_its_labels(tmp_path, cifar_dir):
    toml = lab(tmp_path, cifar_dir,
               'name = "mine"\nmodel = "nets.py:Tiny"\nmodel_args = [{ width = 4 }, { width = 8 }]\n')
    runs = load_config(toml).runs
    assert [r.label for r in runs] == ["mine[width=4]", "mine[width=8]"]
    assert [r.coords for r in runs] == [{"model_args": {"width": 4}}, {"model_args": {"width": 8}}]


def test_a_module_on_the_labs_folder(tmp_path, cifar_dir):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text(NETS)
    toml = lab(tmp_path, cifar_dir, 'name = "mine"\nmodel = "mypkg.nets:make"\n')
    (run,) = load_config(toml).runs
    assert run.spec.model == "mypkg.nets:make" and run.spec.model_source


def test_plan_stays_torch_free_with_a_model_of_ones_own(tmp_path, cifar_dir):
    toml = lab(tmp_path, cifar_dir, 'name = "mine"\nmodel = "nets.py:Tiny"\n')
    code = ("import sys; from click.testing import CliRunner; from labreport.cli import main; "
            f"r = CliRunner().invoke(main, ['--config', {str(toml)!r}, 'plan']); assert r.exit_code == 0, r.output; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


STATIC_ERRORS = {
    "no file": ('model = "nope.py:Tiny"\n', ["no file", "nope.py", "relative to experiments.toml"]),
    "no name": ('model = "nets.py:Tinny"\n', ["has no class or function 'Tinny'", "did you mean 'Tiny'"]),
    "syntax": ('model = "bad.py:Net"\n', ["bad.py:2: SyntaxError"]),
    "no module": ('model = "nopkg.nets:make"\n', ["no module 'nopkg.nets'"]),
    "bad reference": ('model = "nets.py:"\n', ["'FILE.py:Name' or 'package.module:name'"]),
    "unknown argument": ('model = "nets.py:Tiny"\nmodel_args = { widht = 4 }\n', ["takes no parameter 'widht'",
                                                                                  "did you mean 'width'"]),
    "passed argument": ('model = "nets.py:Tiny"\nmodel_args = { num_classes = 4 }\n', ["must not set 'num_classes'"]),
    "option not taken": ('model = "nets.py:make"\ndropout = 0.2\n', []),  # **kw: taken
    "norm not taken": ('model = "nets.py:Fixed"\nnorm = "none"\n', []),  # inherited __init__: said at run time
    "catalogue model with args": ('model = "cifarnet"\nmodel_args = { width = 4 }\n',
                                  ["model_args is for a model of your own"]),
    "args not a table": ('model = "nets.py:Tiny"\nmodel_args = 4\n', ["'model_args' must be a table"]),
}


@pytest.mark.parametrize("case", sorted(STATIC_ERRORS))
def test_plan_says_what_is_wrong_in_one_line(tmp_path, cifar_dir, case):
    exp, words = STATIC_ERRORS[case]
    (tmp_path / "bad.py").write_text("import torch\ndef Net(:\n")
    toml = lab(tmp_path, cifar_dir, 'name = "mine"\n' + exp)
    res = cli(toml, "plan")
    if not words:  # what the source cannot rule out is no error here
        assert res.exit_code == 0, res.output
        return
    one_line_error(res, str(toml), "experiment 'mine'", *words)
    assert not (tmp_path / "runs").exists()


def test_an_option_the_model_does_not_take(tmp_path, cifar_dir):
    nets = NETS.replace('dropout=0.0, norm="batch"', 'dropout=0.0').replace(
        'nn.BatchNorm2d(width) if norm == "batch" else nn.Identity()', "nn.Identity()")
    toml = lab(tmp_path, cifar_dir, 'name = "mine"\nmodel = "nets.py:Tiny"\nnorm = ["batch", "none"]\n', nets)
    with pytest.raises(ConfigError, match=r"norm = 'none' is set, but Tiny \(nets.py:4\) takes no 'norm' parameter"):
        load_config(toml)


# ---- run: imported, checked, trained ----------------------------------------------------------
def test_run_trains_a_model_of_ones_own_and_then_never_again(tmp_path, cifar_dir):
    toml = lab(tmp_path, cifar_dir, 'name = "mine"\nmodel = "nets.py:Tiny"\nmodel_args = { width = 6 }\n'
                                    'norm = ["batch", "none"]\ndropout = 0.1\n')
    res = cli(toml, "run", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "2 trained" in res.stdout
    store = RunStore(tmp_path / "runs")
    res_bn = store.read_result(load_config(toml).runs[0].key)
    # a 3x3 conv 3 -> 6 with bias, BatchNorm, the classifier: the model as the student wrote it
    assert res_bn["status"] == "completed" and res_bn["params"] == (27 + 1) * 6 + 2 * 6 + 6 * 10 + 10
    assert "2 cached" in cli(toml, "run", "--device", "cpu").stdout
    old = {r.key for r in load_config(toml).runs}
    (tmp_path / "nets.py").write_text(NETS + "\n# edited\n")
    rows = json.loads(cli(toml, "plan", "--json").stdout)
    assert {r["status"] for r in rows} == {"missing"} and not old & {r["key"] for r in rows}
    assert set(store.keys()) == old  # the old results stay in the store


def test_the_report_names_it_by_its_class_and_calls_it_ones_own(tmp_path, cifar_dir):
    toml = lab(tmp_path, cifar_dir, 'name = "mine"\nmodel = "nets.py:Tiny"\nmodel_args = { width = 6 }\n'
                                    'norm = ["none", "batch"]\n')
    assert cli(toml, "run", "--device", "cpu").exit_code == 0
    Lab(toml, runs=tmp_path / "runs", overrides={"report.language": "en"}).build(tmp_path / "r.docx",
                                                                                 html=tmp_path / "r.html")
    from lxml import html

    doc = html.fromstring((tmp_path / "r.html").read_text())
    (row,) = [r for r in doc.iter("tr") if "own implementation" in r.text_content()]
    cells = [c.text_content().strip() for c in row.iter("td")]
    # the BatchNorm variant's count, though the grid lists norm = none first
    assert cells[:3] == ["Tiny", "own implementation: Tiny(width=6) from nets.py",
                         f"{(27 + 1) * 6 + 2 * 6 + 6 * 10 + 10:,}"]
    assert "A model marked as an own implementation" in doc.text_content()


def test_a_factory_in_a_module_trains(tmp_path, cifar_dir):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text(NETS)
    toml = lab(tmp_path, cifar_dir, 'name = "mine"\nmodel = "mypkg.nets:make"\ndropout = 0.2\n')
    res = cli(toml, "run", "--device", "cpu")
    assert res.exit_code == 0 and "1 trained" in res.stdout, res.output
    assert "mypkg" not in {p.split("/")[-1] for p in sys.path}  # the lab's folder is not left on the path


FORWARD_LINE = NETS.splitlines().index("        return self.f(x)") + 1  # Tiny.forward's body, numbered from 1
RUN_ERRORS = {
    "import": (NETS.replace("from torch import nn\n", "from torch import nn\nraise RuntimeError('boom')\n"),
               "nets.py:Tiny", ["nets.py:2: RuntimeError: boom"]),
    "constructor": (NETS.replace("super().__init__()", "super().__init__(); 1 / 0"), "nets.py:Tiny",
                    ["nets.py:6: ZeroDivisionError"]),
    "forward": (NETS.replace("return self.f(x)", "return self.g(x)"), "nets.py:Tiny",
                ["its forward pass failed", f"nets.py:{FORWARD_LINE}: AttributeError"]),
    "shape": (NETS.replace("nn.Linear(width, num_classes)", "nn.Linear(width, 7)"), "nets.py:Tiny",
              ["output of a batch of 2 images is [2, 7], expected [2, 10]"]),
    "not a module": (NETS + "\ndef nothing(num_classes):\n    return 3\n", "nets.py:nothing", ["returned a int"]),
    "inherited init takes no norm": (NETS, "nets.py:Fixed\"\nnorm = \"none", ["norm = 'none' is set", "no 'norm'"]),
}


@pytest.mark.parametrize("case", sorted(RUN_ERRORS))
def test_run_refuses_a_broken_model_in_one_line_and_trains_nothing(tmp_path, cifar_dir, case):
    nets, ref, words = RUN_ERRORS[case]
    toml = lab(tmp_path, cifar_dir, f'name = "mine"\nmodel = "{ref}"\n', nets)
    assert cli(toml, "plan").exit_code == 0  # the source parses: only running it tells
    one_line_error(cli(toml, "run", "--device", "cpu"), f"model '{ref.split(chr(34))[0]}'", *words)
    assert not (tmp_path / "runs").exists()


def test_with_jobs_the_check_comes_before_any_worker(tmp_path, cifar_dir):
    toml = lab(tmp_path, cifar_dir, 'name = "mine"\nmodel = "nets.py:Tiny"\nseeds = 2\n',
               NETS.replace("nn.Linear(width, num_classes)", "nn.Linear(width, 3)"))
    one_line_error(cli(toml, "run", "--device", "cpu", "--jobs", "2"), "[2, 3], expected [2, 10]")
    assert not (tmp_path / "runs" / ".workers").exists()


def test_a_file_edited_after_the_lab_was_read_is_refused(tmp_path, cifar_dir):
    toml = lab(tmp_path, cifar_dir, 'name = "mine"\nmodel = "nets.py:Tiny"\n')
    lab_ = Lab(toml, runs=tmp_path / "runs")
    (tmp_path / "nets.py").write_text(NETS + "\n# edited\n")
    from labreport.errors import ModelError

    with pytest.raises(ModelError, match="changed after experiments.toml was read"):
        lab_.run(device="cpu")


def test_labreport_models_lists_them_with_their_parameters(tmp_path, cifar_dir):
    toml = lab(tmp_path, cifar_dir,
               'name = "mine"\nmodel = "nets.py:Tiny"\nmodel_args = [{ width = 4 }, { width = 8 }]\n')
    rows = json.loads(cli(toml, "models", "--json").stdout)
    own = [r for r in rows if r["family"] == "own"]
    # width w: a 3x3 conv 3 -> w with bias (28w), BatchNorm (2w), the classifier (10w + 10)
    assert [(r["name"], r["params"]) for r in own] == [("nets.py:Tiny", 40 * 4 + 10), ("nets.py:Tiny", 40 * 8 + 10)]
    assert "class Tiny (nets.py:4)" in own[0]["description"] and own[0]["supports"] == ["dropout", "norm"]
    text = cli(toml, "models").stdout
    assert text.count("nets.py:Tiny") == 2 and "resnet110" in text


# ---- the README's example: task 5 with ResNet-110 of one's own ------------------------------
def test_the_readme_shows_the_example_as_it_is():
    readme = (ROOT / "README.md").read_text()
    for name in ("experiments.toml", "nets.py"):
        body = (EXAMPLE / name).read_text()
        assert body.strip() in readme, f"README.md must show examples/own-model/{name} as it is"


def test_the_examples_resnet110_is_the_papers_and_trains(tmp_path, cifar_dir):
    shutil.copytree(EXAMPLE, tmp_path / "lab")
    toml = tmp_path / "lab" / "experiments.toml"
    toml.write_text(toml.read_text() + tiny_toml(cifar_dir).replace("[defaults]\n", "[profile.test]\n")
                    .replace("[run]", "seeds = 1\n[run]"))
    rows = json.loads(cli(toml, "models", "--json").stdout)
    (own,) = [r for r in rows if r["family"] == "own"]
    assert own["params"] == MODELS["resnet110"].params  # the same network as the catalogue's ResNet-110
    res = cli(toml, "run", "--device", "cpu", "--profile", "test", "--set", "epochs=1", "--set", "train_subset=32",
              "--set", "batch_size=16", "--set", "test_subset=16", "--set", "val_size=16")
    assert res.exit_code == 0 and "2 trained" in res.stdout, res.output
