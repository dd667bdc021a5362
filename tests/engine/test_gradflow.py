"""Gradient flow (task 1): measured per-layer gradient norms, cached in the run store like runs; the
summary numbers on hand-made inputs; the [gradflow] section; the report and the CLI with and
without a measurement in the store.

The one real measurement is on resnet20 / plain20 with a batch of 16 synthetic images (about 1 s);
everything else uses hand-made results written where `ensure` would write them.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from labreport.cli import main
from labreport.config import load_config
from labreport.config.sections import GradflowSettings
from labreport.engine import gradflow as measure
from labreport.engine.datasets import load as load_data
from labreport.errors import ConfigError
from labreport.report.build import build
from labreport.report.i18n import Lang
from labreport.science import gradflow as flow
from labreport.store import RunStore, atomic_write_json
from labreport.store import gradflow as stored

SMALL = GradflowSettings(depths=(20,), inits=("torch",), steps=2, batch=16, images=32, probe=16, lr=1e-3)


@pytest.fixture(scope="module")
def measured(cifar_dir, tmp_path_factory):
    store = tmp_path_factory.mktemp("gradflow")
    data = load_data(cifar_dir, download=False)
    return store, measure.ensure(store, SMALL, lambda: data, "cpu"), data


# --------------------------------------------------------------------------------------------
# The measurement
# --------------------------------------------------------------------------------------------
def test_without_skips_and_bn_the_first_layer_gradient_is_orders_of_magnitude_smaller(measured):
    _, m, _ = measured
    assert not m["missing"] and len(m["cells"]) == 4
    rows = {(r["family"], r["norm"]): r for r in flow.summary_rows(m["cells"])}
    with_both, without_both = rows["resnet", "batch"], rows["plain", "none"]
    # Measured on this data (seeds 0-2): first layer ~1.5 with skips and BN, ~1e-8 without either
    # (PyTorch init shrinks the gradient ~2.5x per layer), i.e. ~8 orders; asserted with 4 of margin.
    assert with_both["first_init"] / without_both["first_init"] > 1e4
    assert without_both["orders_init"] > 4.0  # falls > 4 orders from the last layer to the first (6.5 measured)
    assert abs(with_both["orders_init"]) < 1.5  # about flat with skips and BN (0.5 measured)
    res = m["cells"][0]
    assert len(res["grad_init"]) == len(res["grad_trained"]) == 20  # 19 convs and the FC, by depth
    assert res["layers"][0]["name"] == "conv1" and res["layers"][-1]["name"] == "fc"
    assert res["provenance"]["data_fingerprint"] and res["time_s"] > 0


def test_measurements_live_in_the_store_beside_the_runs(measured):
    store, _, _ = measured
    folders = sorted(p.name for p in Path(store).iterdir())
    assert folders == sorted(f"gradflow-{c.key}" for c in stored.cells(SMALL))
    assert all(len(f) == len("gradflow-") + 16 for f in folders)
    assert RunStore(store).keys() == []  # not mistaken for runs


def test_a_cached_measurement_is_never_recomputed(measured, monkeypatch):
    store, m, _ = measured
    calls, loads = [], []
    monkeypatch.setattr(measure, "measure_cell", lambda *a: calls.append(a))
    again = measure.ensure(store, SMALL, lambda: loads.append(1), "cpu")
    assert calls == [] and loads == []  # nothing measured, not even the data loaded
    assert again["cells"] == m["cells"]


def fake_result(cell: stored.Cell, grad_init, grad_trained, logits_std=1.0) -> dict:
    return {"key": cell.key, "cell": asdict(cell), "version": stored.GRADFLOW_VERSION,
            "layers": [{"name": f"l{i}", "kind": "conv", "numel": 1} for i in range(len(grad_init))],
            "grad_init": list(grad_init), "grad_trained": grad_trained, "loss_init": 2.3,
            "logits_std_init": logits_std, "loss_trained": 2.0, "logits_std_trained": 1.0,
            "diverged_at_step": None, "time_s": 0.5, "provenance": {}}


def test_only_missing_or_damaged_measurements_are_computed(tmp_path, monkeypatch):
    settings = replace(SMALL, inits=("he", "torch"), steps=3)
    calls = []

    def fake(cell, data, device):
        calls.append(cell)
        return fake_result(cell, [1.0, 2.0], [1.0, 2.0])

    monkeypatch.setattr(measure, "measure_cell", fake)
    assert len(measure.ensure(tmp_path, settings, lambda: "data", "cpu")["cells"]) == 8
    assert len(calls) == 8
    measure.ensure(tmp_path, settings, lambda: pytest.fail("data loaded"), "cpu")
    assert len(calls) == 8
    damaged = stored.cells(settings)[3]
    (stored.cell_dir(tmp_path, damaged) / "result.json").write_text('{"key": "trunc')
    measure.ensure(tmp_path, settings, lambda: "data", "cpu")
    assert calls[8:] == [damaged]
    measure.ensure(tmp_path, replace(settings, lr=2e-3), lambda: "data", "cpu")  # other settings: other keys
    assert len(calls) == 8 + 1 + 8


# --------------------------------------------------------------------------------------------
# Summary numbers on hand-made inputs
# --------------------------------------------------------------------------------------------
def test_orders_of_magnitude():
    assert flow.orders_of_magnitude(1e-3, 10.0) == pytest.approx(4.0)  # falls 4 orders towards the first layer
    assert flow.orders_of_magnitude(1e5, 1.0) == pytest.approx(-5.0)  # grows 5 orders
    assert flow.orders_of_magnitude(2.0, 2.0) == 0.0
    for first, last in ((0.0, 1.0), (None, 1.0), (1.0, None), (math.nan, 1.0), (1.0, math.inf), (-1.0, 1.0)):
        assert flow.orders_of_magnitude(first, last) is None


HAND = GradflowSettings(depths=(110,), inits=("he", "torch"), steps=20, batch=32, images=640, probe=128, lr=1e-3)
# (family, norm, init): (grad at init, grad after training, logits std at init); first and last layer only
HAND_GRADS = {
    ("resnet", "batch", "he"): ([2.0, 20.0], [1.0, 2.0], 2.0),
    ("resnet", "batch", "torch"): ([3.0, 12.0], [1.0, 3.0], 2.0),
    ("resnet", "none", "he"): ([1e8, 1e9], [10.0, 100.0], 1.6e8),
    ("resnet", "none", "torch"): ([0.1, 0.4], [0.1, 1.0], 0.25),
    ("plain", "batch", "he"): ([1e5, 1.0], [1e3, 1.0], 0.3),
    ("plain", "batch", "torch"): ([1e6, 0.4], [1e2, 1.0], 0.2),
    ("plain", "none", "he"): ([1e-3, 1e-3], [1e-8, 1.0], 0.08),
    ("plain", "none", "torch"): ([0.0, 0.01], [0.0, 0.01], 0.08),
    ("resnet", "none", "fixup"): ([0.5, 0.8], [0.4, 0.9], 0.0),
}


def hand_store(root: Path, settings: GradflowSettings = HAND) -> list[dict]:
    out = []
    for cell in stored.cells(settings):
        g0, g1, std = HAND_GRADS[cell.family, cell.norm, cell.init]
        res = fake_result(cell, g0, g1, std)
        atomic_write_json(stored.cell_dir(root, cell) / "result.json", res)
        out.append(res)
    return out


def test_summary_rows_and_facts(tmp_path):
    hand_store(tmp_path)
    m = stored.cached(tmp_path, HAND)
    assert len(m["cells"]) == 8 and m["missing"] == []
    rows = {(r["family"], r["norm"], r["init"]): r for r in flow.summary_rows(m["cells"])}
    assert rows["resnet", "batch", "he"]["orders_init"] == pytest.approx(1.0)
    assert rows["plain", "batch", "he"]["orders_init"] == pytest.approx(-5.0)
    assert rows["plain", "none", "he"]["orders_trained"] == pytest.approx(8.0)
    assert rows["plain", "none", "torch"]["orders_init"] is None  # the first layer's gradient is 0
    assert flow.change(rows["plain", "none", "torch"]) == math.inf
    f = flow.facts(m, ["he"])
    assert (f["depth"], f["init"], f["steps"], f["total"], f["missing"]) == (110, "he", 20, 8, 0)
    assert f["gain_bn"] == pytest.approx(math.log10(2.0 / 1e5))  # the plain BN net's first layer is larger
    assert f["gain_nobn"] == pytest.approx(11.0)  # log10(1e8 / 1e-3)
    assert f["nobn_logits_std"] == {"he": 1.6e8, "torch": 0.25}
    # |orders| ResNet < plain: BN at init 1 < 5; no BN at init 1 < 0 is false; trained 1 < 8
    assert f["steadier"] == {"batch_init": True, "batch_trained": True, "none_init": False, "none_trained": True}
    assert flow.facts(m, ["torch"])["init"] == "torch"
    assert flow.facts(m, [])["init"] == "he"  # the first measured init when the runs name none


def test_partial_measurement_counts_the_missing(tmp_path):
    hand_store(tmp_path, replace(HAND, inits=("he",)))
    m = stored.cached(tmp_path, HAND)
    f = flow.facts(m, ["torch"])
    assert (len(m["cells"]), f["missing"], f["init"]) == (4, 4, "he")


# --------------------------------------------------------------------------------------------
# [gradflow] in experiments.toml
# --------------------------------------------------------------------------------------------
EXP = '[[experiment]]\nname = "e"\nmodel = "resnet20"\n'


def test_gradflow_section_defaults_and_values(tmp_path, monkeypatch):
    monkeypatch.setattr(GradflowSettings.__dataclass_fields__["enabled"], "default", True)  # conftest: off
    p = tmp_path / "e.toml"
    p.write_text(EXP)
    assert asdict(load_config(p).gradflow) == {"enabled": True, "depths": (110,), "inits": ("he", "torch", "fixup"),
                                               "steps": 20, "batch": 32, "images": 640, "probe": 128, "lr": 1e-3}
    p.write_text('[gradflow]\nenabled = false\ndepths = [20, 56]\ninits = ["torch"]\nsteps = 5\nlr = 1\n' + EXP)
    g = load_config(p).gradflow
    assert (g.enabled, g.depths, g.inits, g.steps, g.lr) == (False, (20, 56), ("torch",), 5, 1.0)


@pytest.mark.parametrize("body, fragment", [
    ("step = 5", "unknown key 'step' (did you mean 'steps'?)"),
    ("enabled = 1", "'enabled' must be of type bool"),
    ("depths = 110", "'depths' must be of type list"),
    ("depths = [100]", "'depths' must be a non-empty list"),
    ("depths = []", "'depths' must be a non-empty list"),
    ("depths = [20, 20]", "'depths' must be a non-empty list"),
    ('inits = ["xavier"]', "'inits' must be a non-empty list"),
    ("steps = 0", "'steps' must be >= 1"),
    ("batch = 64\nimages = 32", "'images' must be >= 64"),
    ("lr = 0", "'lr' must be in (0, 10]"),
    ("lr = nan", "'lr' must be in (0, 10]"),
])
def test_gradflow_section_errors(tmp_path, body, fragment):
    p = tmp_path / "e.toml"
    p.write_text(f"[gradflow]\n{body}\n" + EXP)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value).startswith(f"{p}: [gradflow]: ") and fragment in str(info.value)


# --------------------------------------------------------------------------------------------
# The report (from a hand-made store) and the CLI
# --------------------------------------------------------------------------------------------
TOML = """
[report]
title = "t"
language = "{lang}"
[gradflow]
enabled = {enabled}
[[experiment]]
name = "r110-nobn"
task = 5
model = "resnet110"
norm = "none"
epochs = 2
"""


def report_html(tmp_path: Path, lang="ru", enabled="true", measured=True) -> tuple[str, object]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg_path = tmp_path / "experiments.toml"
    cfg_path.write_text(TOML.format(lang=lang, enabled=enabled))
    config = load_config(cfg_path)
    store = RunStore(tmp_path / "runs")
    if measured:
        hand_store(store.root, config.gradflow)
    built = build(config, store, None, tmp_path / "r.html")
    return (tmp_path / "r.html").read_text(), built


def test_report_shows_the_measurement_when_it_is_in_the_store(tmp_path):
    html, built = report_html(tmp_path)
    assert "gradflow" in built.figures and (built.summary.parent / "gradflow.svg").exists()
    assert 'id="fig-gradflow"' in html
    # the text as read: no tags (names are spans), no word joiners, plain spaces for the non-breaking ones
    flat = " ".join(re.sub(r"<[^>]+>", "", html).replace("\u2060", "").split())
    figure = re.search(r"Рисунок (\d+) – Норма градиента", flat)
    assert figure and f"(рисунок {figure[1]}, таблица 1)" in flat  # referred to by its number
    assert "Измерение." in html and "(F(x) + x)′ = F′(x) + 1" in flat
    assert "убывает на 1,0 порядка в ResNet-110" in flat  # orders from the hand-made numbers
    assert "растёт на 5,0 порядка с BN" in flat and "убывает на 8,0 порядка без BN" in flat
    assert "init = torch без BN норма градиента убывает на 0,6 порядка в ResNet и падает до нуля" in flat
    assert "обучение это равновесие нарушает" in flat  # plain no-BN He net: flat at init
    assert "init = he" in flat and "1,6·10⁸" in flat and "0,25" in flat  # the logits std, measured
    assert "bn-claim" in flat  # the BN-less runs use He init only: what it does not show, and how to test it
    assert "labreport gradflow» (её" not in html  # no hint


def test_report_in_english(tmp_path):
    html, _ = report_html(tmp_path, lang="en")
    assert "falls by 1.0 orders of magnitude in" in html and "grows by 5.0 orders of magnitude" in html
    assert "falls to zero" in html and "Figure 1 –" in html and "Table 1 –" in html


def test_report_without_a_measurement_says_how_to_add_it(tmp_path):
    html, built = report_html(tmp_path, measured=False)
    assert "gradflow" not in built.figures and 'id="fig-gradflow"' not in html
    assert "labreport gradflow" in html and "Измерение." not in html
    html, built = report_html(tmp_path / "off", enabled="false")  # disabled: neither figure nor hint
    assert "gradflow" not in built.figures and "labreport gradflow" not in html


def test_cli_gradflow_prints_the_cached_table_without_data(tmp_path):
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(TOML.format(lang="en", enabled="true") + '[data]\nroot = "nowhere"\ndownload = false\n')
    hand_store(tmp_path / "runs", load_config(cfg).gradflow)
    res = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(tmp_path / "runs"), "gradflow"])
    assert res.exit_code == 0, res.output
    assert "0 measured (0 s), 9 cached" in res.output
    assert "ResNet-110, BN" in res.output and "plain-110, no BN" in res.output and "vanished" in res.output


def test_run_measures_at_the_end_when_enabled(tmp_path, cifar_dir, monkeypatch):
    from labreport.engine import runner

    cfg = tmp_path / "experiments.toml"
    cfg.write_text(TOML.format(lang="en", enabled="true") + f'[data]\nroot = "{cifar_dir}"\ndownload = false\n')
    monkeypatch.setattr(runner, "run_matrix", lambda *a, **k: runner.Outcome())  # the runs are not tested here
    calls = []
    monkeypatch.setattr(measure, "measure_cell",
                        lambda cell, data, dev: calls.append(cell) or fake_result(cell, [1, 2], [1, 2]))
    args = ["--config", str(cfg), "--runs", str(tmp_path / "runs"), "run"]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert len(calls) == 9
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and len(calls) == 9 and "0 measured" in res.output  # cached
    cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = true\nsteps = 3"))  # new settings
    assert CliRunner().invoke(main, [*args, "--only", "r110-nobn"]).exit_code == 0
    assert len(calls) == 9  # --only: the runs asked for, nothing else


def test_a_failed_measurement_does_not_fail_the_run(tmp_path, cifar_dir, monkeypatch):
    from labreport.engine import runner

    cfg = tmp_path / "experiments.toml"  # the default settings need 768 training images, this data has 500
    cfg.write_text(TOML.format(lang="en", enabled="true") + f'[data]\nroot = "{cifar_dir}"\ndownload = false\n')
    monkeypatch.setattr(runner, "run_matrix", lambda *a, **k: runner.Outcome())
    res = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(tmp_path / "runs"), "run"])
    assert res.exit_code == 0
    assert ("warning: gradflow: [gradflow] needs probe + images = 768 training images, the data set has 500"
            in res.output)


def test_figure_has_a_row_per_depth_and_a_legend(tmp_path):
    from labreport.report.diagrams import gradient_flow

    assert gradient_flow({"cells": []}, Lang("en")) is None
    settings = replace(HAND, depths=(20, 110))
    hand_store(tmp_path, settings)
    fig = gradient_flow(stored.cached(tmp_path, settings), Lang("en"))
    assert len(fig.axes) == 4 and all(ax.get_yscale() == "log" for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["ResNet, BN", "ResNet, no BN", "plain, BN", "plain, no BN", "He init", "PyTorch's default init"]
    assert fig.axes[1].get_title() == "After 20 Adam steps, depth 20"


def test_table_lines(tmp_path):
    hand_store(tmp_path)
    lines = flow.table_lines(stored.cached(tmp_path, HAND)["cells"], HAND.steps)
    assert "after 20 Adam steps" in lines[0] and len(lines) == 2 + 8 + 1
    rows = {(ln[:20].strip(), ln[20:26].strip()): ln[26:].split() for ln in lines[2:-1]}  # fixed columns
    assert len(rows) == 8 and all(len(v) == 6 for v in rows.values()), lines
    assert rows["ResNet-110, BN", "he"] == ["2", "20", "+1.00", "1", "2", "+0.30"]  # log10(20 / 2) = 1
    assert rows["plain-110, BN", "he"][2] == "-5.00"  # the gradient grows 5 orders towards the first layer
    # a first-layer gradient of exactly 0 in float32: "vanished", not a number of orders
    assert rows["plain-110, no BN", "torch"] == ["0", "0.01", "vanished", "0", "0.01", "vanished"]


def test_fixup_is_measured_on_the_bn_less_resnet_only_and_reported_with_its_logits(tmp_path):
    settings = replace(HAND, inits=("he", "torch", "fixup"))
    assert [(c.family, c.norm) for c in stored.cells(settings) if c.init == "fixup"] == [("resnet", "none")]
    hand_store(tmp_path, settings)
    f = flow.facts(stored.cached(tmp_path, settings), ["he"])
    assert f["total"] == 9 and f["other_init"] == "torch"  # Fixup is not "the other init" of every network
    assert f["nobn_logits_std"] == {"he": 1.6e8, "torch": 0.25, "fixup": 0.0}
