"""experiments.toml -> Config: the settings sections (sections.py) and the experiment matrix
(matrix.py: one frozen `Run` per point of every experiment's grid and seed).

The file is read within limits that keep a hostile or mistaken file from taking the machine down;
every error is one line naming the file and the place in it. Nothing here imports torch: `plan`
and `status` must stay instant.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from labreport.config.matrix import Experiment, expand
from labreport.config.overrides import CLI, apply, parse
from labreport.config.sections import (
    SECTIONS,
    AnalysisSettings,
    Ctx,
    DataSettings,
    ExecutorSettings,
    GradflowSettings,
    ReportSettings,
    RunSettings,
    StoreSettings,
    read_sections,
    unknown,
)
from labreport.errors import ConfigError
from labreport.spec import Run

MAX_CONFIG_BYTES = 1_000_000  # experiments.toml is a few kB; bigger is a mistake (or hostile), refused unparsed
# tomllib takes quadratic time in the parts of a dotted key (a.a.a...: 40 kB take ~5 s): refuse deep ones unparsed
_KEY_PART = r"""(?:[A-Za-z0-9_-]++|"[^"\n]*+"|'[^'\n]*+')"""
DEEP_KEY_RE = re.compile(rf"(?<![A-Za-z0-9_-]){_KEY_PART}(?:[ \t]*+\.[ \t]*+{_KEY_PART}){{64}}")
TOP_LEVEL = {*(cls.NAME for cls in SECTIONS), "defaults", "experiment", "profile"}  # the settings sections, the matrix


@dataclass(frozen=True)
class Config:
    """experiments.toml, checked and expanded: its runs and every settings section."""

    path: Path
    profile: str | None
    experiments: tuple[Experiment, ...]
    runs: tuple[Run, ...] = field(repr=False)
    profiles: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE, as given (workers a --jobs parent starts get them too)
    # every [profile.NAME] as written (the paper's recipe is read from [profile.paper]: report/study.py)
    profile_tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False, compare=False)
    report: ReportSettings = ReportSettings()
    data: DataSettings = DataSettings()
    store: StoreSettings = StoreSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    run: RunSettings = RunSettings()
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    gradflow: GradflowSettings = GradflowSettings()

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def templates_dir(self) -> Path | None:
        """The user's templates and message catalogues ([report] templates, relative to the TOML), if set."""
        return self.base_dir / self.report.templates if self.report.templates else None

    def unique_runs(self) -> list[Run]:
        """Runs with distinct keys, first occurrence wins (what `run` must train)."""
        return self.select()

    def select(self, only: tuple[str, ...] = (), keys: tuple[str, ...] = ()) -> list[Run]:
        """Distinct runs of the matrix, restricted to the experiments named in `only` and to the run
        keys in `keys` (if given), first occurrence and matrix order kept."""
        names = [e.name for e in self.experiments]
        if unknown_names := [o for o in only if o not in names]:
            raise ConfigError(f"--only: no experiment named '{unknown_names[0]}' (experiments: {', '.join(names)})")
        first: dict[str, Run] = {}
        for r in self.runs:
            if (not only or r.experiment in only) and (not keys or r.key in keys):
                first.setdefault(r.key, r)
        return list(first.values())


RUNS_ENV = "LABREPORT_RUNS"


def store_root(runs: str | Path | None, config: Config | None) -> Path:
    """The run store: `runs` (--runs), else $LABREPORT_RUNS, else [store] root (relative to the
    TOML), else ./runs."""
    configured = config.base_dir / config.store.root if config is not None and config.store.root else None
    return Path(runs or os.environ.get(RUNS_ENV) or configured or "runs")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def load_config(path: str | Path, profile: str | None = None, overrides: Sequence[str] = (),
                overrides_from: str = CLI) -> Config:
    """Read, validate and expand experiments.toml under a profile and `overrides` ("epochs=10",
    "report.language=en": overrides.py; `overrides_from` names them in errors: "--set" on the command
    line, "overrides" in the API). Raises ConfigError with a one-line message."""
    path = Path(path)
    ctx = Ctx(path)
    doc = _read_toml(path)
    for section in doc:
        if section not in TOP_LEVEL:
            raise ctx.err("top level", unknown(section, TOP_LEVEL, "section"))
    doc, layer = apply(doc, parse(overrides, overrides_from))
    sections = read_sections(ctx, doc)
    experiments, runs, profiles = expand(ctx, doc, profile, layer, f"[{overrides_from}]")
    tables = MappingProxyType({p: MappingProxyType(dict(doc["profile"][p])) for p in profiles})
    return Config(path=path, profile=profile, experiments=tuple(experiments), runs=tuple(runs), profiles=profiles,
                  overrides=tuple(overrides), profile_tables=tables, **sections)


def _read_toml(path: Path) -> dict:
    """The parsed file, within the limits (size, nesting, dotted-key length) that keep a hostile
    or mistaken file from taking the machine down."""
    try:
        with path.open("rb") as f:  # at most one byte over the limit: /dev/zero or 50 MB are not read whole
            raw_bytes = f.read(MAX_CONFIG_BYTES + 1)
            size = max(os.fstat(f.fileno()).st_size, len(raw_bytes))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (`labreport init` writes the lab's; or pass --config FILE, or run "
                          "where experiments.toml is)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if len(raw_bytes) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: file is {size / 1e6:.1f} MB, over the {MAX_CONFIG_BYTES / 1e6:g} MB limit; "
                          "experiment matrices are small text files")
    try:
        text = raw_bytes.decode("utf-8-sig")  # a BOM (Windows editors) is not an error
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    if deep := DEEP_KEY_RE.search(text):
        raise ConfigError(f"{path}: TOML syntax error: a dotted key of more than 64 parts "
                          f"(line {text.count(chr(10), 0, deep.start()) + 1})")
    try:
        doc = tomllib.loads(text)
    except ValueError as e:  # TOMLDecodeError, or an integer over the 4300-digit limit
        raise ConfigError(f"{path}: TOML syntax error: {e}") from None
    except RecursionError:  # arrays or inline tables nested hundreds deep
        raise ConfigError(f"{path}: TOML syntax error: values nested too deeply") from None
    return doc
