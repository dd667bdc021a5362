"""What a notebook needs that a terminal does not: a live display, figures shown, messages on the console."""

from __future__ import annotations

import sys


def in_jupyter() -> bool:
    """A notebook's kernel, where a live progress display replaces log lines."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def figures_shown_in_notebook() -> None:
    """A Figure that ends a notebook cell is drawn there: labreport draws with matplotlib's object
    API (no pyplot), which registers no display of its own."""
    if not in_jupyter():
        return
    from IPython import get_ipython
    from IPython.core.pylabtools import print_figure
    from matplotlib.figure import Figure

    png = get_ipython().display_formatter.formatters["image/png"]
    png.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def show_messages(console) -> None:
    """Where nothing shows labreport's messages yet (a notebook), show them on the console."""
    from labreport import logs

    if not logs.configured():
        logs.configure(0, console.err)


def print_console():
    from labreport.cluster.executors import Console

    return Console(out=print, err=lambda text: print(text, file=sys.stderr), tty=in_jupyter() or sys.stderr.isatty())
