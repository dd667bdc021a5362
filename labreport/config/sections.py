"""The settings sections of experiments.toml that are not the experiment matrix: [report], [data],
[store], [analysis], [run], [executor] and [gradflow], each a frozen dataclass whose fields carry
their default, check and help (setting.py). None of them enters a run key: they say how runs
execute and how the report reads, never what is trained.

Every error is one line naming the file, the section and the key (Ctx.err).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from labreport.config.setting import (
    CONTROL_RE,
    Setting,
    at_least,
    between,
    check_value,
    day_month_year,
    distinct_from,
    language_code,
    no_control,
    open_unit,
    setting,
    settings_of,
)
from labreport.errors import ConfigError, did_you_mean
from labreport.models import MODELS
from labreport.spec import Init


@dataclass(frozen=True)
class FontSet:
    """The files of a bundled font family (labreport/report/fonts/)."""

    regular: str
    bold: str
    italic: str
    bold_italic: str
    mono: str


# [report] font: the bundled families. Liberation Serif is metric-compatible with Times New Roman,
# which ГОСТ 7.32-2017 (6.1.1) names; the DOCX asks for Times New Roman itself (report/word.py).
FONTS = {
    "Liberation Serif": FontSet("LiberationSerif-Regular.ttf", "LiberationSerif-Bold.ttf",
                                "LiberationSerif-Italic.ttf", "LiberationSerif-BoldItalic.ttf",
                                "LiberationMono-Regular.ttf"),
    "DejaVu Serif": FontSet("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
                            "DejaVuSerif-Bold.ttf", "DejaVuSans.ttf"),
}
# Depths with both a resnetN and its plain twin in the catalogue: what the gradient flow compares
GRADFLOW_DEPTHS = tuple(sorted(i.depth for i in MODELS.values() if i.family == "plain"))
GRADFLOW_INITS = typing.get_args(Init)  # every init a run may use; fixup only on the BN-less ResNet (it needs both)


def _toml(v) -> str:
    return str(v).lower() if isinstance(v, bool) else f'"{v}"'


def unknown(key: str, known, what: str = "key") -> str:
    hint = did_you_mean(key, known) or f"; known {what}s: {', '.join(sorted(known))}"
    return f"unknown {what} '{key}'{hint}"


class Ctx:
    """Prefixes every error with the file and the place in it."""

    def __init__(self, path: Path):
        self.path = path

    def err(self, where: str, msg: str) -> ConfigError:
        msg = CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], f"{where}: {msg}")
        return ConfigError(f"{self.path}: {msg}")


def section_table(ctx: Ctx, doc: dict, name: str) -> dict:
    t = doc.get(name, {})
    if not isinstance(t, dict):
        raise ctx.err(f"[{name}]", "must be a table")
    return t


# --------------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------------
class Section:
    """A section's dataclass: its name in the TOML and how its type errors read."""

    NAME: ClassVar[str]

    @staticmethod
    def expects(s: Setting) -> str:
        """How a type error names what the setting takes."""
        return f"of type {s.types[0].__name__}"

    @classmethod
    def validate(cls, values: dict) -> tuple[str, str] | None:
        """A problem between settings, or inside one, once each has its type: (key, message)."""
        return None


def _font_size(v: int) -> str | None:  # ГОСТ 7.32: at least 12 pt; universities ask for 14
    return None if 12 <= v <= 14 else "must be 12, 13 or 14 (pt)"


def _bundled(v: str) -> str | None:
    return None if v in FONTS else f"must be one of {', '.join(map(repr, FONTS))} (bundled)"


def _title(help_: str) -> Any:
    return setting("", help_)


@dataclass(frozen=True)
class ReportSettings(Section):
    """[report]: the title page's fields, the report's language, templates and font."""

    NAME: ClassVar[str] = "report"
    language: str = setting("ru", "the report's language: a message catalogue's name (ru, en)", language_code)
    title: str = _title("the topic of the lab, on the title page")
    university: str = _title("the organisation at the top of the title page")
    faculty: str = _title("an optional line between the university and the department")
    department: str = _title("the department (кафедра)")
    discipline: str = _title("the course the lab belongs to")
    lab_number: int | str = _title("the lab's number")
    student: str = _title("who did the work")
    group: str = _title("the student's group")
    teacher: str = _title("who checks it")
    teacher_position: str = _title("the teacher's position")
    city: str = _title("the town at the bottom of the title page")
    year: int | str = _title("the year at the bottom of the title page")
    ministry: str | None = setting(None, "the first line of the title page (default: the ministry, in the "
                                         "report's language; \"\" leaves it out)")
    author: str = _title("the document's author property (default: none)")
    templates: str = setting("", "a folder of your own templates and catalogues, looked up first", no_control)
    font: str = setting("Liberation Serif", "a bundled font family: " + ", ".join(FONTS), _bundled)
    font_size: int = setting(14, "the body text, in pt", _font_size)
    accessed: str = setting("", "the date the electronic sources were read, DD.MM.YYYY (default: the build's day)",
                            day_month_year)

    @staticmethod
    def expects(s: Setting) -> str:
        return "text" if str in s.types else "a whole number"


@dataclass(frozen=True)
class DataSettings(Section):
    """[data]: where CIFAR-10 is."""

    NAME: ClassVar[str] = "data"
    root: str = setting("", "a folder with cifar-10-batches-py/ or the official archive, relative to the TOML "
                            "(\"\": ./data; LABREPORT_DATA wins)", no_control)
    download: bool = setting(True, "fetch the official archive when neither is there")


@dataclass(frozen=True)
class StoreSettings(Section):
    """[store]: where the runs are kept."""

    NAME: ClassVar[str] = "store"
    root: str = setting("", "the run store, relative to the TOML (\"\": ./runs; LABREPORT_RUNS and --runs win)",
                        no_control)


@dataclass(frozen=True)
class AnalysisSettings(Section):
    """[analysis]: how conclusions are drawn."""

    NAME: ClassVar[str] = "analysis"
    trained_threshold: float | None = setting(None, "best validation accuracy above which a run trains (default: "
                                                    "twice chance, 0.2 on CIFAR-10, 0.02 on CIFAR-100)", open_unit)
    claim_rate: float = setting(0.10, "the lab's claim: BN-less ResNet-110 trains in at most this share of cases",
                                open_unit)
    confidence: float = setting(0.95, "level of the Wilson interval", open_unit)
    alpha: float = setting(0.05, "family-wise significance level of the comparisons (Holm-corrected) and of the "
                                 "exact tests", open_unit)


@dataclass(frozen=True)
class RunSettings(Section):
    """[run]: how runs execute, never what they compute (not in keys)."""

    NAME: ClassVar[str] = "run"
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", no_control)
    channels_last: bool = setting(True, "NHWC memory format: faster convolutions on CPUs and tensor cores")
    # Off until a GPU measurement says otherwise (bench/gpu_check.sh); recorded in each result's provenance
    compile: bool | str = setting(False, "false (eager), true (torch.compile), \"reduce-overhead\" (torch.compile "
                                         "with CUDA graphs on a GPU; on a CPU the same as true)",
                                  choices=(False, True, "reduce-overhead"))
    threads: int = setting(0, "torch CPU threads per worker (0: the cores divided among the workers)", at_least(0))
    tensorboard: bool = setting(False, "write TensorBoard event files of every run as it trains (pip install "
                                       "'labreport[tensorboard]')")
    tensorboard_dir: str = setting("", "where, relative to the TOML (\"\": <run store>/tensorboard)", no_control)


@dataclass(frozen=True)
class ExecutorSettings(Section):
    """[executor]: what each task of `run --executor slurm` asks Slurm for; never part of a run key."""

    NAME: ClassVar[str] = "executor"
    partition: str = setting("", "the partition (\"\": the cluster's default)", no_control)
    time_min: int = setting(240, "wall-clock limit per task, minutes; a run that needs more is requeued and "
                                 "resumes", at_least(1))
    gpus_per_task: int = setting(1, "GPUs per task", at_least(0))
    cpus_per_task: int = setting(4, "CPUs per task, also torch's threads in it unless [run] threads says "
                                    "otherwise", at_least(1))
    mem_gb: int = setting(16, "memory per task, GB (0: the partition's default)", at_least(0))
    array_parallelism: int = setting(16, "tasks of the array running at once", at_least(1))
    folder: str = setting("", "submitit's logs and submitted.json (\"\": <run store>/.slurm)", no_control)
    extra: dict[str, Any] = setting(help="more sbatch options, e.g. {account = \"x\", qos = \"y\"}", factory=dict)

    @staticmethod
    def expects(s: Setting) -> str:
        if s.name == "extra":
            return 'a table of sbatch options, e.g. {account = "x"}'
        return Section.expects(s)

    @classmethod
    def validate(cls, values: dict) -> tuple[str, str] | None:
        for k, v in values.get("extra", {}).items():  # each becomes one `#SBATCH --k=v` line
            if not isinstance(v, (str, int, float, bool)) or v is False:  # true: a bare flag (--exclusive)
                return "extra", f"'extra.{k}' must be text, a number or true, got {v!r}"
        return None


def _gradflow_lr(v: float) -> str | None:
    return None if between(0.0, 10.0, lo_open=True)(v) is None else "must be in (0, 10]"


@dataclass(frozen=True)
class GradflowSettings(Section):
    """[gradflow]: task 1's per-layer gradient norms of ResNet and plain nets, with and without BN, at
    init and after `steps` Adam steps (`labreport gradflow`). The defaults cost ~1.5 min on 2 CPU cores."""

    NAME: ClassVar[str] = "gradflow"
    enabled: bool = setting(True, "`run` measures it at the end, `build` shows it when it is in the store")
    depths: tuple[int, ...] = setting((110,), "any of the depths with a resnetN and a plainN",
                                      distinct_from(GRADFLOW_DEPTHS))
    inits: tuple[str, ...] = setting(GRADFLOW_INITS, "he (the runs'), torch (PyTorch's defaults), fixup (the "
                                                     "BN-less ResNet only)", distinct_from(GRADFLOW_INITS))
    steps: int = setting(20, "Adam steps between the two measurements (CPU: ~0.5 s each for a 110-layer net)",
                         at_least(1))
    batch: int = setting(32, "images per training step", at_least(1))
    images: int = setting(640, "training images the steps cycle over: steps x batch, each seen once (>= batch)")
    probe: int = setting(128, "images of the fixed batch the gradient norms are measured on", at_least(1))
    lr: float = setting(1e-3, "Adam learning rate of the training steps", _gradflow_lr)

    @classmethod
    def validate(cls, values: dict) -> tuple[str, str] | None:
        if values["images"] < values["batch"]:
            return "images", f"'images' must be >= {values['batch']}, got {values['images']}"
        return None


SECTIONS = (ReportSettings, DataSettings, StoreSettings, AnalysisSettings, RunSettings, ExecutorSettings,
            GradflowSettings)


def defaults(cls: type) -> dict[str, Any]:
    """A section's settings at their defaults (the dataclass's fields, read when the file is read:
    tests switch a default off for the whole suite by changing the field's default)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return {k: fields[k].default if fields[k].default is not dataclasses.MISSING else fields[k].default_factory()
            for k in settings_of(cls)}


def read_section(ctx: Ctx, doc: dict, cls: type) -> Any:
    """One section, checked, with its defaults filled in, as its dataclass."""
    where, known = f"[{cls.NAME}]", settings_of(cls)
    values = defaults(cls)
    for k, v in section_table(ctx, doc, cls.NAME).items():
        if k not in known:
            raise ctx.err(where, unknown(k, known))
        values[k] = _value(ctx, where, cls, known[k], v)
    if problem := cls.validate(values):
        raise ctx.err(where, problem[1])
    return cls(**values)


def _value(ctx: Ctx, where: str, cls: type, s: Setting, v: Any) -> Any:
    if s.choices is not None:  # a closed list of values, of any type (1 is not true)
        if not any(type(v) is type(c) and v == c for c in s.choices):
            raise ctx.err(where, f"'{s.name}' must be one of {', '.join(_toml(c) for c in s.choices)}, got {v!r}")
        return v
    value, problem = check_value(s, v, cls.expects(s))
    if problem:
        raise ctx.err(where, f"'{s.name}' {problem}")
    return tuple(value) if isinstance(value, list) else value


def read_sections(ctx: Ctx, doc: dict) -> dict[str, Any]:
    """Every settings section, checked, with its defaults filled in: {name: its dataclass}."""
    return {cls.NAME: read_section(ctx, doc, cls) for cls in SECTIONS}
