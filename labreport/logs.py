"""labreport's messages, through Python's logging: the logger "labreport" and its children.

The library only logs (warnings: a damaged checkpoint, a run that failed or diverged; info: the
device a run trains on, an out-of-memory retry; debug: what a developer wants). Whoever runs it
decides where the messages go: the command line (`-q`: warnings only, `-v`: debug) and the Python
API in a notebook call configure(); a program of its own configures logging as it likes. Epoch
lines and progress bars are not messages: they are the reporters' (cluster/progress.py).
"""

from __future__ import annotations

import logging
from typing import Callable

LOG = logging.getLogger("labreport")
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
PREFIX = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}


class _Emit(logging.Handler):
    """Hands each message, one line, to a function (click.echo to stderr, print)."""

    def __init__(self, emit: Callable[[str], None]):
        super().__init__()
        self.emit_line = emit

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.emit_line(PREFIX.get(record.levelno, "") + record.getMessage())
        except Exception:  # noqa: BLE001  (logging must never raise into the caller)
            self.handleError(record)


def configure(verbosity: int, emit: Callable[[str], None]) -> None:
    """Show labreport's messages of at least the level `verbosity` stands for (-1 quiet: warnings;
    0: info; 1 or more: debug) through `emit`, replacing what an earlier call set up."""
    for h in [h for h in LOG.handlers if isinstance(h, _Emit)]:
        LOG.removeHandler(h)
    LOG.addHandler(_Emit(emit))
    LOG.setLevel(LEVELS[max(-1, min(verbosity, 1))])
    LOG.propagate = False  # shown once, here, not again by a root handler
    LOG.disabled = False  # logging.config.dictConfig() (a library's, a notebook's) disables existing loggers


def configured() -> bool:
    """Whether something shows labreport's info messages: configure(), a handler of the program's
    own on "labreport", or logging set up to pass info on (logging.basicConfig(level=logging.INFO)).
    A notebook's root logger at its default level, WARNING, does not count."""
    return bool(LOG.handlers) or (LOG.getEffectiveLevel() <= logging.INFO and logging.getLogger().hasHandlers())
