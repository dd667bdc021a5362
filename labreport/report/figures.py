"""Results -> matplotlib Figures for the report (no torch; no I/O except `save_figure`).

Every function takes what `analysis` computed (groups, success rates, resources) and an
`i18n.Lang` (the words come from the message catalogue, the numbers follow the language: "40 %"
and decimal commas in Russian), and returns a `matplotlib.figure.Figure`, or None when there is
nothing to draw, so the report can skip the figure and say why. Figures are built with the object-oriented API only: no pyplot, no global
backend, rcParams changed only inside `rc_context`. Sizes fit an A4 text column (6.3 in wide);
titles are left to the report's numbered captions. `save_figure` writes byte-identical SVG and
PNG files for equal input, so a rebuilt report does not change when the results did not.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from labreport.science.conclusions import Group, Resource
from labreport.report.labels import axis_name, init_name
from labreport.store.gradflow import NETWORKS

PAGE_WIDTH = 6.3  # inches: A4 minus 2 x 2.5 cm margins, minus a little
MANY = 6  # more groups than this: test accuracy only, compact legend below
PALETTE = matplotlib.colormaps["tab10"].colors  # colour-blind-safe, 10 colours
LINESTYLES = ("-", "--", ":", "-.")

_RC = {
    "font.family": "DejaVu Sans",  # has Cyrillic glyphs
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 9,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "svg.hashsalt": "labreport",  # fixed element ids: reproducible SVG
    "svg.fonttype": "path",  # glyphs as paths: renders the same without the font installed
}

_SHORT = {"weight_decay": "wd", "batch_size": "bs"}  # raw labels, where no human names are given


def _pct_axis(L):
    """Accuracy axis ticks as percentages in the report's language: 40 % / 40%."""
    return FuncFormatter(lambda v, _pos: L.pct(v, 0))


def _styled(fn):
    """Build the figure under the house rcParams (restored afterwards: no global state)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)
    return wrapper


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
            if (e := h.get("epoch")) is not None and _finite(v := h.get(key)):
                per_epoch.setdefault(e, []).append(v)
    epochs = sorted(per_epoch)
    return epochs, [statistics.fmean(per_epoch[e]) for e in epochs]


def _legend_label(g: Group, groups: Sequence[Group], L, names=None, wrap: bool = False) -> str:
    """Grid coordinates only when every group is from one experiment; a marker when incomplete
    (on its own line with `wrap`, so that legend columns stay narrow)."""
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
        label += f"{chr(10) if wrap else ' '}({marker})"
    return label


def _styles(groups: Sequence[Group]) -> list[tuple]:
    """(colour, linestyle) per group. A two-factor grid: colour = one factor, line = the other,
    so a 3 x 4 grid reads as 'colour is L2, dash is dropout' instead of 12 unrelated colours."""
    n = len(groups)
    names = [k for k, _ in groups[0].coords] if groups else []
    if n > len(PALETTE) and len(names) == 2 and all([k for k, _ in g.coords] == names for g in groups):
        a, b = (_sorted_levels(g.coord(k) for g in groups) for k in names)
        if len(a) < len(b):
            names, a, b = names[::-1], b, a
        if len(a) <= len(PALETTE) and len(b) <= len(LINESTYLES):
            return [(PALETTE[a.index(g.coord(names[0]))], LINESTYLES[b.index(g.coord(names[1]))]) for g in groups]
    return [(PALETTE[i % len(PALETTE)], LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]) for i in range(n)]


@_styled
def curves(groups: Sequence[Group], L, names=None, title: str | None = None) -> Figure | None:
    """Validation (dashed) and test (solid) accuracy per epoch, mean over each group's runs.

    More than MANY groups: test accuracy only, one style per group, legend below in columns.
    None when no group has any history.
    """
    drawn = [g for g in groups if any(r.history for r in g.runs)]
    if not drawn:
        return None
    many = len(drawn) > MANY
    fig = Figure(figsize=(PAGE_WIDTH, 4.0 if many else 3.3), layout="constrained")
    ax = fig.add_subplot()
    handles, any_val = [], False
    for g, (colour, ls) in zip(drawn, _styles(drawn)):
        runs = [r for r in g.runs if r.history]
        label = _legend_label(g, drawn, L, names, wrap=many)
        ax.plot(*_mean_curve(runs, "test_acc"), color=colour, ls=ls if many else "-", lw=1.2)
        if not many:
            ve, vv = _mean_curve(runs, "val_acc")
            if ve:
                ax.plot(ve, vv, color=colour, ls="--", lw=1.0)
                any_val = True
        handles.append(Line2D([], [], color=colour, ls=ls if many else "-", lw=1.2, label=label))
    if not many:
        handles.append(Line2D([], [], color="0.3", ls="-", lw=1.0, label=L._("test")))
        if any_val:
            handles.append(Line2D([], [], color="0.3", ls="--", lw=1.0, label=L._("validation")))
    ax.set_xlabel(L._("Epoch"))
    ax.set_ylabel(L._("Test accuracy") if many else L._("Accuracy"))
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(_pct_axis(L))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ncol = 3 if many else min(len(handles), 4)
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False,
               fontsize=7 if many else 7.5, handlelength=2.5, columnspacing=1.2)
    if title:
        ax.set_title(title)
    return fig


# --------------------------------------------------------------------------------------------
# Two-factor grid
# --------------------------------------------------------------------------------------------
@_styled
def heatmap(groups: Sequence[Group], row: str, col: str, L) -> Figure | None:
    """Mean test accuracy (at the validation-chosen epoch) over a row x col grid, in %.

    Cells average the groups at that grid point (other factors, if any, pooled); a cell with no
    finished run says n/a. None when either factor has fewer than 2 levels or nothing finished.
    """
    grid = [g for g in groups if g.coord(row) is not None and g.coord(col) is not None]
    rows = _sorted_levels(g.coord(row) for g in grid)
    cols = _sorted_levels(g.coord(col) for g in grid)
    if len(rows) < 2 or len(cols) < 2:
        return None
    cells: dict[tuple, list[float]] = {}
    for g in grid:
        if g.mean is not None:
            cells.setdefault((g.coord(row), g.coord(col)), []).append(g.mean)
    if not cells:
        return None
    values = np.full((len(rows), len(cols)), np.nan)
    for (r, c), means in cells.items():
        values[rows.index(r), cols.index(c)] = 100 * statistics.fmean(means)
    fig = Figure(figsize=(min(PAGE_WIDTH, 1.1 * len(cols) + 2.2), 0.5 * len(rows) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(False)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.9")
    lo, hi = np.nanmin(values), np.nanmax(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            if math.isnan(v):
                ax.text(j, i, "—", ha="center", va="center", color="0.35")
            else:  # dark text on the light (yellow) end of viridis, light text elsewhere
                dark = (v - lo) / (hi - lo) > 0.6
                ax.text(j, i, L.pct(v / 100, 1), ha="center", va="center", color="0.1" if dark else "white")
    ax.set_xticks(range(len(cols)), [L.sci(c) for c in cols])
    ax.set_yticks(range(len(rows)), [L.sci(r) for r in rows])
    ax.set_xlabel(axis_name(col, L))
    ax.set_ylabel(axis_name(row, L))
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    cbar = fig.colorbar(im, ax=ax, shrink=0.9, pad=0.02)
    cbar.set_label(L._("Test accuracy"))
    cbar.formatter = FuncFormatter(lambda v, _pos: L.pct(v / 100, 0))
    cbar.update_ticks()
    cbar.outline.set_visible(False)
    return fig


# --------------------------------------------------------------------------------------------
# Seeds: did each run train?
# --------------------------------------------------------------------------------------------
PerRun = Sequence  # bnclaim.RunOutcome: .best_val, .trained


@_styled
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
            if not _finite(acc):
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
    ax.yaxis.set_major_formatter(_pct_axis(L))
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
    ax.barh(y, [v if _finite(v) else 0 for v in values], color=PALETTE[0], height=0.65)
    top = max((v for v in values if _finite(v)), default=1.0) or 1.0
    for yi, v in zip(y, values):
        ax.text((v if _finite(v) else 0) + 0.02 * top, yi, fmt(v) if _finite(v) else "—",
                va="center", fontsize=7, color="0.2" if _finite(v) else "0.5")
    ax.set_xlim(0, top * 1.25)
    ax.set_axisbelow(True)  # grid lines behind the bars
    ax.grid(False, axis="y")
    ax.tick_params(axis="y", length=0)


@_styled
def resources_chart(rows: Sequence[Resource], L, names=None) -> Figure | None:
    """Seconds per epoch and peak device memory per group: two horizontal bar panels."""
    rows = list(rows)
    if not rows or all(not _finite(r.epoch_time_s) and not _finite(r.peak_mem_mib) for r in rows):
        return None
    fig = Figure(figsize=(PAGE_WIDTH, 0.2 * len(rows) + 1.0), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    _bar_panel(left, [r.epoch_time_s for r in rows], lambda v: L.dec(v, 1))
    left.set_xlabel(L._("Epoch time, s"))
    left.set_yticks(range(len(rows)), [names.of(r.label) if names else _compact(r.label) for r in rows])
    left.invert_yaxis()
    mem = [r.peak_mem_mib for r in rows]
    if any(_finite(m) for m in mem):
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
# Gradient flow (task 1)
# --------------------------------------------------------------------------------------------
INIT_STYLES = {"he": "-", "torch": "--", "fixup": ":"}


def family_of(cell: dict) -> str:
    return "resnet" if cell["model"].startswith("resnet") else "plain"


def _positive(values) -> list[float]:
    """Norms for a log axis: zero (vanished below float32) and non-finite ones become gaps."""
    return [v if _finite(v) and v > 0 else math.nan for v in values]


@_styled
def gradient_flow(measurement: dict, L) -> Figure | None:
    """||dL/dW|| per layer against its depth, log scale: at initialisation (left) and after the
    training steps (right), one row per measured depth. Colour: the network (ResNet / plain, with or
    without BN); line style: the init. `measurement` is gradflow.cached(...); None when it is empty."""
    results = measurement.get("cells") or []
    if not results:
        return None
    depths = sorted({int(c["cell"]["model"].removeprefix(family_of(c["cell"]))) for c in results})
    inits = [i for i in INIT_STYLES if any(c["cell"]["init"] == i for c in results)]
    steps = results[0]["cell"]["steps"]
    fig = Figure(figsize=(PAGE_WIDTH, 2.5 * len(depths) + 0.9), layout="constrained")
    axes = fig.subplots(len(depths), 2, sharey="row", squeeze=False)
    for row, depth in enumerate(depths):
        for col, key in enumerate(("grad_init", "grad_trained")):
            ax = axes[row][col]
            ax.set_yscale("log")
            for res in results:
                c = res["cell"]
                fam = family_of(c)
                if int(c["model"].removeprefix(fam)) != depth or not res.get(key):
                    continue
                colour = PALETTE[NETWORKS.index((fam, c["norm"]))]
                ys = _positive(res[key])
                ax.plot(range(1, len(ys) + 1), ys, color=colour, ls=INIT_STYLES.get(c["init"], ":"), lw=1.1)
            title = L._("At initialisation") if col == 0 else L._("After %(k)s Adam steps", k=steps)
            ax.set_title(L._("%(title)s, depth %(d)s", title=title, d=depth) if len(depths) > 1 else title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if row == len(depths) - 1:
                ax.set_xlabel(L._("Layer (by depth)"))
        axes[row][0].set_ylabel(L._("‖∂L/∂W‖ of the layer"))
    handles = [Line2D([], [], color=PALETTE[i], lw=1.5,
                      label=("ResNet" if fam == "resnet" else L._("plain")) + ", "
                      + ("BN" if norm == "batch" else L._("no BN")))
               for i, (fam, norm) in enumerate(NETWORKS)]
    handles += [Line2D([], [], color="0.3", ls=INIT_STYLES[i], lw=1.1, label=init_name(i, L)) for i in inits]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    return fig


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def save_figure(fig: Figure, out_dir: Path, name: str) -> dict[str, Path]:
    """Write out_dir/name.svg and out_dir/name.png (150 dpi), byte-identical for equal figures:
    no date in the SVG, no software tag in the PNG, fixed SVG ids."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"svg": out_dir / f"{name}.svg", "png": out_dir / f"{name}.png"}
    with matplotlib.rc_context(_RC):
        fig.savefig(paths["svg"], format="svg", metadata={"Date": None, "Creator": None})
        fig.savefig(paths["png"], format="png", dpi=150, metadata={"Software": None})
    return paths
