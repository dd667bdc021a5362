"""The Python API (labreport.Lab) a notebook uses, and what it shares with the command line:
metrics.csv in every run folder, TensorBoard event files, `export`, logging and -v/-q."""
from __future__ import annotations

import csv
import io
import json
import logging
import sys

import pytest
from click.testing import CliRunner

import labreport
from labreport.api import Lab, table
from labreport.config import store_root
from labreport.engine.device import cpu_model
from labreport.cli import main
from labreport.errors import LabreportError
from labreport.logs import LOG
from labreport.store import RunStore
from procs import tiny_toml

TOML = tiny_toml("{data}", epochs=2) + """[profile.only-small]
experiments = ["small"]

[[experiment]]
name = "small"
task = 2
model = "cifarnet"
dropout = [0.0, 0.15]

[[experiment]]
name = "resnet"
task = 3
model = "resnet20"
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar_dir):
    """A study of 3 runs x 2 epochs trained through the API: (toml, runs, outcome, messages)."""
    root = tmp_path_factory.mktemp("api")
    toml = root / "experiments.toml"
    toml.write_text(TOML.format(data=cifar_dir))
    from conftest import pristine_logger
    from labreport.cluster.executors import Console

    pristine_logger()  # nothing configured, as in a fresh notebook
    out, err = [], []
    try:
        lab = Lab(toml, runs=root / "runs")
        outcome = lab.run(device="cpu", console=Console(out=out.append, err=err.append, tty=False))
    finally:
        pristine_logger()
    return toml, root / "runs", outcome, err


def test_the_package_offers_lab():
    assert labreport.Lab is Lab


def test_plan_before_training(tmp_path, cifar_dir):
    toml = tmp_path / "experiments.toml"
    toml.write_text(TOML.format(data=cifar_dir))
    lab = Lab(toml, runs=tmp_path / "runs", overrides={"epochs": 3})
    rows = lab.plan(as_frame=False)
    assert [(r["experiment"], r["status"], r["epochs"]) for r in rows] == [("small", "missing", 3)] * 2 + [
        ("resnet", "missing", 3)]
    assert [r["varying"] for r in rows[:2]] == [{"dropout": 0.0}, {"dropout": 0.15}]
    assert "3 runs" in repr(lab) and not (tmp_path / "runs").exists()  # reading writes nothing


def test_overrides_as_a_dict_or_as_set_items_are_the_same(tmp_path, cifar_dir):
    toml = tmp_path / "experiments.toml"
    toml.write_text(TOML.format(data=cifar_dir))
    a = Lab(toml, overrides={"epochs": 4, "experiment.small.dropout": [0.3], "report.language": "en"})
    b = Lab(toml, overrides=["epochs=4", "experiment.small.dropout=[0.3]", "report.language=en"])
    assert [r.key for r in a.config.runs] == [r.key for r in b.config.runs] and len(a.config.runs) == 2
    assert a.config.report.language == "en"


def test_run_trains_every_run_once_and_says_so(trained, cifar_dir):
    toml, runs, outcome, messages = trained
    assert len(outcome.trained) == 3 and outcome.exit_code == 0 and not outcome.failed
    assert any("training on the CPU" in m for m in messages)  # nothing configured logging: shown on the console
    again = Lab(toml, runs=runs).run(device="cpu")
    assert again.trained == [] and len(again.cached) == 3


def test_estimate_times_each_setting_once_then_the_finished_runs_take_over(trained, tmp_path, cifar_dir, caplog):
    toml = tmp_path / "experiments.toml"
    toml.write_text(TOML.format(data=cifar_dir))
    lab = Lab(toml, runs=tmp_path / "runs")
    with caplog.at_level(logging.INFO, logger="labreport"):
        first = lab.estimate(device="cpu")
    assert "timing 2 setting(s) on" in caplog.text  # cifarnet and resnet20 at batch 32: the dropout grid is one
    assert first.device_type == "cpu" and "(CPU, " in first.device and len(first.per_run) == 3
    assert first.total_s == pytest.approx(sum(first.per_run.values())) and first.total_s > 0
    assert set(first.per_task) == {"2", "3"} and str(first).splitlines()[-1] == "3 to train, 0 already done"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="labreport"):
        again = lab.estimate(device="cpu")  # kept in the store: read, not timed
    assert "timing" not in caplog.text and again.per_run == first.per_run
    _, trained_runs, _, _ = trained
    done = Lab(toml, runs=trained_runs).estimate(device="cpu")  # the finished runs' own speed, nothing timed
    assert done.per_run == {} and done.total_s is None and not (trained_runs / ".speeds.json").exists()


def test_run_leaves_torchs_threads_as_the_caller_set_them(tmp_path, cifar_dir):
    import torch

    toml = tmp_path / "experiments.toml"
    toml.write_text(TOML.format(data=cifar_dir))  # [run] threads = 1
    lab = Lab(toml, runs=tmp_path / "runs", overrides={"epochs": 1, "experiment.small.dropout": [0.0]})
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # neither the TOML's 1 nor this machine's default
    try:
        lab.estimate(device="cpu", threads=1)
        assert torch.get_num_threads() == 3
        assert lab.run(device="cpu", only=["small"]).trained and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_the_api_has_no_silent_traps(trained, tmp_path, cifar_dir):
    """Lab tab-completes; an unknown name for curves() is an error naming the known ones; an empty
    store's history keeps its columns; errors about overrides speak of overrides, not of --set."""
    assert {"Lab", "init"} <= set(dir(labreport))
    toml, runs, _, _ = trained
    lab = Lab(toml, runs=runs)
    with pytest.raises(LabreportError, match=r"unknown experiment 'smal' \(did you mean 'small'\?\)"):
        lab.curves(["smal"])
    assert lab.curves("small") is not None  # one name, not a list: as asked
    smoke = Lab(toml, runs=runs, profile="only-small")
    with pytest.raises(LabreportError, match="experiment 'resnet' is not in profile 'only-small' "
                                             r"\(its experiments: small\)"):
        smoke.curves(["resnet"])
    empty = Lab(toml, runs=tmp_path / "empty").history()
    assert len(empty) == 0 and {"label", "epoch", "val_acc", "test_acc"} <= set(empty.columns)
    assert list(empty.label) == []
    with pytest.raises(LabreportError, match=r"^overrides \{'epoch': 2\}: unknown key 'epoch' "
                                             r"\(did you mean 'epochs'\?\)$"):
        Lab(toml, overrides={"epoch": 2})
    with pytest.raises(LabreportError, match=r"\[overrides\]: 'epochs' must be >= 1, got 0"):
        Lab(toml, overrides={"epochs": 0})


def test_results_one_record_per_run(trained):
    toml, runs, _, _ = trained
    rows = Lab(toml, runs=runs).results(as_frame=False)
    store = RunStore(runs)
    assert len(rows) == 3
    for row in rows:
        res = store.read_result(row["key"])
        assert row["status"] == "done" and row["epochs_done"] == 2 and row["device"] == cpu_model()
        assert row["test_acc_at_best"] == res["test_acc_at_best"] and row["best_epoch"] == res["best_epoch"]
        assert row["params"] == res["params"] and row["total_time_s"] > 0
    assert [r["dropout"] for r in rows] == [0.0, 0.15, 0.0] and [r["model"] for r in rows][-1] == "resnet20"


def test_results_and_history_as_dataframes(trained):
    pd = pytest.importorskip("pandas")
    toml, runs, _, _ = trained
    lab = Lab(toml, runs=runs)
    df = lab.results()
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    assert df.groupby("experiment").test_acc_at_best.count().to_dict() == {"resnet": 1, "small": 2}
    hist = lab.history()
    assert isinstance(hist, pd.DataFrame) and len(hist) == 6  # 3 runs x 2 epochs
    assert set(hist.columns) >= {"label", "key", "epoch", "train_loss", "val_acc", "test_acc"}
    assert hist.groupby("key").epoch.max().tolist() == [2, 2, 2]


def test_table_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    rows = [{"a": 1}]
    assert table(rows) is rows and table(rows, as_frame=False) is rows
    with pytest.raises(LabreportError, match="pip install pandas"):
        table(rows, as_frame=True)


def test_metrics_csv_holds_the_history(trained):
    toml, runs, _, _ = trained
    store = RunStore(runs)
    for key in store.keys():
        hist = store.read_history(key)
        rows = list(csv.DictReader(io.StringIO((runs / key / "metrics.csv").read_text())))
        assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in hist] == [1, 2]
        for row, h in zip(rows, hist):
            assert float(row["train_loss"]) == h["train_loss"] and float(row["test_acc"]) == h["test_acc"]
            assert row["precision"] == h["precision"]


def test_metrics_csv_is_made_for_a_run_finished_before_labreport_wrote_one(trained, tmp_path):
    import shutil

    toml, runs, _, _ = trained
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    key = RunStore(copy).keys()[0]
    want = (copy / key / "metrics.csv").read_bytes()
    (copy / key / "metrics.csv").unlink()
    out = Lab(toml, runs=copy).run(device="cpu")
    assert out.trained == [] and (copy / key / "metrics.csv").read_bytes() == want


def test_curves_is_the_labs_acc_loss_graph(trained):
    import matplotlib.figure

    toml, runs, _, _ = trained
    fig = Lab(toml, runs=runs).curves(["small"], language="en")
    assert isinstance(fig, matplotlib.figure.Figure)
    (acc, loss) = fig.axes[:2]
    assert len(acc.get_lines()) >= 2 and all(len(line.get_xdata()) == 2 for line in acc.get_lines())
    (legend,) = fig.legends
    names = [t.get_text() for t in legend.get_texts()]
    assert sum("dropout" in t for t in names) == 2, names  # one per run, besides the line styles' key


def test_conclusions_are_the_summary_as_data(trained):
    toml, runs, _, _ = trained
    c = Lab(toml, runs=runs).conclusions()
    json.dumps(c)  # plain data
    groups = {g["label"]: g for t in c["tasks"] for g in t["groups"]}
    assert len(groups) == 3 and c["counts"]["done"] == 3
    assert c["best"]["mean_test_acc"] == max(g["mean_test_acc"] for g in groups.values())


def test_export_csv_and_json_without_a_pdf_writer(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # not installed
    toml, runs, _, _ = trained
    lab = Lab(toml, runs=runs)
    text = lab.export(tmp_path / "runs.csv")
    assert (tmp_path / "runs.csv").read_text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["key"] for r in rows] == [r["key"] for r in lab.result_rows()]
    assert [float(r["test_acc_at_best"]) for r in rows] == [r["test_acc_at_best"] for r in lab.result_rows()]
    doc = json.loads(lab.export(format="json"))
    assert len(doc["runs"]) == 3 and doc["conclusions"]["counts"]["done"] == 3
    with pytest.raises(LabreportError, match="csv or json"):
        lab.export(format="xlsx")


def test_export_on_the_command_line(trained, tmp_path):
    toml, runs, _, _ = trained
    res = CliRunner().invoke(main, ["--config", str(toml), "--runs", str(runs), "export"])
    assert res.exit_code == 0, res.output
    assert res.stdout == Lab(toml, runs=runs).export()
    out = tmp_path / "study.json"
    res = CliRunner().invoke(main, ["--config", str(toml), "--runs", str(runs), "export", "--format", "json",
                                    "-o", str(out)])
    assert res.exit_code == 0 and f"wrote {out}" in res.stderr and json.loads(out.read_text())["runs"]


def test_tensorboard_event_files_hold_each_epoch(tmp_path, cifar_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    toml = tmp_path / "experiments.toml"
    toml.write_text(TOML.format(data=cifar_dir))
    tb = tmp_path / "tb"
    res = CliRunner().invoke(main, ["--config", str(toml), "--runs", str(tmp_path / "runs"), "run", "--only", "small",
                                    "--device", "cpu", "--set", "experiment.small.dropout=[0.15]",
                                    "--tensorboard", str(tb)])
    assert res.exit_code == 0, res.output
    (folder,) = [p.parent for p in tb.rglob("events.out.tfevents*")]
    assert folder == tb / "small" / "run"  # one run: no grid point left in its name
    acc = EventAccumulator(str(folder))
    acc.Reload()
    (key,) = RunStore(tmp_path / "runs").keys()
    hist = RunStore(tmp_path / "runs").read_history(key)
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("accuracy/test")] == [
        (h["epoch"], round(h["test_acc"], 6)) for h in hist]
    assert {"loss/train", "loss/validation", "optimizer/lr"} <= set(acc.Tags()["scalars"])


def test_tensorboard_missing_is_one_line_and_nothing_trains(tmp_path, cifar_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    toml = tmp_path / "experiments.toml"
    toml.write_text(TOML.format(data=cifar_dir))
    res = CliRunner().invoke(main, ["--config", str(toml), "--runs", str(tmp_path / "runs"), "run", "--device", "cpu",
                                    "--set", "run.tensorboard=true"])
    assert res.exit_code == 2 and res.stdout == "", res.output
    (line,) = res.stderr.splitlines()
    assert "pip install 'labreport[tensorboard]'" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("flag, info, debug, epochs", [(None, True, False, 3), ("-q", False, False, 4),
                                                       ("-v", True, True, 5)])
def test_quiet_and_verbose(trained, flag, info, debug, epochs):
    toml, runs, _, _ = trained
    args = ["--config", str(toml), "--runs", str(runs), *([flag] if flag else []), "run", "--device", "cpu",
            "--set", f"epochs={epochs}", "--only", "resnet"]  # a new key: trained anew
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert ("training on the CPU" in res.stderr) == info
    assert (f"epoch {epochs} checkpointed" in res.stderr) == debug
    assert "1 trained" in res.stdout


def test_a_program_that_configures_logging_gets_the_messages(trained, caplog):
    toml, runs, _, _ = trained
    LOG.propagate = True
    with caplog.at_level(logging.DEBUG, logger="labreport"):
        Lab(toml, runs=runs).run(device="cpu")
    assert any(r.name.startswith("labreport") and "runs final" in r.getMessage() for r in caplog.records)


def test_where_the_store_is(tmp_path, monkeypatch):
    from labreport.config import load_config

    (tmp_path / "e.toml").write_text('[store]\nroot = "mine"\n[[experiment]]\nname = "a"\nmodel = "cifarnet"\n')
    cfg = load_config(tmp_path / "e.toml")
    monkeypatch.delenv("LABREPORT_RUNS", raising=False)
    assert store_root(None, cfg) == tmp_path / "mine"
    monkeypatch.setenv("LABREPORT_RUNS", str(tmp_path / "env"))
    assert store_root(None, cfg) == tmp_path / "env"
    assert store_root(tmp_path / "arg", cfg) == tmp_path / "arg"


def test_docs_api_covers_every_public_method():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    public = [n for n in dir(Lab) if not n.startswith("_") and callable(getattr(Lab, n))]
    internal = {"state_rows", "result_rows", "own_model_rows"}  # the rows behind plan/results/models
    assert [n for n in public if n not in internal and f"lab.{n}(" not in text] == []
