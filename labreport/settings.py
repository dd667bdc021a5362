"""The settings sections of experiments.toml that are not the experiment matrix: [report], [data],
[store], [analysis], [run], [executor] and [gradflow], with their defaults and checks. None of
them enters a run key: they say how runs execute and how the report reads, never what is trained.

Every error is one line naming the file, the section and the key (Ctx.err).
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

from labreport.errors import ConfigError

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")  # never in a path, a device name or a partition
REPORT_KEYS = {  # the title page's fields, the report's language, templates and font
    "title": str, "university": str, "faculty": str, "department": str, "discipline": str,
    "lab_number": (int, str), "student": str, "group": str, "teacher": str, "teacher_position": str,
    "city": str, "year": (int, str), "ministry": str, "language": str, "templates": str, "author": str,
    "font": str, "font_size": int, "accessed": str,
}
REPORT_FONTS = ("Liberation Serif", "DejaVu Serif")  # bundled with labreport (report.FONTS)
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?\Z")  # a catalogue's name: ru, en, de, pt_BR
DATE_RE = re.compile(r"^(0[1-9]|[12][0-9]|3[01])\.(0[1-9]|1[0-2])\.[0-9]{4}\Z")  # DD.MM.YYYY, as ГОСТ writes it

ANALYSIS_DEFAULTS = {
    "trained_threshold": 0.2,  # best val accuracy above which a run "trains"; chance is 0.10
    "claim_rate": 0.10,  # the lab's claim: BN-less ResNet-110 trains in at most 10% of cases
    "confidence": 0.95,  # level of the Wilson interval
    "alpha": 0.05,  # family-wise significance level of the comparisons (Holm-corrected) and of the exact tests
}
# How runs execute, never what they compute (not in keys). threads: torch CPU threads per worker
# (0: torch's default, all cores; `run --jobs N` gives each worker cores // N).
RUN_DEFAULTS = {"device": "auto", "channels_last": True, "compile": False, "threads": 0}
# [run] compile: false (eager), true (torch.compile), "reduce-overhead" (torch.compile with CUDA graphs
# on a GPU: no per-kernel launch cost; on a CPU the same as true). Off until a GPU measurement says
# otherwise (bench/gpu_check.sh); recorded in each result's provenance.
RUN_CHOICES = {"compile": (False, True, "reduce-overhead")}
# Gradient flow (task 1, `labreport gradflow`): per-layer gradient norms of ResNet / plain nets with and
# without BN, at init and after `steps` Adam steps. The defaults cost about 1.5 minutes on 2 CPU cores.
GRADFLOW_DEFAULTS = {
    "enabled": True,  # `run` measures it at the end, `build` shows it when it is in the store
    "depths": [110],  # any of 20, 32, 44, 56, 110 (both a resnetN and a plainN exist)
    "inits": ["he", "torch", "fixup"],  # fixup: measured on the BN-less ResNet only (it needs both)
    "steps": 20,  # Adam steps between the two measurements (CPU cost: ~0.5 s each for a 110-layer net)
    "batch": 32,  # images per training step
    "images": 640,  # training images the steps cycle over: steps x batch, each seen once
    "probe": 128,  # images of the fixed batch the gradient norms are measured on
    "lr": 1e-3,  # Adam learning rate of the training steps
}
GRADFLOW_DEPTHS = (20, 32, 44, 56, 110)


def _toml(v) -> str:
    return str(v).lower() if isinstance(v, bool) else f'"{v}"'


def copy_lists(d: dict) -> dict:
    return {k: list(v) if isinstance(v, list) else v for k, v in d.items()}


# `run --executor slurm`: what each array task (one run) asks Slurm for; never part of a run key.
EXECUTOR_DEFAULTS = {
    "partition": "",  # "": the cluster's default partition
    "time_min": 240,  # wall-clock limit per task, minutes; a run that needs more is requeued and resumes
    "gpus_per_task": 1,
    "cpus_per_task": 4,  # also torch's CPU threads in the task, unless [run] threads says otherwise
    "mem_gb": 16,  # 0: the partition's default
    "array_parallelism": 16,  # tasks of the array running at once
    "folder": "",  # submitit's logs and submitted.json; "": <run store>/.slurm
    "extra": {},  # more sbatch options, e.g. {account = "x", qos = "y"}
}


def unknown(key: str, known, what: str = "key") -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f"; known {what}s: {', '.join(sorted(known))}"
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


def _simple_section(ctx: Ctx, doc: dict, name: str, defaults: dict, choices: dict | None = None) -> dict:
    t = section_table(ctx, doc, name)
    out = dict(defaults)
    for k, v in t.items():
        if k not in defaults:
            raise ctx.err(f"[{name}]", unknown(k, defaults))
        if k in (choices or {}):  # a closed list of values, of any type (1 is not true)
            if not any(type(v) is type(c) and v == c for c in choices[k]):
                raise ctx.err(f"[{name}]", f"'{k}' must be one of {', '.join(_toml(c) for c in choices[k])}, got {v!r}")
            out[k] = v
            continue
        want = type(defaults[k])
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            try:
                v = float(v)
            except OverflowError:
                raise ctx.err(f"[{name}]", f"'{k}' is too large") from None
        if not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
            raise ctx.err(f"[{name}]", f"'{k}' must be of type {want.__name__}, got {v!r}")
        if isinstance(v, str) and CONTROL_RE.search(v):  # paths, a device, a partition: never a NUL or newline
            raise ctx.err(f"[{name}]", f"'{k}' contains a control character, got {v!r}")
        out[k] = v
    return out


def _executor_section(ctx: Ctx, doc: dict) -> dict:
    extra = section_table(ctx, doc, "executor").get("extra", {})
    if not isinstance(extra, dict):
        raise ctx.err("[executor]", f"'extra' must be a table of sbatch options, e.g. {{account = \"x\"}}, "
                                    f"got {extra!r}")
    out = _simple_section(ctx, doc, "executor", EXECUTOR_DEFAULTS)
    for k, lo in (("time_min", 1), ("gpus_per_task", 0), ("cpus_per_task", 1), ("mem_gb", 0), ("array_parallelism", 1)):
        if out[k] < lo:
            raise ctx.err("[executor]", f"'{k}' must be >= {lo}, got {out[k]}")
    for k, v in out["extra"].items():  # each becomes one `#SBATCH --k=v` line
        if not isinstance(v, (str, int, float, bool)) or v is False:  # true: a bare flag (--exclusive)
            raise ctx.err("[executor]", f"'extra.{k}' must be text, a number or true, got {v!r}")
    out["extra"] = dict(out["extra"])  # not the shared default
    return out


def _gradflow_section(ctx: Ctx, doc: dict) -> dict:
    out = copy_lists(_simple_section(ctx, doc, "gradflow", GRADFLOW_DEFAULTS))
    for k, options in (("depths", GRADFLOW_DEPTHS), ("inits", ("he", "torch", "fixup"))):
        v = out[k]
        if not v or any(isinstance(x, bool) or x not in options for x in v) or len(set(v)) != len(v):
            raise ctx.err("[gradflow]", f"'{k}' must be a non-empty list of distinct values from "
                                        f"{', '.join(map(repr, options))}, got {v!r}")
    for k, lo in (("steps", 1), ("batch", 1), ("images", out["batch"]), ("probe", 1)):
        if out[k] < lo:
            raise ctx.err("[gradflow]", f"'{k}' must be >= {lo}, got {out[k]}")
    if not (math.isfinite(out["lr"]) and 0 < out["lr"] <= 10):
        raise ctx.err("[gradflow]", f"'lr' must be in (0, 10], got {out['lr']}")
    return out


def _report_section(ctx: Ctx, doc: dict) -> dict:
    report = section_table(ctx, doc, "report")
    for k, v in report.items():
        if k not in REPORT_KEYS:
            raise ctx.err("[report]", unknown(k, REPORT_KEYS))
        if not isinstance(v, REPORT_KEYS[k]) or isinstance(v, bool):
            raise ctx.err("[report]", f"'{k}' must be {'a whole number' if REPORT_KEYS[k] is int else 'text'}, "
                                      f"got {v!r}")
        if k == "templates" and CONTROL_RE.search(v):
            raise ctx.err("[report]", f"'templates' contains a control character, got {v!r}")
    if not LANGUAGE_RE.match(report.get("language", "ru")):
        raise ctx.err("[report]", f"'language' must be a language code such as 'ru' or 'en' (a message "
                                  f"catalogue of that name), got {report['language']!r}")
    if report.get("font", REPORT_FONTS[0]) not in REPORT_FONTS:
        raise ctx.err("[report]", f"'font' must be one of {', '.join(map(repr, REPORT_FONTS))} (bundled), "
                                  f"got {report['font']!r}")
    if not 12 <= report.get("font_size", 14) <= 14:  # ГОСТ 7.32: at least 12 pt; universities ask for 14
        raise ctx.err("[report]", f"'font_size' must be 12, 13 or 14 (pt), got {report['font_size']!r}")
    if report.get("accessed") and not DATE_RE.match(report["accessed"]):
        raise ctx.err("[report]", f"'accessed' must be a date DD.MM.YYYY (when the electronic sources were "
                                  f"read), got {report['accessed']!r}")
    return report


def read_sections(ctx: Ctx, doc: dict) -> dict[str, dict[str, Any]]:
    """Every settings section, checked, with its defaults filled in."""
    analysis = _simple_section(ctx, doc, "analysis", ANALYSIS_DEFAULTS)
    for k in ("trained_threshold", "claim_rate", "confidence", "alpha"):
        if not 0.0 < analysis[k] < 1.0:
            raise ctx.err("[analysis]", f"'{k}' must be between 0 and 1 (exclusive), got {analysis[k]}")
    run = _simple_section(ctx, doc, "run", RUN_DEFAULTS, RUN_CHOICES)
    if run["threads"] < 0:
        raise ctx.err("[run]", f"'threads' must be >= 0, got {run['threads']}")
    return {"report": _report_section(ctx, doc),
            "data": _simple_section(ctx, doc, "data", {"root": "", "download": True}),
            "store": _simple_section(ctx, doc, "store", {"root": ""}),
            "analysis": analysis, "run": run,
            "executor": _executor_section(ctx, doc), "gradflow": _gradflow_section(ctx, doc)}
