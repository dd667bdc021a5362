"""The tables the Python API returns: records, as pandas DataFrames where pandas is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from labreport.errors import LabreportError

RESULT_FIELDS = ("status", "epochs_run", "best_epoch", "best_val_acc", "test_acc_at_best", "final_test_acc",
                 "final_train_acc", "total_time_s", "mean_epoch_time_s", "params")


def override_list(overrides: Mapping[str, Any] | Iterable[str] | None) -> tuple[str, ...]:
    """{"epochs": 10} or ["epochs=10"] as --set items (a dict's values written as TOML values)."""
    if overrides is None:
        return ()
    if isinstance(overrides, Mapping):
        return tuple(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items())
    return tuple(overrides)


def table(records: list[dict], as_frame: bool | None = None, columns: Sequence[str] = ()):
    """Records as a pandas DataFrame (as_frame None: when pandas is installed), or as they are. An
    empty table keeps `columns`, so that `df.label` works on a store with nothing in it yet."""
    if as_frame is False:
        return records
    try:
        import pandas as pd
    except ImportError:
        if as_frame:
            raise LabreportError("as_frame=True needs pandas: pip install pandas") from None
        return records
    return pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=list(columns))


def registry_rows() -> list[dict]:
    """The catalogue's models: name, family, parameters (exact, without building one: no torch) and
    the paper's figures."""
    from labreport.models import MODELS

    return [{"name": name, "family": info.family, "params": info.params, "paper_params_m": info.paper_params_m,
             "paper_error": info.paper_error, "supports": sorted(info.supports), "description": info.description}
            for name, info in MODELS.items()]


def own_params(spec, lab_dir: Path) -> int:
    from labreport.engine.networks import build_model, count_parameters

    return count_parameters(build_model(spec.model, norm=spec.norm, dropout=spec.dropout, init=spec.init,
                                        model_args=spec.model_args.as_dict(), lab_dir=lab_dir))


