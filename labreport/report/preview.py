"""Whether a report is a preview: trained less than the lab's own matrix, and by how much.

A report built under a profile (`--profile quick`, `smoke`) or with settings given on top of
experiments.toml (`--set epochs=2`, the API's `overrides`) is a preview when an experiment it
shares with the lab's matrix (experiments.toml as written: no profile, no overrides) trains for
fewer epochs, on fewer training, validation or test images, or over fewer seeds. Such a report
says so on its title page and in the running header of every page, with what was shortened
("2–3 epochs instead of 50"). A profile that only adds runs (bn-claim, paper) is not a preview.

`shortened` decides (pure: two lists of runs in, the shortened quantities out); `preview_texts`
reads the lab's matrix and words it in the report's language.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from labreport.config import Config, load_config
from labreport.errors import LabreportError
from labreport.report.i18n import Lang
from labreport.spec import CIFAR10_TEST, Run, train_images

# What a preview shortens, in the order the title page names it: each run's value of it.
AMOUNTS: dict[str, Callable[[Run], int]] = {
    "epochs": lambda r: r.spec.epochs,
    "train": lambda r: train_images(r.spec.val_size, r.spec.train_subset),
    "val": lambda r: r.spec.val_size,
    "test": lambda r: min(r.spec.test_subset, CIFAR10_TEST) if r.spec.test_subset else CIFAR10_TEST,
}


@dataclass(frozen=True)
class Shortened:
    """One quantity a preview trains less of: its values over the shortened experiments, here and in the lab."""

    what: str  # a key of AMOUNTS, or "seeds"
    ours: tuple[int, int]  # (least, most)
    lab: tuple[int, int]


def _per_experiment(runs: Sequence[Run]) -> dict[str, dict[str, int]]:
    """Per experiment, the most of each amount any of its runs has (a grid's longest point), and its seeds."""
    out: dict[str, dict[str, int]] = {}
    for r in runs:
        most = out.setdefault(r.experiment, {"seeds": 0})
        for what, amount in AMOUNTS.items():
            most[what] = max(most.get(what, 0), amount(r))
    for name, most in out.items():
        most["seeds"] = len({r.spec.seed for r in runs if r.experiment == name})
    return out


def shortened(runs: Sequence[Run], lab_runs: Sequence[Run]) -> tuple[Shortened, ...]:
    """What `runs` train less of than `lab_runs`, comparing each experiment with the lab's of the
    same name (experiments the lab's matrix does not run are compared with nothing). Empty: not a preview."""
    ours, lab = _per_experiment(runs), _per_experiment(lab_runs)
    found = []
    for what in (*AMOUNTS, "seeds"):
        less = [(o[what], lab[name][what]) for name, o in ours.items() if name in lab and o[what] < lab[name][what]]
        if less:
            found.append(Shortened(what, (min(a for a, _ in less), max(a for a, _ in less)),
                                   (min(b for _, b in less), max(b for _, b in less))))
    return tuple(found)


def lab_matrix(config: Config) -> Config | None:
    """experiments.toml as written: without the profile and the overrides (with the profile where
    the file has no matrix without one); None where it cannot be read again."""
    if config.profile is None and not config.overrides:
        return config
    for profile in dict.fromkeys((None, config.profile)):
        try:
            return load_config(config.path, profile)
        except (LabreportError, OSError):
            continue
    return None


def _range(values: tuple[int, int], L: Lang) -> str:
    lo, hi = values
    return L.int(lo) if lo == hi else f"{L.int(lo)}–\u2060{L.int(hi)}"  # a word joiner: "3–" never ends a line


def describe(s: Shortened, L: Lang) -> str:
    """"2–3 epochs instead of 50": a range takes the noun of its upper end, as in "2–3 эпохи"; the
    first number bound to its noun and the last to its preposition (no-break spaces)."""
    text = _describe(s, L)
    first, last = text.index(" "), text.rindex(" ")
    return text[:first] + "\u00a0" + text[first + 1:last] + "\u00a0" + text[last + 1:]


def _describe(s: Shortened, L: Lang) -> str:
    ours, lab, n = _range(s.ours, L), _range(s.lab, L), s.ours[1]
    if s.what == "epochs":
        return L.n_("%(ours)s epoch instead of %(lab)s", "%(ours)s epochs instead of %(lab)s", n, ours=ours, lab=lab)
    if s.what == "train":
        return L.n_("%(ours)s training image instead of %(lab)s", "%(ours)s training images instead of %(lab)s", n,
                    ours=ours, lab=lab)
    if s.what == "val":
        return L.n_("%(ours)s validation image instead of %(lab)s", "%(ours)s validation images instead of %(lab)s",
                    n, ours=ours, lab=lab)
    if s.what == "test":
        return L.n_("%(ours)s test image instead of %(lab)s", "%(ours)s test images instead of %(lab)s", n,
                    ours=ours, lab=lab)
    return L.n_("%(ours)s seed instead of %(lab)s", "%(ours)s seeds instead of %(lab)s", n, ours=ours, lab=lab)


def preview_texts(config: Config, L: Lang) -> dict[str, str] | None:
    """{"title": the title page's line, "header": the running header's} of a preview; None for the lab's report."""
    lab = lab_matrix(config)
    found = shortened(config.runs, lab.runs) if lab is not None else ()
    if not found:
        return None
    what = L.join_and([describe(s, L) for s in found])
    if config.profile is None:
        return {"title": L._("Preliminary results (%(what)s)", what=what), "header": L._("Preliminary results")}
    return {"title": L._("Preliminary results (profile %(profile)s: %(what)s)", profile=config.profile, what=what),
            "header": L._("Preliminary results (profile %(profile)s)", profile=config.profile)}
