"""Run store + matrix -> RunView records: what the analysis and the report read.

This is the only I/O step of `build` before rendering: it reads result.json and history.json of
each run of the matrix (and nothing else: no data set, no torch), and reports per run every
problem it met, so the report can still be built from what is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labreport.config import Config
from labreport.spec import coords_text
from labreport.store import RunStore


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
        return self.status in ("done", "diverged")

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


def collect(config: Config, store: RunStore) -> list[RunView]:
    views = []
    for run in config.runs:
        st = store.state(run.key)
        problems: list[str] = []
        history = tuple(store.read_history(run.key)) if st.status != "missing" else ()
        if st.status in ("done", "diverged"):
            res = st.result
            if res.get("spec") != run.spec.to_dict():
                problems.append("result.json holds another spec than its key says: ignored")
                st_status, res = "failed", None
            else:
                st_status = st.status
                if not history:
                    problems.append(f"{store.run_dir(run.key) / 'history.json'} is missing or unreadable: no curves")
        else:
            st_status, res = st.status, None
            if st.status == "failed":
                problems.append(f"failed: {st.error}")
        if (run_dir := store.run_dir(run.key)).is_dir() and st.status == "partial" and not history:
            problems.append(f"{run_dir}: no readable history yet")
        views.append(RunView(run.experiment, run.task, run.label, run.key, run.spec.to_dict(),
                             dict(run.varying), st_status, res, history, tuple(problems)))
    return views
