"""Task 1 in pictures: the gradient-flow measurement (||dL/dW|| per layer, ResNet against its plain
twin, with and without BatchNorm). Returns matplotlib Figures in the house style (style.py)."""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from labreport.report.labels import init_name
from labreport.report.style import PAGE_WIDTH, PALETTE, finite, styled

INIT_STYLES = {"he": "-", "torch": "--", "fixup": ":"}


def family_of(cell: dict) -> str:
    return "resnet" if cell["model"].startswith("resnet") else "plain"


def _positive(values) -> list[float]:
    """Norms for a log axis: zero (vanished below float32) and non-finite ones become gaps."""
    return [v if finite(v) and v > 0 else math.nan for v in values]


@styled
def gradient_flow(measurement: dict, L) -> Figure | None:
    """||dL/dW|| per layer against its depth, log scale: at initialisation (left) and after the
    training steps (right), one row per measured depth. Colour: the network (ResNet / plain, with or
    without BN); line style: the init. `measurement` is gradflow.cached(...); None when it is empty."""
    results = measurement.get("cells") or []
    if not results:
        return None
    depths = sorted({_depth(r["cell"]) for r in results})
    steps = results[0]["cell"]["steps"]
    fig = Figure(figsize=(PAGE_WIDTH, 2.5 * len(depths) + 0.9), layout="constrained")
    axes = fig.subplots(len(depths), 2, sharey="row", squeeze=False)
    for row, depth in enumerate(depths):
        for col, key in enumerate(("grad_init", "grad_trained")):
            title = L._("At initialisation") if col == 0 else L._("After %(k)s Adam steps", k=steps)
            _gradient_panel(axes[row][col], [r for r in results if _depth(r["cell"]) == depth], key)
            axes[row][col].set_title(L._("%(title)s, depth %(d)s", title=title, d=depth) if len(depths) > 1 else title)
            if row == len(depths) - 1:
                axes[row][col].set_xlabel(L._("Layer (by depth)"))
        axes[row][0].set_ylabel(L._("‖∂L/∂W‖ of the layer"))
    fig.legend(handles=_gradflow_handles(results, L), loc="outside lower center", ncol=3, frameon=False)
    return fig


# the gradient-flow figure's networks, in the legend's order: a colour each (PALETTE)
FIGURE_NETWORKS = (("resnet", "batch"), ("resnet", "none"), ("plain", "batch"), ("plain", "none"))


def _gradflow_handles(results: list[dict], L) -> list[Line2D]:
    """The legend: a colour per network, a line style per init measured."""
    def network(fam, norm):
        return ("ResNet" if fam == "resnet" else L._("plain")) + ", " + ("BN" if norm == "batch" else L._("no BN"))

    handles = [Line2D([], [], color=PALETTE[i], lw=1.5, label=network(*net)) for i, net in enumerate(FIGURE_NETWORKS)]
    inits = [i for i in INIT_STYLES if any(r["cell"]["init"] == i for r in results)]
    return handles + [Line2D([], [], color="0.3", ls=INIT_STYLES[i], lw=1.1, label=init_name(i, L)) for i in inits]


def _depth(cell: dict) -> int:
    return int(cell["model"].removeprefix(family_of(cell)))


def _gradient_panel(ax, results: list[dict], key: str) -> None:
    """One depth's measurements at one moment (grad_init or grad_trained) on a log axis."""
    ax.set_yscale("log")
    for res in results:
        if not res.get(key):
            continue
        c = res["cell"]
        ys = _positive(res[key])
        ax.plot(range(1, len(ys) + 1), ys, color=PALETTE[FIGURE_NETWORKS.index((family_of(c), c["norm"]))],
                ls=INIT_STYLES.get(c["init"], ":"), lw=1.1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
