"""Task 1 drawn: the residual block F(x) + x (the lab's figure 1, after He et al. 2015, figure 2), the
basic block beside the bottleneck block (their figure 5), and the CIFAR ResNet-(6n + 2) of their
section 4.2 stage by stage. Drawn by code in the house style (style.py): vector in the PDF, PNG in
the DOCX, every word from the catalogue, every number computed here.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from labreport.report.style import PAGE_WIDTH, PALETTE, styled

BOX = PALETTE[0]  # a layer
SKIP = PALETTE[3]  # the shortcut
EDGE = "0.15"


def _canvas(width: float, height: float, xmax: float, ymax: float):
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, ymax)
    ax.set_axis_off()
    return fig, ax


def _box(ax, x: float, y: float, w: float, h: float, text: str, colour=BOX, size: float = 7.5) -> None:
    """A layer: a rounded box centred at (x, y)."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                facecolor=colour, alpha=0.18, edgecolor=EDGE, lw=0.9))
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def _arrow(ax, start, end, colour=EDGE, style="-|>", connection="arc3", lw=0.9) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=8, color=colour, lw=lw,
                                 connectionstyle=connection, shrinkA=0, shrinkB=0))


def _adder(ax, x: float, y: float, r: float = 0.22) -> None:
    ax.add_patch(Circle((x, y), r, facecolor="white", edgecolor=EDGE, lw=0.9))
    ax.text(x, y, "+", ha="center", va="center", fontsize=9)


def _block(ax, x: float, top: float, layers: list[str], input_label: str, relu: str, shortcut_label: str,
           step: float = 1.0, w: float = 1.9) -> float:
    """A residual block drawn downwards from `top`: its layers with a ReLU between them, the adder,
    the identity shortcut to its right. Returns the y of the block's output."""
    ax.text(x, top + 0.25, input_label, ha="center", va="bottom", fontsize=7.5)
    y = top - 0.35
    _arrow(ax, (x, top + 0.2), (x, y + 0.25))
    ys = [y - i * step for i in range(len(layers))]
    for i, (yy, text) in enumerate(zip(ys, layers)):
        _box(ax, x, yy, w, 0.5, text)
        if i + 1 < len(layers):
            _arrow(ax, (x, yy - 0.25), (x, yy - step + 0.25))
            ax.text(x + 0.08, yy - step / 2, relu, ha="left", va="center", fontsize=6.5, color="0.3")
    add_y = ys[-1] - 0.7
    _arrow(ax, (x, ys[-1] - 0.25), (x, add_y + 0.22))
    _adder(ax, x, add_y)
    side = x + w / 2 + 0.45  # the shortcut runs down beside the layers
    ax.plot([x, side, side], [top + 0.05, top + 0.05, add_y], color=SKIP, lw=1.1)
    _arrow(ax, (side, add_y), (x + 0.22, add_y), colour=SKIP, lw=1.1)
    ax.text(side + 0.08, (top + add_y) / 2, shortcut_label, ha="left", va="center", fontsize=6.5, color=SKIP,
            rotation=90)
    _arrow(ax, (x, add_y - 0.22), (x, add_y - 0.6))
    ax.text(x + 0.08, add_y - 0.41, relu, ha="left", va="center", fontsize=6.5, color="0.3")
    return add_y - 0.6


@styled
def residual_block(L) -> Figure:
    """The residual block: two weight layers compute F(x), the shortcut adds x."""
    fig, ax = _canvas(PAGE_WIDTH * 0.55, 2.6, 4.2, 3.8)
    out = _block(ax, 1.9, 3.3, [L._("weight layer"), L._("weight layer")], "x", "ReLU", L._("identity x"),
                 step=0.9)
    ax.text(1.9, out - 0.05, "F(x) + x", ha="center", va="top", fontsize=8)
    ax.text(0.25, 2.5, "F(x)", ha="left", va="center", fontsize=8)  # the two layers compute F(x)
    ax.plot([0.8, 0.7, 0.7, 0.8], [3.2, 3.2, 1.8, 1.8], color="0.4", lw=0.7)
    return fig


def block_parameters(channels: int, bottleneck: bool) -> int:
    """Weights of the block's convolutions (no biases: BatchNorm follows each), the paper's figure 5:
    a basic block of two 3×3 convolutions on `channels`, a bottleneck of 1×1, 3×3, 1×1 convolutions
    narrowing `channels` four times."""
    if not bottleneck:
        return 2 * 9 * channels * channels
    narrow = channels // 4
    return channels * narrow + 9 * narrow * narrow + narrow * channels


@styled
def basic_and_bottleneck(L) -> Figure:
    """The basic block on 64 channels beside the bottleneck block on 256 (He et al. 2015, figure 5),
    with the weights each has: about the same cost for a four times wider input."""
    fig, ax = _canvas(PAGE_WIDTH, 2.9, 10.0, 5.0)
    blocks = ((2.7, L._("Basic block"), L._("ResNet-18/34, CIFAR ResNet-20…110"), ["3×3, 64", "3×3, 64"],
               L._("64 channels"), 1.0, block_parameters(64, False)),
              (7.3, L._("Bottleneck block"), L._("ResNet-50/101/152"), ["1×1, 64", "3×3, 64", "1×1, 256"],
               L._("256 channels"), 0.75, block_parameters(256, True)))
    for x, title, where, layers, width, step, weights in blocks:
        ax.text(x, 4.85, title, ha="center", va="center", fontsize=8, weight="bold")
        ax.text(x, 4.55, where, ha="center", va="center", fontsize=7, color="0.3")
        out = _block(ax, x, 3.95, layers, width, "ReLU", L._("identity"), step=step)
        ax.text(x, out - 0.1, L.n_("%(w)s weight", "%(w)s weights", weights, w=L.int(weights)), ha="center", va="top",
                fontsize=7.5)
    return fig


@styled
def cifar_resnet(L, depths: tuple[int, ...] = (20, 110)) -> Figure:
    """The CIFAR ResNet-(6n + 2) of He et al. 2015, section 4.2: a 3×3 convolution, three stages of n
    basic blocks (2n layers) on 32×32, 16×16 and 8×8 maps with 16, 32 and 64 filters, option-A
    shortcuts where the shape changes, global average pooling and a 10-way fully connected layer."""
    fig, ax = _canvas(PAGE_WIDTH, 3.1, 10.0, 7.35)
    rows = [(L._("image 32×32, 3 channels"), "", None),
            (L._("convolution 3×3, 16 filters"), "32×32", None),
            (L._("stage 1: n blocks, 2n convolutions 3×3, 16 filters"), "32×32", 0),
            (L._("stage 2: n blocks, 2n convolutions 3×3, 32 filters"), "16×16", 1),
            (L._("stage 3: n blocks, 2n convolutions 3×3, 64 filters"), "8×8", 2),
            (L._("global average pooling"), "1×1", None),
            (L._("fully connected layer, 10 classes"), "", None)]
    x, ys = 5.1, [6.7 - i * 1.0 for i in range(len(rows))]
    for (text, size, stage), y in zip(rows, ys):
        _box(ax, x, y, 5.0, 0.6, text, colour=BOX if stage is None else PALETTE[1 + stage])
        if size:
            ax.text(7.9, y, size, ha="left", va="center", fontsize=7.5, color="0.3")
    for y0, y1 in zip(ys, ys[1:]):
        _arrow(ax, (x, y0 - 0.3), (x, y1 + 0.3))
    ax.text(7.9, 7.1, L._("feature map"), ha="left", va="center", fontsize=7, color="0.3")
    for y in ys[3:5]:  # where the map halves and the filters double: the first block's shortcut is option A
        ax.annotate(L._("shortcut, option A:\nsubsample ×2, zero-pad\nthe new channels"), xy=(2.55, y + 0.15),
                    xytext=(0.05, y + 0.15), fontsize=6, color=SKIP, va="center", ha="left",
                    arrowprops={"arrowstyle": "-|>", "color": SKIP, "lw": 0.8, "shrinkA": 2, "shrinkB": 0})
    names = ", ".join(f"ResNet-{d} (n = {(d - 2) // 6})" for d in depths)
    ax.text(x, 0.15, L._("depth 6n + 2: %(names)s", names=names), ha="center", va="center", fontsize=7.5)
    return fig
