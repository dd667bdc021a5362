"""TensorBoard event files of every run as it trains ([run] tensorboard = true, `run --tensorboard
DIR`): `tensorboard --logdir runs` then shows live curves.

    <dir>/<experiment>/<grid point>/events.out.tfevents...     dir: [run] tensorboard_dir, else <store>/tensorboard

A reporter that passes every call on and writes each finished epoch's record as scalars
(torch.utils.tensorboard, which needs the `tensorboard` package: `pip install 'labreport[tensorboard]'`).
"""

from __future__ import annotations

import re
from pathlib import Path

from labreport.engine.observe import Observer
from labreport.errors import LabreportError
from labreport.spec import Run, coords_text

SCALARS = {  # epoch record field -> TensorBoard tag
    "train_acc": "accuracy/train", "val_acc": "accuracy/validation", "test_acc": "accuracy/test",
    "train_loss": "loss/train", "val_loss": "loss/validation", "test_loss": "loss/test",
    "lr": "optimizer/lr", "grad_norm_mean": "optimizer/grad_norm_mean", "images_per_s": "speed/images_per_s",
    "mem_alloc_mib": "memory/alloc_mib",
}
INSTALL = ("[run] tensorboard needs the tensorboard package: pip install 'labreport[tensorboard]' "
           "(or pip install tensorboard)")


def check_installed() -> None:
    """A one-line error before anything trains, when the package is missing."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise LabreportError(INSTALL) from None


def run_dir(root: Path, run: Run) -> Path:
    """<root>/<experiment>/<grid point>: "dropout=0.15,weight_decay=0.0001", or "run" without a grid."""
    point = coords_text(run.varying, ",") or "run"
    return root / run.experiment / re.sub(r"[^\w.=,+-]", "_", point)


class TensorBoard(Observer):
    """Writes each epoch's record of one run to its event file."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    def epoch_done(self, record: dict) -> None:
        for field, tag in SCALARS.items():
            if isinstance(value := record.get(field), (int, float)):
                self.writer.add_scalar(tag, value, record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
