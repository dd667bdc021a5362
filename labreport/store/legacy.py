"""What older versions of labreport left in a run store, read as today's code expects it. Each
format a store may still hold is upgraded here and nowhere else, with a test of its own
(tests/test_legacy_store.py); run keys never change (spec.OMITTED_AT_DEFAULT keeps them).

    checkpoint   one without the chosen epoch's test predictions: the best validation accuracy
                 is taken from its history, the predictions stay unknown (its result then has
                 none, and the report compares it by accuracy only)
    history      an epoch record without "precision" (read as None: trained before records said) or
                 "skipped_steps" (0): kept as written, read with .get() where read
    metrics.csv  missing beside a history.json: written from it (store.ensure_metrics_csv)
"""

from __future__ import annotations


def checkpoint(ckpt: dict) -> dict:
    """A checkpoint with every key today's trainer reads."""
    out = {"micro_batch": None, "oom_events": [], "scaler": {}, "best_val": None, "best_epoch": None,
           "best_test_pred": None, **ckpt}
    if out["best_epoch"] is None and out["history"]:  # the chosen epoch's predictions were not kept yet
        out["best_val"] = max((h["val_acc"] for h in out["history"] if h.get("val_acc") is not None), default=None)
    return out
