"""experiments.toml -> Config: the vocabulary of a lab, read and checked before anything trains.

    setting.py    one definition per setting (its default, its check, its help) and the value checks
    sections.py   the settings sections: [report], [data], [store], [analysis], [run], [executor], [gradflow]
    overrides.py  --set KEY=VALUE (Lab(overrides=...)): a layer above the file and its profile
    matrix.py     [defaults], every [[experiment]] and the profiles, expanded into one Run per point and seed
    load.py       the file read within limits; Config, load_config, store_root

Nothing here imports torch: `plan` and `status` stay instant. `from labreport.config import Config,
load_config` reads load.py when first asked (spec.py uses setting.py, and load.py uses spec.py).
"""

from __future__ import annotations

__all__ = ["Config", "RUNS_ENV", "TOP_LEVEL", "load_config", "store_root"]  # noqa: F822 (read by __getattr__)


def __getattr__(name: str):
    if name in __all__:
        from labreport.config import load

        return getattr(load, name)
    raise AttributeError(f"module 'labreport.config' has no attribute {name!r}")
