"""The experiment matrix: [defaults], every [[experiment]] and the profiles, expanded into one
`Run` per point of every experiment's grid and seed.

Resolution order for a training setting, later layers win:

    TrainSpec defaults < [defaults] < [[experiment]] < [profile.NAME] < [profile.NAME.experiment.EXP]

A profile is an override layer (``--profile quick`` must shorten every run, even one whose
experiment sets its own epochs). A list value expands as a grid (the Cartesian product over all
list-valued keys), except for keys whose value is itself a list (``milestones``), where a list of
lists is the grid. ``seeds = N`` means seeds 0..N-1; ``seeds = [3, 7]`` names them.

The run key hashes the resolved training settings and TRAIN_VERSION only: experiment names, tasks,
report text and templates never change it, so renaming an experiment or editing the title never
retrains, and two experiments asking for the same training share one run.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from labreport import ownmodels
from labreport.config.sections import Ctx, section_table, unknown
from labreport.config.setting import check_value
from labreport.errors import ModelError
from labreport.models import MODELS, OPTIONS, init_problem, model_info
from labreport.spec import (
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    GRID_KEYS_WITH_LIST_VALUES,
    SETTINGS,
    ModelArgs,
    Run,
    TrainSpec,
    train_images,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # safe as a file name, no '..' or '/'
MAX_RUNS = 100_000  # runs one file may expand to (disabled experiments included): beyond, surely a typo
EXPERIMENT_KEYS = {"name", "task", "seeds", "description", "enabled", "display_name", "family", "depth"}
PROFILE_KEYS = {"experiment", "seeds", "experiments"}  # besides the training settings
TYPE_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "a string", list: "a list",
              dict: "a table"}


@dataclass(frozen=True)
class Experiment:
    name: str
    task: str | None
    settings: dict[str, Any]  # as written (before profiles), lists are grids
    seeds: tuple[int, ...]
    description: str = ""
    declared: ownmodels.Declared = ownmodels.Declared()  # its model of one's own: name, family (report only)


def expand(ctx: Ctx, doc: dict, profile: str | None, overrides: dict | None = None,
           overrides_where: str = "[--set]") -> tuple[list[Experiment], list[Run], tuple[str, ...]]:
    """The matrix of a parsed experiments.toml under a profile and --set overrides (a table of
    training settings above every other layer; `overrides_where` names it in errors): (experiments,
    runs, every profile's name)."""
    defaults, default_seeds = _defaults(ctx, doc)
    profiles = _check_profiles(ctx, doc)
    layers = (_profile_layer(ctx, profiles, profile),
              _table_layer(ctx, overrides_where, overrides) if overrides else None)
    above = tuple(layer for layer in layers if layer is not None)
    tables = _experiment_tables(ctx, doc, above)
    selected = _profile_experiments(ctx, profiles, profile, [t.get("name") for t in tables])
    experiments, runs = _expand_experiments(ctx, tables, _Layers(defaults, default_seeds, above), selected)
    return experiments, runs, tuple(profiles)


def _check_value(ctx: Ctx, where: str, key: str, value: Any) -> Any:
    """Type-check and range-check one training setting; returns the canonical value (int lr -> float)."""
    s = SETTINGS[key]
    value, problem = check_value(s, value, TYPE_WORDS[s.types[0]])
    if problem:
        raise ctx.err(where, f"'{key}' {problem}")
    if key == "model":
        try:
            ownmodels.split(value) if ownmodels.is_own(value) else model_info(value)
        except ModelError as e:
            raise ctx.err(where, str(e)) from None
    if key == "model_args":
        return ModelArgs.of(value)
    return tuple(value) if key in GRID_KEYS_WITH_LIST_VALUES else value


def _settings(ctx: Ctx, where: str, table: dict, extra_keys=()) -> dict[str, list]:
    """Validate a table of training settings; every value becomes a list of grid values."""
    out: dict[str, list] = {}
    for key, raw in table.items():
        if key in extra_keys:
            continue
        if key not in SETTINGS:
            raise ctx.err(where, unknown(key, set(SETTINGS) | set(extra_keys)))
        is_grid = isinstance(raw, list) and (
            key not in GRID_KEYS_WITH_LIST_VALUES or any(isinstance(x, list) for x in raw))
        values = raw if is_grid else [raw]
        if is_grid and not values:
            raise ctx.err(where, f"'{key}' is an empty grid: give at least one value")
        checked = [_check_value(ctx, where, key, v) for v in values]
        if len(set(map(repr, checked))) != len(checked):
            raise ctx.err(where, f"'{key}' lists the same value twice: {raw!r}")
        out[key] = checked
    return out


def _seeds(ctx: Ctx, where: str, raw: Any) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 1 <= raw <= 10_000:
            raise ctx.err(where, f"'seeds' must be between 1 and 10000, got {raw}")
        return tuple(range(raw))
    if isinstance(raw, list) and raw and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw):
        if len(set(raw)) != len(raw):
            raise ctx.err(where, f"'seeds' lists the same seed twice: {raw}")
        return tuple(raw)
    raise ctx.err(where, f"'seeds' must be a count (seeds = 3) or a non-empty list of seeds >= 0, got {raw!r}")


@dataclass(frozen=True)
class Layer:
    """Settings layered above every experiment's own: a profile."""

    where: str  # "[profile.quick]": where its errors point
    settings: dict[str, list] = field(default_factory=dict)  # its training settings, for every experiment
    seeds: tuple[int, ...] | None = None
    per_experiment: dict = field(default_factory=dict)  # experiment name -> its table of overrides


@dataclass(frozen=True)
class _Layers:
    """What an experiment's own settings are layered between: [defaults] below, the layers above."""

    defaults: dict[str, list]
    default_seeds: tuple[int, ...]
    above: tuple[Layer, ...] = ()


def _defaults(ctx: Ctx, doc: dict) -> tuple[dict[str, list], tuple[int, ...]]:
    """[defaults]: training settings (no grids) and seeds every experiment starts from."""
    table = section_table(ctx, doc, "defaults")
    defaults = _settings(ctx, "[defaults]", table, extra_keys={"seeds"})
    for k, v in defaults.items():
        if len(v) > 1:
            raise ctx.err("[defaults]", f"'{k}' is a list: grids belong in an [[experiment]]")
    return defaults, _seeds(ctx, "[defaults]", table["seeds"]) if "seeds" in table else (0,)


def _check_profiles(ctx: Ctx, doc: dict) -> dict[str, dict]:
    """Every [profile.NAME], checked (not only the one asked for)."""
    profiles = section_table(ctx, doc, "profile")
    for pname, ptable in profiles.items():
        if not isinstance(ptable, dict):
            raise ctx.err(f"[profile.{pname}]", "must be a table")
        _settings(ctx, f"[profile.{pname}]", ptable, extra_keys=PROFILE_KEYS)
    return profiles


def _profile_layer(ctx: Ctx, profiles: dict, profile: str | None) -> Layer | None:
    if profile is None:
        return None
    if profile not in profiles:
        known = ", ".join(profiles) or "none defined"
        raise ctx.err("--profile", f"unknown profile '{profile}' (profiles: {known})")
    return _table_layer(ctx, f"[profile.{profile}]", profiles[profile])


def _table_layer(ctx: Ctx, where: str, table: dict) -> Layer:
    """A layer of overrides from a table: training settings, seeds and per-experiment tables."""
    per_experiment = table.get("experiment", {})
    if not isinstance(per_experiment, dict):
        raise ctx.err(where, "'experiment' must be a table of per-experiment overrides")
    seeds = _seeds(ctx, where, table["seeds"]) if "seeds" in table else None
    return Layer(where, _settings(ctx, where, table, extra_keys=PROFILE_KEYS), seeds, per_experiment)


def _experiment_tables(ctx: Ctx, doc: dict, above: tuple[Layer, ...]) -> list[dict]:
    """The [[experiment]] array, and that the layers above override only experiments it has."""
    tables = doc.get("experiment", [])
    if not isinstance(tables, list) or not tables:
        raise ctx.err("top level", "no [[experiment]] tables: add at least one")
    if not all(isinstance(t, dict) for t in tables):
        raise ctx.err("top level", "'experiment' must be an array of tables: write [[experiment]]")
    names = {t.get("name") for t in tables if isinstance(t.get("name"), str)}
    for layer in above:
        if extra := set(layer.per_experiment) - names:
            raise ctx.err(layer.where, f"overrides unknown experiment '{sorted(extra)[0]}'")
    return tables


def _expand_experiments(ctx: Ctx, tables: list[dict], layers: _Layers,
                        selected: set[str] | None) -> tuple[list[Experiment], list[Run]]:
    """Every experiment checked, those of the matrix (`selected`, else the enabled ones) expanded."""
    experiments: list[Experiment] = []
    runs: list[Run] = []
    names: set[str] = set()
    expanded = 0
    for i, table in enumerate(tables, 1):
        exp, exp_runs, enabled = _experiment(ctx, i, table, names, layers)
        expanded += len(exp_runs)
        if expanded > MAX_RUNS:
            raise ctx.err(f"experiment '{exp.name}'", f"the experiments up to this one expand to {expanded:,} runs, "
                                                      f"over the limit of {MAX_RUNS:,}: is a grid or 'seeds' a typo?")
        if (exp.name in selected) if selected is not None else enabled:  # disabled ones are still checked
            experiments.append(exp)
            runs.extend(exp_runs)
    if not runs:
        raise ctx.err("top level", "every [[experiment]] has enabled = false: enable one, or pick a profile "
                                   "that lists some in 'experiments'")
    return experiments, runs


def _header(ctx: Ctx, i: int, table: dict, names: set[str]) -> tuple[str, str | None, str, bool]:
    """An [[experiment]]'s own keys: (name, task, description, enabled)."""
    name = table.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ctx.err(f"experiment #{i}", f"'name' must be 1-64 letters, digits, '.', '_' or '-' "
                                          f"(starting with a letter or digit), got {name!r}")
    where = f"experiment '{name}'"
    if name in names:
        raise ctx.err(where, "duplicate experiment name")
    names.add(name)
    if "model" not in table:
        raise ctx.err(where, f"'model' is missing (one of {', '.join(MODELS)})")
    task = table.get("task")
    if task is not None and (not isinstance(task, (int, str)) or isinstance(task, bool)):
        raise ctx.err(where, f"'task' must be a number or text, got {task!r}")
    desc = table.get("description", "")
    if not isinstance(desc, str):
        raise ctx.err(where, "'description' must be text")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ctx.err(where, f"'enabled' must be true or false, got {enabled!r}")
    return name, None if task is None else str(task), desc, enabled


def _experiment(ctx: Ctx, i: int, table: dict, names: set[str], lay: _Layers) -> tuple[Experiment, list[Run], bool]:
    """One [[experiment]] table, checked and expanded: (experiment, its runs, enabled)."""
    name, task, desc, enabled = _header(ctx, i, table, names)
    where = f"experiment '{name}'"
    own = _settings(ctx, where, table, extra_keys=EXPERIMENT_KEYS)
    seeds = _seeds(ctx, where, table["seeds"]) if "seeds" in table else lay.default_seeds
    layers = [lay.defaults, own]
    for layer in lay.above:
        layers.append(layer.settings)
        if name in layer.per_experiment:
            per, pwhere = layer.per_experiment[name], f"{layer.where[:-1]}.experiment.{name}]"
            if not isinstance(per, dict):
                raise ctx.err(pwhere, "must be a table")
            layers.append(_settings(ctx, pwhere, per, extra_keys={"seeds"}))
            seeds = _seeds(ctx, pwhere, per["seeds"]) if "seeds" in per else layer.seeds or seeds
        elif layer.seeds is not None:
            seeds = layer.seeds
    merged: dict[str, list] = {}
    for settings in layers:
        merged.update(settings)
    # grid coordinates in the order the experiment writes them
    merged = {k: merged[k] for k in [*own, *(k for k in merged if k not in own)]}
    runs = _expand(ctx, where, name, task, merged, seeds)
    return Experiment(name, task, dict(table), seeds, desc, _declared(ctx, where, table, runs)), runs, enabled


def _declared(ctx: Ctx, where: str, table: dict, runs: list[Run]) -> ownmodels.Declared:
    """display_name, family and depth: what the report calls the experiment's own model and which
    catalogue model it implements (never in a run key); only for a model of one's own."""
    own = [r for r in runs if ownmodels.is_own(r.spec.model)]
    given = {k: table[k] for k in ("display_name", "family", "depth") if k in table}
    if given and not own:
        raise ctx.err(where, f"'{next(iter(given))}' is for a model of your own (model = 'nets.py:Net'); "
                             "a catalogue model has its name")
    for key, ok, want in (("display_name", lambda v: isinstance(v, str) and v.strip(), "non-empty text"),
                          ("family", lambda v: v in ownmodels.FAMILIES, f"one of {', '.join(ownmodels.FAMILIES)}"),
                          ("depth", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
                           "a positive whole number")):
        if key in given and not ok(given[key]):
            raise ctx.err(where, f"'{key}' must be {want}, got {given[key]!r}")
    declared = ownmodels.Declared(**given)
    for r in own:
        if problem := ownmodels.declaration_problem(declared, r.spec.model_args.as_dict()):
            raise ctx.err(where, problem)
    return declared


def _profile_experiments(ctx: Ctx, profiles: dict, profile: str | None, names: list) -> set[str] | None:
    """Check every profile's `experiments` list; return the chosen profile's (None: it has none, and
    the matrix is every experiment without enabled = false)."""
    chosen = None
    for pname, ptable in profiles.items():
        if "experiments" not in ptable:
            continue
        listed, where = ptable["experiments"], f"[profile.{pname}]"
        if not isinstance(listed, list) or not listed or not all(isinstance(n, str) for n in listed):
            raise ctx.err(where, f"'experiments' must be a non-empty list of experiment names, got {listed!r}")
        if len(set(listed)) != len(listed):
            raise ctx.err(where, f"'experiments' lists the same experiment twice: {listed!r}")
        for n in listed:
            if n not in names:
                known = [x for x in names if isinstance(x, str)]
                raise ctx.err(where, f"'experiments': {unknown(n, known, 'experiment')}")
        if pname == profile:
            chosen = set(listed)
    return chosen


def _epochs_for(ctx: Ctx, where: str, point: dict) -> int:
    """ceil(max_iters / steps per epoch) on CIFAR-10's 50,000 training images (the trainer, which
    knows the real data, stops at max_iters whatever this says)."""
    n_train = train_images(point.get("val_size", SETTINGS["val_size"].default), point.get("train_subset", 0))
    # the last partial batch is dropped
    per_epoch = n_train // point.get("batch_size", SETTINGS["batch_size"].default)
    if per_epoch == 0:
        raise ctx.err(where, f"batch_size is larger than the {n_train} training images")
    return math.ceil(point["max_iters"] / per_epoch)


def _expand(ctx: Ctx, where: str, name: str, task: str | None, merged: dict[str, list],
            seeds: tuple[int, ...]) -> list[Run]:
    """The runs of an experiment: one per point of its grid (the product of its list-valued keys) and seed."""
    grid_keys = [k for k, v in merged.items() if len(v) > 1]
    n_runs = math.prod(len(merged[k]) for k in grid_keys) * len(seeds)
    if n_runs > MAX_RUNS:  # checked before expanding: 10 keys of 10 values must not take hours to refuse
        raise ctx.err(where, f"the grid expands to {n_runs:,} runs, over the limit of {MAX_RUNS:,}: "
                             "is a grid or 'seeds' a typo?")
    fixed = {k: v[0] for k, v in merged.items() if len(v) == 1}
    out = []
    for combo in itertools.product(*(merged[k] for k in grid_keys)):
        point = _checked_point(ctx, where, dict(fixed, **dict(zip(grid_keys, combo))))
        for seed in seeds:
            varying = tuple((k, point[k]) for k in grid_keys) + ((("seed", seed),) if len(seeds) > 1 else ())
            out.append(Run(name, task, TrainSpec(**{k: v for k, v in point.items() if k != "seed"}, seed=seed),
                           varying))
    return out


def _checked_point(ctx: Ctx, where: str, point: dict) -> dict:
    """One point of a grid, checked as a whole (what its model takes, what the schedule needs);
    with max_iters, its epochs are as many as it takes, the last one partial."""
    def value(k):
        return point.get(k, SETTINGS[k].default)

    if ownmodels.is_own(point["model"]):
        point["model_source"] = _own_model(ctx, where, point)
        return _checked_schedule(ctx, where, point)
    if point.get("model_args"):
        raise ctx.err(where, f"model_args is for a model of your own (model = 'nets.py:Net'), not '{point['model']}'")
    info = model_info(point["model"])
    for opt in OPTIONS:
        if opt not in info.supports and opt in point and point[opt] != SETTINGS[opt].default:
            raise ctx.err(where, f"model '{info.name}' does not support {opt}={point[opt]!r}")
    if problem := init_problem(info, value("init"), value("norm")):
        raise ctx.err(where, problem)
    return _checked_schedule(ctx, where, point)


def _own_model(ctx: Ctx, where: str, point: dict) -> str:
    """A model of one's own, read from its source (not run): its file's hash, for the run key."""
    options = {o: point[o] for o in OPTIONS if o in point and point[o] != SETTINGS[o].default}
    try:
        src = ownmodels.read(point["model"], ctx.path.parent)
        ownmodels.check_args(src, dict(point.get("model_args", ())), options)
    except ModelError as e:
        raise ctx.err(where, str(e)) from None
    return src.digest


def _checked_sizes(ctx: Ctx, where: str, point: dict) -> None:
    """The subsets within the data set's files (CIFAR-10's and CIFAR-100's are the same size): a
    subset as large as its split is the whole split, which 0 already says; a second way to write it
    would train the same run twice under two keys."""
    val_size = point.get("val_size", SETTINGS["val_size"].default)
    for key, n, of in (("train_subset", CIFAR10_TRAIN - val_size, f"training images left after val_size = {val_size}"),
                       ("test_subset", CIFAR10_TEST, "test images")):
        if point.get(key, 0) >= n:
            raise ctx.err(where, f"{key} = {point[key]} is not below the {n:,} {of}: 0 means all of them")


def _checked_schedule(ctx: Ctx, where: str, point: dict) -> dict:
    _checked_sizes(ctx, where, point)
    if point.get("schedule") == "step" and not point.get("milestones"):
        raise ctx.err(where, "schedule = 'step' needs 'milestones'")
    if point.get("max_iters"):
        point["epochs"] = _epochs_for(ctx, where, point)
    return point
