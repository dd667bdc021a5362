"""The house style of the report's figures: matplotlib's object-oriented API only (no pyplot, no
global backend), rcParams changed only inside `rc_context`, sizes for an A4 text column, a
colour-blind-safe palette, axes in the report's language, and files that are byte-identical for
equal input (a rebuilt report does not change when the results did not). Titles are left to the
report's numbered captions.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

PAGE_WIDTH = 6.3  # inches: A4 minus 2 x 2.5 cm margins, minus a little
PALETTE = matplotlib.colormaps["tab10"].colors  # colour-blind-safe, 10 colours

RC = {
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


def styled(fn):
    """Build the figure under the house rcParams (restored afterwards: no global state)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(RC):
            return fn(*args, **kwargs)
    return wrapper


def pct_axis(L):
    """Accuracy axis ticks as percentages in the report's language: 40 % / 40%."""
    return FuncFormatter(lambda v, _pos: L.pct(v, 0))


FEW_EPOCHS = 5  # a curve of this many epochs or fewer is drawn as its points, on an axis of whole epochs


def epoch_axis(ax, last: int) -> None:
    """The epoch axis: whole epochs only; for a short run (a preview's 1 or 2 epochs) every epoch
    ticked and half an epoch of room on each side, not matplotlib's 0.945 ... 1.050 around one point."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if 0 < last <= FEW_EPOCHS:
        ax.set_xlim(0.5, last + 0.5)
        ax.set_xticks(range(1, last + 1))


def accuracy_axes(ax, L, ylim: tuple[float, float] = (0, 1), last: int = 0) -> None:
    """Accuracy (in percent, the language's way) against epochs up to `last`."""
    ax.set_ylim(*ylim)
    ax.yaxis.set_major_formatter(pct_axis(L))
    epoch_axis(ax, last)


def points(n: int, hollow: bool = False) -> dict:
    """Line keywords that mark each point of a curve of few epochs (one point alone draws no line);
    `hollow` for the second curve of a pair (validation beside test), so that equal points both show."""
    if n > FEW_EPOCHS:
        return {}
    return {"marker": "o", "ms": 3.5, **({"mfc": "white"} if hollow else {})}


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def save_figure(fig: Figure, out_dir: Path, name: str) -> dict[str, Path]:
    """Write out_dir/name.svg and out_dir/name.png (150 dpi), byte-identical for equal figures:
    no date in the SVG, no software tag in the PNG, fixed SVG ids."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"svg": out_dir / f"{name}.svg", "png": out_dir / f"{name}.png"}
    with matplotlib.rc_context(RC):
        fig.savefig(paths["svg"], format="svg", metadata={"Date": None, "Creator": None})
        fig.savefig(paths["png"], format="png", dpi=150, metadata={"Software": None})
    return paths
