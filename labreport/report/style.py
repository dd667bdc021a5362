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
from matplotlib.ticker import FuncFormatter

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
