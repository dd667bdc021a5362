"""One definition per setting: its default, the check of a value and its help, as dataclass field
metadata. Everything else about a setting is derived from that definition:

    @dataclass(frozen=True)
    class RunSettings:
        threads: int = setting(0, "torch CPU threads per worker (0: ...)", at_least(0))

`settings_of(cls)` lists a dataclass's settings (their TOML types, choices, defaults, checks and
help); matrix.py checks the training settings of experiments.toml against TrainSpec's, and
sections.py every other section against its dataclass. No default is written twice. The checks
below are the values' (each says what is wrong in words that follow "'key' "); a section's own
rules (a font it bundles, ГОСТ's font sizes) stay with the section.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, Literal

Check = Callable[[Any], "str | None"]  # a value -> what is wrong with it ("must be >= 0"), None: nothing

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")  # never in a path, a device name or a partition
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?\Z")  # a catalogue's name: ru, en, de, pt_BR
DATE_RE = re.compile(r"^(0[1-9]|[12][0-9]|3[01])\.(0[1-9]|1[0-2])\.[0-9]{4}\Z")  # DD.MM.YYYY, as ГОСТ writes it


def setting(default: Any = MISSING, help: str = "", check: Check | None = None, *,
            choices: tuple | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field that is a setting. `choices` is needed only where the annotation does not
    say them (a Literal does); `check` is any further condition on a value of the right type;
    `factory` makes a mutable default (a table) afresh for each instance."""
    meta = {"help": help, "check": check, "choices": choices}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(metadata=meta) if default is MISSING else dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Setting:
    """A setting as a TOML file gives it."""

    name: str
    types: tuple[type, ...]  # what a TOML value may be: (float,), (str,), (int, str), (list,) ...
    default: Any  # MISSING: it must be given
    choices: tuple | None  # a closed list of values
    check: Check | None
    help: str


def _toml_types(hint: Any) -> tuple[tuple[type, ...], tuple | None]:
    """The TOML value types of an annotation, and its choices when it is a Literal."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        args = typing.get_args(hint)
        return tuple(dict.fromkeys(type(a) for a in args)), args
    if origin in (typing.Union, types.UnionType):  # int | str; str | None (None: a default, not a TOML value)
        parts = [_toml_types(a)[0] for a in typing.get_args(hint) if a is not type(None)]
        return tuple(dict.fromkeys(t for ts in parts for t in ts)), None
    return ({tuple: list, list: list, dict: dict}.get(origin, getattr(hint, "TOML_TYPE", hint)),), None


@functools.cache
def settings_of(cls: type) -> dict[str, Setting]:
    """The settings of a dataclass, in definition order (fields without setting() metadata are left out)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        kinds, choices = _toml_types(hints[f.name])
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        out[f.name] = Setting(f.name, kinds, default, f.metadata["choices"] or choices, f.metadata["check"],
                              f.metadata["help"])
    return out


def canonical(s: Setting, value: Any) -> Any:
    """A TOML value as the setting holds it: an integer for a float becomes a float (OverflowError
    when it cannot), a list for a tuple a tuple."""
    if s.types == (float,) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return tuple(value) if isinstance(value, list) else value


def check_value(s: Setting, value: Any, expects: str) -> tuple[Any, str | None]:
    """The canonical value of a TOML value for the setting, and what is wrong with it (the words
    after "'key' ", None: nothing): too large, not of the setting's type (`expects` says what it
    takes), not one of its choices, or what its check says."""
    try:
        value = canonical(s, value) if not isinstance(value, list) else value
    except OverflowError:
        return value, "is too large"
    if not is_type(s, value):
        return value, f"must be {expects}, got {value!r}"
    if s.choices is not None and value not in s.choices:
        return value, f"must be one of {', '.join(map(repr, s.choices))}, got {value!r}"
    if s.check is not None and (problem := s.check(value)):
        return value, f"{problem}, got {value!r}"
    return value, None


def is_type(s: Setting, value: Any) -> bool:
    """Whether a (canonical) value has one of the setting's types; true and false are not numbers."""
    if isinstance(value, bool):
        return bool in s.types
    return isinstance(value, tuple(list if t is list else t for t in s.types)) or (
        list in s.types and isinstance(value, tuple))


# ---- checks: each says what is wrong with a value, in words that follow "'key' " ------------------
def between(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    """lo <= v <= hi (< with *_open), and finite."""
    def check(v):
        if isinstance(v, float) and not math.isfinite(v):
            return "must be a finite number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo}"
        if hi is not None and (v >= hi if hi_open else v > hi):
            return f"must be {'<' if hi_open else '<='} {hi}"
        return None
    return check


def open_unit(v) -> str | None:
    """A probability or a level: strictly between 0 and 1."""
    return None if 0.0 < v < 1.0 else "must be between 0 and 1 (exclusive)"


def at_least(lo: int) -> Check:
    return lambda v: None if v >= lo else f"must be >= {lo}"


def no_control(v) -> str | None:
    """Paths, a device, a partition: never a NUL or a newline."""
    return "contains a control character" if isinstance(v, str) and CONTROL_RE.search(v) else None


def language_code(v: str) -> str | None:
    """A message catalogue's name: ru, en, de, pt_BR."""
    return None if LANGUAGE_RE.match(v) else ("must be a language code such as 'ru' or 'en' "
                                              "(a message catalogue of that name)")


def day_month_year(v: str) -> str | None:
    """DD.MM.YYYY, as ГОСТ writes a date; "" for none."""
    if not v or DATE_RE.match(v):
        return None
    return "must be a date DD.MM.YYYY (when the electronic sources were read)"


def distinct_from(options: tuple) -> Check:
    """A non-empty list of distinct values, each one of `options`."""
    def check(v) -> str | None:
        if not v or any(isinstance(x, bool) or x not in options for x in v) or len(set(v)) != len(v):
            return f"must be a non-empty list of distinct values from {', '.join(map(repr, options))}"
        return None
    return check


def increasing_positive_ints(v) -> str | None:
    """Milestones: positive integers, strictly increasing."""
    if not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in v):
        return "must be a list of positive integers"
    if list(v) != sorted(set(v)):
        return "must be strictly increasing"
    return None


def keyword_table(v) -> str | None:
    """model_args: a table whose keys are Python keyword names."""
    bad = [k for k in v if not isinstance(k, str) or not k.isidentifier()]
    return f"must be a table of keyword arguments (names such as depth, width), not {bad[0]!r}" if bad else None
