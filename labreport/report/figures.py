"""Results -> matplotlib Figures for the report (no torch, no I/O): accuracy curves, the grid's heatmap, every
seed against the threshold of "trained", and the cost of training.

Every function takes what the science computed (groups, success rates, resources) and an `i18n.Lang` (the words
come from the message catalogue, the numbers follow the language: "40 %" and decimal commas in Russian), and
returns a `matplotlib.figure.Figure` in the house style (style.py), or None when there is nothing to draw, so the
report can skip the figure and say why. A curve of a few epochs (a preview's) is drawn as its points."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from labreport.report.labels import axis_name, factor_value
from labreport.report.style import PAGE_WIDTH, PALETTE, accuracy_axes, epoch_axis, finite, pct_axis, points, styled
from labreport.science.conclusions import Group, Resource

MANY = 6  # more groups than this: small multiples, a few lines per panel
_SHORT = {"weight_decay": "wd", "batch_size": "bs"}  # raw labels, where no human names are given


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _sorted_levels(values) -> list:
    levels = list(dict.fromkeys(values))
    try:
        return sorted(levels)
    except TypeError:  # mixed types: keep a stable order anyway
        return sorted(levels, key=str)


# --------------------------------------------------------------------------------------------
# Accuracy curves
# --------------------------------------------------------------------------------------------
def _mean_curve(runs: Sequence, key: str) -> tuple[list, list]:
    """Mean of `key` per epoch over the runs that reached that epoch (partial runs included)."""
    per_epoch: dict = {}
    for r in runs:
        for h in r.history:
            if (e := h.get("epoch")) is not None and finite(v := h.get(key)):
                per_epoch.setdefault(e, []).append(v)
    epochs = sorted(per_epoch)
    return epochs, [statistics.fmean(per_epoch[e]) for e in epochs]


def _legend_label(g: Group, groups: Sequence[Group], L, names=None) -> str:
    """Grid coordinates only when every group is from one experiment; a marker when incomplete."""
    one_experiment = g.coords and len({x.experiment for x in groups}) == 1
    if names is not None:
        label = names.coords(g) if one_experiment else names(g)
    elif one_experiment:
        label = ", ".join(f"{_SHORT.get(k, k)}={_fmt(v)}" for k, v in g.coords)
    else:
        label = g.label
    if not g.complete:
        if g.n_total > 1:
            marker = L._("incomplete: %(k)s of %(n)s runs", k=len(g.finished), n=g.n_total)
        else:
            run = g.runs[0]
            done = max((h.get("epoch", 0) for h in run.history), default=0)
            marker = L._("incomplete: %(k)s of %(n)s epochs", k=done, n=run.spec.get("epochs", "?"))
        label += f" ({marker})"
    return label


@styled
def curves(groups: Sequence[Group], L, names=None, title: str | None = None) -> Figure | None:
    """Validation (dashed) and test (solid) accuracy per epoch, mean over each group's runs.

    Up to MANY groups share one axis. More are drawn as small multiples, so that no axis holds more
    than a few lines: a two-factor grid as one panel per level of the factor with fewer levels,
    colour the other factor (task 4: a panel per dropout, a colour per L2 coefficient); anything
    else as one panel per group. None when no group has any history.
    """
    drawn = [g for g in groups if any(r.history for r in g.runs)]
    if not drawn:
        return None
    if len(drawn) <= MANY:
        return _curves_one_axis(drawn, L, names, title)
    return _curves_panels(drawn, L, names)


def _draw_curves(ax, g: Group, colour, lw: float = 1.2, mark_incomplete: bool = False) -> bool:
    """A group's mean test (solid) and validation (dashed) curves, with `mark_incomplete` an x at the
    end of an incomplete group's (where no legend entry can say so). Whether it had a validation curve."""
    runs = [r for r in g.runs if r.history]
    te, tv = _mean_curve(runs, "test_acc")
    ax.plot(te, tv, color=colour, ls="-", lw=lw, **points(len(te)))
    if mark_incomplete and not g.complete and te:
        ax.plot(te[-1:], tv[-1:], color=colour, marker="x", ms=5, ls="none")
    ve, vv = _mean_curve(runs, "val_acc")
    if ve:
        ax.plot(ve, vv, color=colour, ls="--", lw=lw - 0.2, **points(len(ve), hollow=True))
    return bool(ve)


def _last_epoch(groups: Sequence[Group]) -> int:
    return max((h.get("epoch") or 0 for g in groups for r in g.runs for h in r.history), default=0)


def _late_range(groups: Sequence[Group]) -> tuple[float, float]:
    """The accuracy axis of small multiples: what the curves span over the last 60 % of training,
    to the next 5 points, so that differences of a point between configurations can be seen (the
    first epochs' climb from chance runs in from below the axis)."""
    values = []
    for g in groups:
        runs = [r for r in g.runs if r.history]
        for key in ("test_acc", "val_acc"):
            epochs, ys = _mean_curve(runs, key)
            late = max(epochs, default=0) * 0.4
            values += [y for e, y in zip(epochs, ys) if e >= late]
    if not values:
        return 0.0, 1.0
    lo, hi = math.floor((min(values) - 0.02) * 20) / 20, math.ceil((max(values) + 0.02) * 20) / 20
    return max(0.0, lo), min(1.0, hi)


def _val_test_handles(L, any_val: bool, last: int = 0) -> list[Line2D]:
    handles = [Line2D([], [], color="0.3", ls="-", lw=1.0, label=L._("test"), **points(last))]
    if any_val:
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1.0, label=L._("validation"), **points(last, True)))
    return handles


def _curves_one_axis(drawn: list[Group], L, names, title: str | None) -> Figure:
    fig = Figure(figsize=(PAGE_WIDTH, 3.3), layout="constrained")
    ax = fig.add_subplot()
    handles, any_val = [], False
    for i, g in enumerate(drawn):
        colour = PALETTE[i % len(PALETTE)]
        any_val |= _draw_curves(ax, g, colour)
        handles.append(Line2D([], [], color=colour, lw=1.2, label=_legend_label(g, drawn, L, names)))
    handles += _val_test_handles(L, any_val, _last_epoch(drawn))
    ax.set_xlabel(L._("Epoch"))
    ax.set_ylabel(L._("Accuracy"))
    accuracy_axes(ax, L, last=_last_epoch(drawn))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False,
               handlelength=2.5, columnspacing=1.2)
    if title:
        ax.set_title(title)
    return fig


def _grid_split(groups: Sequence[Group]) -> tuple[str, str] | None:
    """(panel factor, colour factor) when every group is a point of the same two-factor grid with
    at most len(PALETTE) colours; the factor with fewer levels makes the panels."""
    names = [k for k, _ in groups[0].coords]
    if len(names) != 2 or any([k for k, _ in g.coords] != names for g in groups):
        return None
    a, b = names
    if len(_sorted_levels(g.coord(a) for g in groups)) > len(_sorted_levels(g.coord(b) for g in groups)):
        a, b = b, a
    return (a, b) if len(_sorted_levels(g.coord(b) for g in groups)) <= len(PALETTE) else None


def _panels(drawn: list[Group], L, names) -> tuple[list[tuple[str, list[Group]]], Callable, list[Line2D]]:
    """The small multiples' panels (title, groups), each group's colour, and the colours' legend."""
    split = _grid_split(drawn)
    if split is None:
        return [(names(g) if names else g.label, [g]) for g in drawn], lambda g: PALETTE[0], []
    panel_f, colour_f = split
    colours = _sorted_levels(g.coord(colour_f) for g in drawn)
    panels = [(factor_value(panel_f, lvl, L), [g for g in drawn if g.coord(panel_f) == lvl])
              for lvl in _sorted_levels(g.coord(panel_f) for g in drawn)]
    handles = [Line2D([], [], color=PALETTE[i], lw=1.5, label=factor_value(colour_f, c, L))
               for i, c in enumerate(colours)]
    return panels, lambda g: PALETTE[colours.index(g.coord(colour_f))], handles


def _curves_panels(drawn: list[Group], L, names) -> Figure:
    """Small multiples: see curves()."""
    panels, colour_of, handles = _panels(drawn, L, names)
    ncols = min(len(panels), 3 if handles else 4)
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(PAGE_WIDTH, 2.1 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    any_val, ylim = False, _late_range(drawn)
    for ax, (panel_title, gs) in zip(axes.flat, panels):
        for g in gs:
            any_val |= _draw_curves(ax, g, colour_of(g), lw=1.1, mark_incomplete=True)
        ax.set_title(panel_title, fontsize=8)
        accuracy_axes(ax, L, ylim, _last_epoch(drawn))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(L._("Epoch"))
    for ax in axes[:, 0]:
        ax.set_ylabel(L._("Accuracy"))
    handles = handles + _val_test_handles(L, any_val, _last_epoch(drawn))
    if not all(g.complete for g in drawn):
        handles.append(Line2D([], [], color="0.3", marker="x", ls="none", label=L._("incomplete")))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False)
    return fig


# --------------------------------------------------------------------------------------------
# Two-factor grid
# --------------------------------------------------------------------------------------------
def _grid_values(groups: Sequence[Group], row: str, col: str) -> tuple[list, list, np.ndarray] | None:
    """Row levels, column levels and the mean test accuracy (%) of each cell (NaN: no finished run);
    None when either factor has fewer than 2 levels or nothing finished."""
    grid = [g for g in groups if g.coord(row) is not None and g.coord(col) is not None]
    rows = _sorted_levels(g.coord(row) for g in grid)
    cols = _sorted_levels(g.coord(col) for g in grid)
    cells: dict[tuple, list[float]] = {}
    for g in grid:
        if g.mean is not None:
            cells.setdefault((g.coord(row), g.coord(col)), []).append(g.mean)
    if len(rows) < 2 or len(cols) < 2 or not cells:
        return None
    values = np.full((len(rows), len(cols)), np.nan)
    for (r, c), means in cells.items():
        values[rows.index(r), cols.index(c)] = 100 * statistics.fmean(means)
    return rows, cols, values


def _annotate(ax, values: np.ndarray, lo: float, hi: float, L) -> None:
    """Each cell's value in it, dark on the light (yellow) end of viridis, light elsewhere."""
    for (i, j), v in np.ndenumerate(values):
        light = not math.isnan(v) and (v - lo) / (hi - lo) > 0.6
        ax.text(j, i, "—" if math.isnan(v) else L.pct(v / 100, 1), ha="center", va="center",
                color="0.35" if math.isnan(v) else "0.1" if light else "white")


@styled
def heatmap(groups: Sequence[Group], row: str, col: str, L) -> Figure | None:
    """Mean test accuracy (at the validation-chosen epoch) over a row x col grid, in %.

    Cells average the groups at that grid point (other factors, if any, pooled); a cell with no
    finished run says n/a. None when either factor has fewer than 2 levels or nothing finished.
    """
    if (grid := _grid_values(groups, row, col)) is None:
        return None
    rows, cols, values = grid
    fig = Figure(figsize=(min(PAGE_WIDTH, 1.1 * len(cols) + 2.2), 0.5 * len(rows) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(False)
    lo, hi = np.nanmin(values), np.nanmax(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.9")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    _annotate(ax, values, lo, hi, L)
    ax.set_xticks(range(len(cols)), [L.sci(c) for c in cols])
    ax.set_yticks(range(len(rows)), [L.sci(r) for r in rows])
    ax.set_xlabel(axis_name(col, L))
    ax.set_ylabel(axis_name(row, L))
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    cbar = fig.colorbar(im, ax=ax, shrink=0.9, pad=0.02)
    cbar.set_label(L._("Test accuracy"))
    digits = 0 if hi - lo >= 4 else 1  # ticks half a point apart must not all read "84 %"
    cbar.formatter = FuncFormatter(lambda v, _pos: L.pct(v / 100, digits))
    cbar.update_ticks()
    cbar.outline.set_visible(False)
    return fig


# --------------------------------------------------------------------------------------------
# Seeds: did each run train?
# --------------------------------------------------------------------------------------------
PerRun = Sequence  # bnclaim.RunOutcome: .best_val, .trained


@styled
def seeds_strip(arms: Sequence[tuple[str, PerRun]], threshold: float, L) -> Figure | None:
    """Best validation accuracy of every seed, one column per arm, with the 'trained' threshold.

    Points are spread by their index in the arm (deterministic jitter). Filled circles trained,
    hollow ones did not; runs without a value (diverged before validating) are an 'x' at 0, as
    are diverged runs whose value is above the threshold (drawn at that value).
    """
    arms = [(label, list(per_run)) for label, per_run in arms if per_run]
    if not arms:
        return None
    fig = Figure(figsize=(min(PAGE_WIDTH, 1.5 * len(arms) + 2.0), 3.0), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(False, axis="x")
    trained_pts, other_pts, bad_pts = [], [], []
    for x, (_, per_run) in enumerate(arms):
        offsets = np.linspace(-0.22, 0.22, len(per_run)) if len(per_run) > 1 else [0.0]
        for dx, o in zip(offsets, per_run):
            acc, ok = o.best_val, o.trained
            if not finite(acc):
                bad_pts.append((x + dx, 0.0))
            elif ok:
                trained_pts.append((x + dx, acc))
            elif acc > threshold:  # above the threshold yet not trained: it diverged later
                bad_pts.append((x + dx, acc))
            else:
                other_pts.append((x + dx, acc))
    ax.axhline(threshold, ls="--", lw=1.0, color="0.4", label=L._("Threshold %(value)s", value=L.pct(threshold, 0)))
    for pts, kw, text in ((trained_pts, {"marker": "o", "color": PALETTE[0]}, L._("trained")),
                          (other_pts, {"marker": "o", "facecolors": "none", "edgecolors": PALETTE[1]},
                           L._("did not train")),
                          (bad_pts, {"marker": "x", "color": PALETTE[3]}, L._("diverged / no value"))):
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=22, linewidths=1.0, label=text, zorder=3, **kw)
    ticks = [label + "\n" + L._("trained: %(k)s of %(n)s", k=sum(o.trained for o in pr), n=len(pr))
             for label, pr in arms]
    ax.set_xticks(range(len(arms)), ticks)
    ax.set_xlim(-0.5, len(arms) - 0.5)
    ax.set_ylim(-0.03, 1.0)
    ax.set_ylabel(L._("Best validation accuracy"))
    ax.yaxis.set_major_formatter(pct_axis(L))
    fig.legend(loc="outside lower center", ncol=2, frameon=False)
    return fig


# --------------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------------
def _compact(label: str) -> str:
    for key, short in _SHORT.items():
        label = label.replace(f"{key}=", f"{short}=")
    return label.replace("[", " [")


def _bar_panel(ax, values: list, fmt) -> None:
    y = np.arange(len(values))
    ax.barh(y, [v if finite(v) else 0 for v in values], color=PALETTE[0], height=0.65)
    top = max((v for v in values if finite(v)), default=1.0) or 1.0
    for yi, v in zip(y, values):
        ax.text((v if finite(v) else 0) + 0.02 * top, yi, fmt(v) if finite(v) else "—",
                va="center", fontsize=7, color="0.2" if finite(v) else "0.5")
    ax.set_xlim(0, top * 1.25)
    ax.set_axisbelow(True)  # grid lines behind the bars
    ax.grid(False, axis="y")
    ax.tick_params(axis="y", length=0)


@styled
def resources_chart(rows: Sequence[Resource], L, names=None) -> Figure | None:
    """Seconds per epoch and peak device memory per group: two horizontal bar panels."""
    rows = list(rows)
    if not rows or all(not finite(r.epoch_time_s) and not finite(r.peak_mem_mib) for r in rows):
        return None
    fig = Figure(figsize=(PAGE_WIDTH, 0.2 * len(rows) + 1.0), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    _bar_panel(left, [r.epoch_time_s for r in rows], lambda v: L.dec(v, 1))
    left.set_xlabel(L._("Epoch time, s"))
    left.set_yticks(range(len(rows)), [names.of(r.label) if names else _compact(r.label) for r in rows])
    left.invert_yaxis()
    mem = [r.peak_mem_mib for r in rows]
    if any(finite(m) for m in mem):
        _bar_panel(right, mem, L.int)
    else:
        right.text(0.5, 0.5, L._("not measured on a CPU"), transform=right.transAxes, ha="center", va="center",
                   color="0.4", fontsize=9)
        right.set_xticks([])
        right.grid(False)
        for spine in right.spines.values():
            spine.set_visible(False)
    right.set_xlabel(L._("Peak memory, MiB"))
    right.tick_params(axis="y", length=0, labelleft=False)
    return fig


# --------------------------------------------------------------------------------------------
# Accuracy and loss, as the lab draws them (its acc_loss_graph)
# --------------------------------------------------------------------------------------------
@styled
def acc_loss(runs: Sequence[tuple[str, Sequence[dict]]], L) -> Figure | None:
    """Test accuracy (solid) and validation accuracy (dashed) per epoch on the left, training loss on
    the right, a colour per run: (label, history) pairs. None when no run has a history."""
    runs = [(label, h) for label, h in runs if h]
    if not runs:
        return None
    fig = Figure(figsize=(PAGE_WIDTH, 2.8 + 0.18 * len(runs)), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    last = max(h["epoch"] for _, history in runs for h in history)
    for i, (label, history) in enumerate(runs):
        colour, epochs = PALETTE[i % len(PALETTE)], [h["epoch"] for h in history]
        acc_ax.plot(epochs, [h["test_acc"] for h in history], color=colour, lw=1.2, label=label, **points(last))
        if any(h.get("val_acc") is not None for h in history):
            acc_ax.plot(epochs, [h.get("val_acc") for h in history], color=colour, lw=1.0, ls="--",
                        **points(last, True))
        loss_ax.plot(epochs, [h["train_loss"] for h in history], color=colour, lw=1.2, **points(last))
    accuracy_axes(acc_ax, L, last=last)
    acc_ax.set_ylabel(L._("Accuracy"))
    loss_ax.set_ylabel(L._("Training loss"))
    epoch_axis(loss_ax, last)
    for ax in (acc_ax, loss_ax):
        ax.set_xlabel(L._("Epoch"))
    handles = acc_ax.get_legend_handles_labels()[0] + _val_test_handles(L, True, last)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3), frameon=False)
    return fig
