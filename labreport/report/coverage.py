"""What of the lab's matrix a report does not hold: experiments and configurations a profile (or
settings given on top of experiments.toml) left out, per task, so that section 3 never shows
CIFARNet alone under "ResNet-18 against the baseline CNN" without saying ResNet-18 was not run.

The lab's matrix is experiments.toml as written (no profile, no overrides: preview.lab_matrix). A
configuration is a point of an experiment's grid there: its values of the settings the lab grids
over (seeds aside). `not_run` decides (pure: two lists of runs in); `texts` words it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from labreport.config import Config
from labreport.ownmodels import model_id
from labreport.report import labels as lb
from labreport.report.document import task_title
from labreport.report.i18n import Lang
from labreport.report.preview import lab_matrix
from labreport.spec import Run


@dataclass(frozen=True)
class NotRun:
    """An experiment of the lab's matrix that is not run, or not at every configuration."""

    task: str  # "" for an experiment without a task
    experiment: str
    models: tuple[str, ...]  # model_ids
    missing: int  # configurations of the lab's matrix not run
    total: int  # configurations of the experiment in the lab's matrix
    levels: tuple[tuple[str, tuple], ...] = ()  # (setting, its values of the lab's grid that no run has)


def _configurations(runs: Sequence[Run], keys: Sequence[str]) -> set[tuple]:
    return {tuple(repr(r.spec.to_dict().get(k)) for k in keys) for r in runs}


def _grid_keys(runs: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(k for r in runs for k, _ in r.varying if k != "seed"))


def not_run(runs: Sequence[Run], lab_runs: Sequence[Run]) -> list[NotRun]:
    """The lab's experiments that `runs` leave out, or run at fewer of their configurations, in the lab's order."""
    ours: dict[str, list[Run]] = {}
    for r in runs:
        ours.setdefault(r.experiment, []).append(r)
    lab: dict[str, list[Run]] = {}
    for r in lab_runs:
        lab.setdefault(r.experiment, []).append(r)
    found = []
    for name, lruns in lab.items():
        keys = _grid_keys(lruns)
        wanted, have = _configurations(lruns, keys), _configurations(ours.get(name, []), keys)
        missing = wanted - have
        if not missing:
            continue
        levels = tuple((k, tuple(v for v in dict.fromkeys(r.spec.to_dict().get(k) for r in lruns)
                                 if not any(r.spec.to_dict().get(k) == v for r in ours.get(name, []))))
                       for k in keys) if name in ours else ()
        found.append(NotRun(lruns[0].task or "", name, tuple(dict.fromkeys(model_id(r.spec.to_dict()) for r in lruns)),
                            len(missing), len(wanted), tuple((k, vs) for k, vs in levels if vs)))
    return found


def _values(k: str, values: tuple, L: Lang) -> str:
    """"dropout 0,15 и 0,3", "L2 1·10⁻⁵ и 1·10⁻³": the setting named once before numbers."""
    first = lb.factor_value(k, values[0], L)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numbers and first.endswith(L.sci(values[0])):
        return L.join_and([first, *(L.sci(v) for v in values[1:])])
    return L.join_and([lb.factor_value(k, v, L) for v in values])


def _partly(n: NotRun, where: str, L: Lang, own) -> str:
    model = ", ".join(lb.model_name(m, L, own) for m in n.models)
    values = dict(model=model, name=n.experiment, where=where, ran=n.total - n.missing, total=n.total)
    if not n.levels:
        return L.n_("%(model)s (experiment %(name)s) is run %(where)s at %(ran)s of the %(total)s configuration of "
                    "the lab's matrix.", "%(model)s (experiment %(name)s) is run %(where)s at %(ran)s of the %(total)s "
                    "configurations of the lab's matrix.", n.total, **values)
    levels = "; ".join(_values(k, vs, L) for k, vs in n.levels)
    return L.n_("%(model)s (experiment %(name)s) is run %(where)s at %(ran)s of the %(total)s configuration of the "
                "lab's matrix (without %(levels)s).", "%(model)s (experiment %(name)s) is run %(where)s at %(ran)s of "
                "the %(total)s configurations of the lab's matrix (without %(levels)s).", n.total, levels=levels,
                **values)


def _whole(ns: list[NotRun], where: str, L: Lang, own) -> str:
    items = "; ".join(L._("%(model)s (experiment %(name)s)", name=n.experiment,
                          model=", ".join(lb.model_name(m, L, own) for m in n.models)) for n in ns)
    return L.n_("The lab's matrix also has %(items)s, not run %(where)s.",
                "The lab's matrix also has %(items)s, not run %(where)s.", len(ns), items=items, where=where)


def _task_text(found: list[NotRun], where: str, L: Lang, own) -> str:
    """One task's sentences: the experiments not run at all, then those run at fewer configurations."""
    whole = [n for n in found if n.missing == n.total]
    said = [_whole(whole, where, L, own)] if whole else []
    return " ".join(said + [_partly(n, where, L, own) for n in found if n.missing < n.total])


def texts(config: Config, L: Lang, own=None) -> dict[str, str]:
    """Per task of the report ("" for experiments without one; "-": the tasks the report lacks
    altogether): the sentences that say what of the lab's matrix is not run."""
    lab = lab_matrix(config)
    if lab is None or lab is config:
        return {}
    found = not_run(config.runs, lab.runs)
    where = (L._("in profile %(profile)s", profile=config.profile) if config.profile
             else L._("with the settings given on top of experiments.toml"))
    present = {r.task or "" for r in config.runs}
    tasks = list(dict.fromkeys(n.task for n in found))
    out = {t: _task_text([n for n in found if n.task == t], where, L, own) for t in tasks if t in present}
    if absent := [t for t in tasks if t not in present]:
        titles = L.join_and([L._("“%(t)s”", t=task_title(t, L)) for t in absent])
        out["-"] = L.n_("The lab's matrix also has the task %(titles)s, not run %(where)s.",
                        "The lab's matrix also has the tasks %(titles)s, not run %(where)s.", len(absent),
                        titles=titles, where=where)
    return out
