"""--set KEY=VALUE: a setting changed for one command, on top of experiments.toml and its profile.

    --set epochs=10                               a training setting, for every experiment
    --set seeds=3                                 the seeds of every experiment
    --set experiment.resnet20-reg.dropout=[0,0.1] one experiment's (a list is a grid, as in the TOML)
    --set report.language=en                      a settings section's ([report], [run], [analysis], ...)

VALUE is read as a TOML value (10, 1e-3, true, [0, 0.1], "text"); what is not one is text
(`report.language=en`). Overrides are checked exactly as the TOML is, and come last: after the
profile, so `--profile quick --set epochs=5` trains 5 epochs. A training setting changed here is
part of the run key like any other.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from labreport.config.sections import SECTIONS, Ctx, read_section, unknown
from labreport.errors import ConfigError
from labreport.spec import SETTINGS

TOP = {s.NAME for s in SECTIONS}  # report, data, store, analysis, run, executor, gradflow


CLI = "--set"  # the command line's name for an override; the Python API's is "overrides"


@dataclass(frozen=True)
class Override:
    text: str  # as given: "epochs=10"
    path: tuple[str, ...]  # ("epochs",), ("experiment", "resnet20-reg", "dropout"), ("report", "language")
    value: Any
    shown: str = ""  # how errors name it, in the caller's words: "--set epochs=10", "overrides {'epochs': 10}"


def shown(text: str, source: str = CLI) -> str:
    """An override as its giver wrote it: "--set epochs=10" on the command line, "overrides {'epochs':
    10}" to Lab(overrides=...)."""
    if source == CLI:
        return f"--set {text}"
    key, _, raw = text.partition("=")
    return f"{source} {{{key.strip()!r}: {raw.strip()}}}"


def value_of(raw: str) -> Any:
    """A TOML value, or the text itself when it is not one: `en` needs no quotes."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse(items: Sequence[str], source: str = CLI) -> list[Override]:
    out = []
    for text in items:
        key, sep, raw = text.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            example = "--set epochs=10 or --set report.language=en" if source == CLI else \
                f'{source}={{"epochs": 10, "report.language": "en"}}'
            raise ConfigError(f"{shown(text, source)}: expected KEY=VALUE, e.g. {example}")
        if parts[0] == "experiment" and len(parts) >= 3:  # an experiment's name may itself hold dots
            parts = ["experiment", ".".join(parts[1:-1]), parts[-1]]
        out.append(Override(text, tuple(parts), value_of(raw.strip()), shown(text, source)))
    return out


def apply(doc: dict, overrides: Sequence[Override]) -> tuple[dict, dict]:
    """The TOML document with the sections' overrides merged in (each checked first, the error
    naming --set), and the table of the training overrides: {key: value, "seeds": ..., "experiment":
    {name: {key: value}}}, a layer above the profile."""
    doc, layer = dict(doc), {}
    for o in overrides:
        head = o.path[0]
        if len(o.path) == 1 and (head in SETTINGS or head == "seeds"):
            layer[head] = o.value
        elif head == "experiment" and len(o.path) == 3:
            layer.setdefault("experiment", {}).setdefault(o.path[1], {})[o.path[2]] = o.value
        elif head in TOP and len(o.path) == 2:
            cls = next(s for s in SECTIONS if s.NAME == head)
            read_section(Ctx(Path(o.shown)), {head: {o.path[1]: o.value}}, cls)  # checked alone first
            section = dict(doc.get(head, {})) if isinstance(doc.get(head), dict) else {}
            doc[head] = {**section, o.path[1]: o.value}
        else:
            known = [*SETTINGS, "seeds", "experiment.NAME.KEY", *(f"{s}.KEY" for s in sorted(TOP))]
            raise ConfigError(f"{o.shown}: {unknown('.'.join(o.path), known)}")
    return doc, layer
