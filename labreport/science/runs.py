"""The conclusions' input: one run of the matrix as its result and history have it (RunView).

Pure data: report/study.py makes the views from the store (the only I/O before the report is
rendered), science/ concludes from them, the report draws and writes them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

from labreport.spec import coords_text
from labreport.store.records import FINAL_STATES, RunStatus

RUN_STATES: tuple[str, ...] = typing.get_args(RunStatus)  # done, diverged, partial, failed, missing


@dataclass(frozen=True)
class RunView:
    """One run of the matrix as the report sees it."""

    experiment: str
    task: str | None
    label: str
    key: str
    spec: dict[str, Any]
    varying: dict[str, Any]  # grid coordinates (with "seed" when the experiment has several)
    status: str  # "done" | "diverged" | "partial" | "failed" | "missing"
    result: dict[str, Any] | None = None
    history: tuple[dict, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @property
    def finished(self) -> bool:
        """Done or diverged: a final outcome that counts in the conclusions."""
        return self.status in FINAL_STATES

    @property
    def config_label(self) -> str:
        """The label without the seed: runs that differ only by seed share it."""
        coords = coords_text((k, v) for k, v in self.varying.items() if k != "seed")
        return f"{self.experiment}[{coords}]" if coords else self.experiment

    def metric(self, name: str) -> float | None:
        if self.result is None:
            return None
        v = self.result.get(name)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
