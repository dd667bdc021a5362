"""Tests for labreport.report.figures: what each figure draws, empty input, reproducible files, Cyrillic."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from labreport.report import figures
from labreport.report.style import save_figure
from labreport.science.conclusions import Resource, group_runs, resources
from labreport.science.bnclaim import RunOutcome, bn_claims
from labreport.report.i18n import Lang
from labreport.science.runs import RunView

EN, RU = Lang("en"), Lang("ru")

EPOCHS = 3


def _history(final: float, epochs: int = EPOCHS, val: bool = True, gpu: bool = True) -> tuple[dict, ...]:
    out = []
    for e in range(1, epochs + 1):
        acc = 0.1 + (final - 0.1) * e / EPOCHS
        out.append({"epoch": e, "lr": 0.1, "train_loss": 1.0, "train_acc": acc + 0.05, "val_loss": 1.0,
                        "val_acc": acc + 0.01 if val else None, "test_loss": 1.0, "test_acc": acc, "train_time_s": 1.0,
                        "epoch_time_s": 1.2, "images_per_s": 1000.0, "grad_norm_mean": 1.0, "grad_norm_max": 2.0,
                        "mem_alloc_mib": 100.0 if gpu else None, "mem_reserved_mib": 120.0 if gpu else None,
                        "micro_batch": 128})
    return tuple(out)


def _view(exp: str, varying: dict, final: float, status: str = "done", epochs_done: int = EPOCHS,
          gpu: bool = True, val: bool = True) -> RunView:
    spec = {"model": "resnet20", "norm": "batch", "dropout": varying.get("dropout", 0.0),
                "weight_decay": varying.get("weight_decay", 0.0), "seed": varying.get("seed", 0), "epochs": EPOCHS}
    history = () if status == "missing" else _history(final, epochs_done if status == "partial" else EPOCHS,
                                                      val=val, gpu=gpu)
    result = None
    if status in ("done", "diverged"):
        result = {"status": "completed" if status == "done" else "diverged", "best_epoch": EPOCHS,
                      "best_val_acc": history[-1]["val_acc"], "test_acc_at_best": history[-1]["test_acc"],
                      "final_test_acc": history[-1]["test_acc"], "final_train_acc": history[-1]["train_acc"],
                      "mean_epoch_time_s": 1.2, "peak_mem_alloc_mib": 100.0 if gpu else None, "params": 270_000,
                      "spec": spec}
    coords = ", ".join(f"{k}={v}" for k, v in varying.items())
    return RunView(exp, "4", f"{exp}[{coords}]", f"{exp}-{coords}", spec, dict(varying), status, result, history)


@pytest.fixture
def grid():
    """dropout x weight_decay = 2 x 3; (0.3, 1e-3) missing, (0.3, 1e-4) partial after 1 epoch."""
    views = []
    for d in (0.0, 0.3):
        for wd in (0.0, 1e-4, 1e-3):
            status = {(0.3, 1e-3): "missing", (0.3, 1e-4): "partial"}.get((d, wd), "done")
            views.append(_view("reg", {"dropout": d, "weight_decay": wd}, 0.8 - d / 10 - wd * 10, status, 1))
    return group_runs(views)


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


# --- curves -----------------------------------------------------------------------------------
def test_curves_draws_val_and_test_per_group_and_marks_partial(grid):
    fig = figures.curves(grid, L=EN)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    # 5 groups with history (the missing one has none): one test and one validation line each
    assert len(ax.get_lines()) == 10
    assert {line.get_linestyle() for line in ax.get_lines()} == {"-", "--"}
    assert ax.get_ylim() == (0, 1)
    labels = _legend_texts(fig)
    assert "dropout=0.3, wd=0.0001 (incomplete: 1 of 3 epochs)" in labels
    assert "dropout=0, wd=0" in labels and "test" in labels and "validation" in labels
    assert not any("0.001" in lbl and "dropout=0.3" in lbl for lbl in labels)


def test_curves_of_a_big_grid_are_small_multiples_russian():
    """dropout x L2 = 3 x 4 (task 4): a panel per dropout, a colour per L2, test and validation in each."""
    views = [_view("reg", {"dropout": d, "weight_decay": wd}, 0.8, "partial" if (d, wd) == (0.3, 1e-3) else "done", 2)
             for d in (0.0, 0.15, 0.3) for wd in (0.0, 1e-5, 1e-4, 1e-3)]
    fig = figures.curves(group_runs(views), L=RU)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["dropout 0", "dropout 0,15", "dropout 0,3"]
    for ax in axes:
        colours = {line.get_color() for line in ax.get_lines() if line.get_linestyle() != "None"}
        assert len(colours) == 4 and {line.get_linestyle() for line in ax.get_lines()} >= {"-", "--"}
        # zoomed on the last 60 % of training, to 5 points, the same for every panel
        assert ax.get_ylim() == axes[0].get_ylim() and 0 < ax.get_ylim()[0] < 0.6 and ax.get_ylim()[1] <= 0.9
    assert axes[0].get_ylabel() == "Точность" and axes[0].get_xlabel() == "Эпоха"
    markers = [line for line in axes[2].get_lines() if line.get_marker() == "x"]
    assert len(markers) == 1  # the partial run's curve ends in an x
    assert _legend_texts(fig) == ["L2 0", "L2 1·10⁻⁵", "L2 1·10⁻⁴", "L2 1·10⁻³", "тест", "валидация", "не завершено"]


def test_curves_of_many_unrelated_groups_are_a_panel_each():
    views = [_view(f"e{i}", {}, 0.5 + i / 100) for i in range(8)]
    fig = figures.curves(group_runs(views), L=EN)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [f"e{i}" for i in range(8)]
    assert all(len(ax.get_lines()) == 2 for ax in axes)


def test_curves_multi_seed_partial_group_and_no_validation():
    runs = [_view("nobn", {"seed": s}, 0.5, status, val=False)
            for s, status in enumerate(("done", "done", "partial", "missing"))]
    fig = figures.curves(group_runs(runs), L=RU, title="Заголовок")
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 1  # no validation split: test only
    assert "nobn (не завершено: 2 из 4 запусков)" in _legend_texts(fig)
    assert ax.get_title() == "Заголовок"


def test_curves_none_without_history():
    assert figures.curves([], EN) is None
    assert figures.curves(group_runs([_view("x", {"seed": 0}, 0.5, "missing")]), EN) is None


# --- heatmap ----------------------------------------------------------------------------------
def test_heatmap_annotates_every_cell(grid):
    fig = figures.heatmap(grid, "dropout", "weight_decay", L=EN)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    texts = _texts(fig)
    assert len(texts) == 2 * 3
    # the missing cell and the partial one (no finished run) have no value
    assert texts.count("—") == 2
    assert texts[0] == "80.0%"  # row dropout=0, col wd=0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1·10⁻⁴", "1·10⁻³"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "0.3"]
    assert len(fig.axes) == 2  # the heat map and its colour bar
    assert "—" in _texts(figures.heatmap(grid, "dropout", "weight_decay", L=RU))


def test_heatmap_none_with_one_level(grid):
    one_row = [g for g in grid if g.coord("dropout") == 0.0]
    assert figures.heatmap(one_row, "dropout", "weight_decay", EN) is None
    assert figures.heatmap(grid, "dropout", "norm", EN) is None
    assert figures.heatmap([], "dropout", "weight_decay", EN) is None


# --- seeds ------------------------------------------------------------------------------------
def test_seeds_strip_points_threshold_and_counts():
    def o(seed, acc, ok):
        return RunOutcome(seed, acc, ok, False, None)

    arms = [("BN", [o(0, 0.9, True), o(1, 0.88, True)]),
            ("no BN", [o(0, 0.1, False), o(1, None, False), o(2, 0.6, True), o(3, 0.5, False)])]
    fig = figures.seeds_strip(arms, threshold=0.2, L=EN)
    (ax,) = fig.axes
    assert [line.get_ydata()[0] for line in ax.get_lines()] == [0.2]  # the threshold
    trained, not_trained, bad = ax.collections
    assert len(trained.get_offsets()) == 3
    assert len(not_trained.get_offsets()) == 1
    # None at 0, and a run above the threshold that did not train (diverged) at its value
    assert sorted(y for _, y in bad.get_offsets()) == [0.0, 0.5]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["BN\ntrained: 2 of 2", "no BN\ntrained: 1 of 4"]
    assert "Threshold 20%" in _legend_texts(fig)


def test_seeds_strip_from_success_rate_is_deterministic():
    runs = [_view("nobn", {"seed": s}, 0.1 + 0.5 * (s == 2)) for s in range(5)]
    runs = [RunView(v.experiment, v.task, v.label, v.key, {**v.spec, "model": "resnet110", "norm": n}, v.varying,
                    v.status, v.result, v.history) for v in runs for n in ("none", "batch")]
    rate = bn_claims(runs, threshold=0.2, claim_rate=0.1)[0].lab_arm
    a, b = (figures.seeds_strip([(rate.label, rate.per_run)], 0.2, EN) for _ in range(2))
    assert (a.axes[0].collections[0].get_offsets() == b.axes[0].collections[0].get_offsets()).all()
    assert figures.seeds_strip([], 0.2, EN) is None
    assert figures.seeds_strip([("empty", [])], 0.2, EN) is None


# --- resources --------------------------------------------------------------------------------
def test_resources_chart_two_panels(grid):
    rows = resources(grid)
    fig = figures.resources_chart(rows, L=RU)
    left, right = fig.axes
    assert len(left.patches) == len(right.patches) == len(rows)
    assert left.get_xlabel() == "Время эпохи, с" and right.get_xlabel() == "Пиковая память, МиБ"
    assert next(t.get_text() for t in left.get_yticklabels()) == "reg [dropout=0, wd=0]"
    assert _texts(fig).count("—") == 2 * 2  # two groups without a finished run, in both panels


def test_resources_chart_cpu_memory_and_empty():
    rows = [Resource("a", "resnet20", 1, 2.0, 100.0, None, 0.1), Resource("b", "resnet20", 1, 3.0, 90.0, None, 0.1)]
    fig = figures.resources_chart(rows, L=EN)
    left, right = fig.axes
    assert len(left.patches) == 2 and not right.patches
    assert "not measured on a CPU" in [t.get_text() for t in right.texts]
    assert figures.resources_chart([], EN) is None
    assert figures.resources_chart([Resource("a", "m", None, None, None, None, None)], EN) is None


# --- files ------------------------------------------------------------------------------------
def test_save_figure_is_byte_identical_and_undated(grid, tmp_path):
    outs = [save_figure(figures.curves(grid, L=RU), tmp_path / d, "curves") for d in ("a", "b")]
    for kind in ("svg", "png"):
        assert outs[0][kind] == tmp_path / "a" / f"curves.{kind}"
        assert outs[0][kind].read_bytes() == outs[1][kind].read_bytes()
    svg = outs[0]["svg"].read_text(encoding="utf-8")
    assert "<dc:date>" not in svg and "Date" not in svg
    assert "Эпоха" in svg and "Точность" in svg  # Cyrillic labels made it into the file
    assert outs[0]["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_figure_renders_in_both_languages(grid, tmp_path):
    arms = [("ResNet-110, без BN", [RunOutcome(0, 0.1, False, False, None), RunOutcome(1, None, False, True, "nan")])]
    for lang in ("ru", "en"):
        L = Lang(lang)
        figs = {"curves": figures.curves(grid, L), "heatmap": figures.heatmap(grid, "dropout", "weight_decay", L),
                "seeds": figures.seeds_strip(arms, 0.2, L), "resources": figures.resources_chart(resources(grid), L)}
        for name, fig in figs.items():
            paths = save_figure(fig, tmp_path, f"{name}_{lang}")
            assert paths["png"].stat().st_size > 1000


# --- a preview's few epochs -------------------------------------------------------------------
def _epochs_only(view: RunView, n: int) -> RunView:
    """The run as if it had trained `n` epochs (a smoke run: 1)."""
    from dataclasses import replace

    return replace(view, spec={**view.spec, "epochs": n}, history=_history(0.4, n))


def test_curves_of_one_epoch_are_points_on_a_whole_epoch_axis():
    """`run --profile smoke` trains 1 epoch: each curve is one point, which a line alone does not
    draw, so each is a marker (validation hollow beside test), on an axis from 0.5 to 1.5 ticked
    at 1 only, not matplotlib's 0.945 ... 1.050 around the point."""
    views = [_epochs_only(_view(e, {}, 0.4), 1) for e in ("cifarnet", "resnet20")]
    fig = figures.curves(group_runs(views), L=RU)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 4 and all(len(line.get_xdata()) == 1 and line.get_marker() == "o" for line in lines)
    assert {line.get_markerfacecolor() for line in lines if line.get_linestyle() == "--"} == {"white"}
    assert ax.get_xlim() == (0.5, 1.5) and list(ax.get_xticks()) == [1]
    legend = {h.get_label(): h.get_marker() for leg in fig.legends for h in leg.legend_handles}
    assert legend["тест"] == "o" and legend["валидация"] == "o"  # the legend shows the points too


def test_curves_of_one_epoch_in_small_multiples_and_the_apis_curves():
    views = [_epochs_only(_view(f"e{i}", {}, 0.4), 1) for i in range(8)]  # more than MANY: a panel each
    fig = figures.curves(group_runs(views), L=EN)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 8 and all(ax.get_xlim() == (0.5, 1.5) and list(ax.get_xticks()) == [1] for ax in axes)
    assert all(line.get_marker() == "o" for ax in axes for line in ax.get_lines())
    fig = figures.acc_loss([("smoke", _history(0.4, 1))], EN)  # Lab.curves
    assert all(ax.get_xlim() == (0.5, 1.5) and list(ax.get_xticks()) == [1] for ax in fig.axes)
    assert all(line.get_marker() == "o" for ax in fig.axes for line in ax.get_lines())


def test_curves_of_many_epochs_are_lines_on_whole_epochs():
    views = [_epochs_only(_view(e, {}, 0.4), 50) for e in ("cifarnet", "resnet20")]
    (ax,) = figures.curves(group_runs(views), L=EN).axes
    assert all(line.get_marker() in ("None", "", None) for line in ax.get_lines())
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert len(ticks) >= 4 and all(float(t).is_integer() for t in ticks) and ax.get_xlim()[1] >= 50
