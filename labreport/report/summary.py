"""summary.json: every number the conclusions use, machine-readable, next to the report.

Raw labels and grid coordinates stay here, with the human name beside them; no per-epoch histories.
"""

from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from typing import Any

from labreport.version import __version__
from labreport.report import labels as lb
from labreport.science.conclusions import Study


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj):
        return {k: _jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def summary(study: Study, gradflow: dict | None = None, names: lb.Labels | None = None) -> dict:
    """Every number the conclusions use, machine-readable (no per-epoch histories): raw labels and
    grid coordinates, with the human label beside them."""

    def human(label):
        return names.of(label) if names else label

    def group(g):
        return {"label": g.label, "name": human(g.label), "experiment": g.experiment, "task": g.task,
                "model": g.model, "coords": dict(g.coords), "runs": g.n_total, "finished": len(g.finished),
                "mean_test_acc": g.mean, "std_test_acc": g.std, "values": list(g.values),
                "keys": [r.key for r in g.runs]}

    def best(r):
        return None if r is None else {
            "labels": [r.best.label], "name": human(r.best.label), "mean_test_acc": r.best.mean,
            "considered": r.considered, "ties": [g.label for g in r.ties], "untested": [g.label for g in r.untested],
            "alpha": r.alpha,
            "comparisons": [{"label": c.other.label, "diff": c.diff, "test": c.test, "p": c.p, "p_holm": c.p_adj,
                             "detectable": c.detectable, "paired": c.paired} for c in r.comparisons]}

    def effect(e):
        return {"factor": e.factor, "levels": e.levels, "best_level": e.best_level, "worst_level": e.worst_level,
                "spread": e.spread, "detected": e.detected, "detectable": e.detectable,
                "tests": [{"level": t.level, "diff": t.diff, "test": t.test, "p": t.p, "p_holm": t.p_adj,
                           "paired": t.paired} for t in e.tests]}

    def claim(c):
        return {"model": c.model, "control": c.control, "control_trains": c.control_trains, "arms": c.arms,
                "narrow_precision": c.narrow_precision}

    return _jsonable({
        "labreport": __version__, "counts": study.counts,
        "metric": "test accuracy at the epoch of best validation accuracy", "alpha": study.alpha,
        "best": best(study.ranking),
        "tasks": [{"task": t.task, "best": best(t.ranking), "factors": [effect(e) for e in t.factors],
                   "heatmap": t.heatmap, "groups": [group(g) for g in t.groups]} for t in study.tasks],
        "bn": [claim(c) for c in study.bn], "claim": None if study.claim is None else claim(study.claim),
        "paper": study.paper, "own": study.own, "resources": study.resources,
        "threshold": study.threshold, "thresholds": dict(study.thresholds), "claim_rate": study.claim_rate,
        "confidence": study.confidence,
        "gradflow": None if not gradflow else [{k: v for k, v in r.items() if k != "time_s"} for r in gradflow["rows"]],
    })
