"""Appendix A: every run of the matrix, with its key and raw grid coordinates, as the store has it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from labreport.science.runs import RunView

KEY_SHOWN = 8  # hex digits of a run key in the table: enough to find its folder runs/<key>/


@dataclass(frozen=True)
class RunRow:
    """One run; a number its result lacks (or a run without a result) is None, shown as "—"."""

    label: str  # the raw label: experiment[grid coordinates]
    key: str  # its first KEY_SHOWN digits
    params: int | None
    epochs_run: int | None  # epochs the result says were run, else the epochs in its history
    epochs: int  # epochs asked for
    best_epoch: int | None  # the epoch chosen on validation
    test_at_best: float | None
    final_test: float | None
    gap: float | None  # final train accuracy - final test accuracy
    epoch_time_s: float | None
    peak_mem_mib: float | None
    status: str
    diverged_at_epoch: int | None  # only for a diverged run


def run_row(v: RunView) -> RunRow:
    res = v.result or {}
    train, test = res.get("final_train_acc"), res.get("final_test_acc")
    return RunRow(v.label, v.key[:KEY_SHOWN], res.get("params"), res.get("epochs_run") if res else len(v.history),
                  v.spec["epochs"], res.get("best_epoch"), res.get("test_acc_at_best"), test,
                  train - test if train is not None and test is not None else None, res.get("mean_epoch_time_s"),
                  res.get("peak_mem_alloc_mib"), v.status,
                  res.get("diverged_at_epoch") if v.status == "diverged" else None)


def appendix_of(views: Sequence[RunView]) -> tuple[RunRow, ...]:
    return tuple(run_row(v) for v in views)
