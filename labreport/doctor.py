"""`labreport doctor`: what this machine has for the lab, a line each, and the fix for what is missing.

    ok       Python 3.11.7
    ok       torch 2.14.1: training on the CPU (AMD EPYC 7B13, 2 threads); no CUDA GPU
    missing  PDF: WeasyPrint cannot load Pango (...) -> install Pango: ...

A check that fails for `run` or `build` is "missing" and makes `doctor` exit 2; a "note" is worth
knowing but stops nothing (no GPU, LibreOffice absent, the data set not downloaded yet).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

MIN_PYTHON = (3, 11)
MIN_TORCH = (2, 6)  # torch.nn.utils.get_total_norm
LOW_DISK_GB = 2.0  # a run store needs ~50 MB per ResNet-110 run (checkpoints) and the data set ~180 MB
PANGO_FIX = ("install Pango: `sudo apt-get install libpango-1.0-0 libpangoft2-1.0-0` (Debian, Ubuntu, Colab), "
             "`sudo dnf install pango` (Fedora), `brew install pango` (macOS), on Windows see WeasyPrint's "
             "installation page (MSYS2); `build --out report.docx` and `export` work without it")


@dataclass(frozen=True)
class Check:
    status: str  # "ok" | "note" | "missing"
    what: str  # what was checked, and what it found
    fix: str = ""  # how to get what is missing or noted

    @property
    def line(self) -> str:
        return f"{self.status:<8} {self.what}" + (f" -> {self.fix}" if self.fix else "")


def python() -> Check:
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("missing", f"Python {version}", "labreport needs Python 3.11 or newer")
    return Check("ok", f"Python {version}")


def torch_and_devices() -> list[Check]:
    """torch, the device `run` trains on, and what precision = "auto" means there."""
    try:
        import torch
    except ImportError as e:
        return [Check("missing", f"torch: {e}", "pip install torch torchvision (a CPU-only build is enough "
                      "without an NVIDIA GPU: see the README's install section)")]
    from labreport.engine.device import describe, resolve_device

    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2] if p.isdigit())
    if version < MIN_TORCH:
        return [Check("missing", f"torch {torch.__version__}", "labreport needs torch 2.6 or newer: "
                      "pip install -U torch torchvision")]
    dev = resolve_device("auto")
    checks = [Check("ok", f"torch {torch.__version__}: {describe(dev, False)}")]
    if dev.type == "cpu":
        cuda_build = torch.version.cuda is not None
        checks.append(Check("note", "no CUDA GPU: training runs on the CPU, hours to days for the whole lab "
                            "(`labreport run --dry-run` measures it)",
                            "on Colab: Runtime -> Change runtime type -> T4 GPU" + (
                                "; this torch is a CUDA build (several GB): a CPU-only torch does the same here"
                                if cuda_build else "")))
    return checks


def pdf_writer() -> Check:
    try:
        import weasyprint
    except (ImportError, OSError) as e:  # OSError: WeasyPrint is installed, Pango (a C library) is not
        reason = " ".join(str(e).split())[:160]
        return Check("missing", f"PDF: WeasyPrint cannot be loaded ({reason})", PANGO_FIX)
    return Check("ok", f"PDF: WeasyPrint {weasyprint.__version__}{_pango_version()}; DOCX: python-docx "
                 f"{importlib.metadata.version('python-docx')}")


def _pango_version() -> str:
    """" with Pango 1.50.12", or "" where WeasyPrint does not say."""
    try:
        from weasyprint.text.ffi import pango

        v = pango.pango_version()  # 15012: 1.50.12
        return f" with Pango {v // 10000}.{v // 100 % 100}.{v % 100}"
    except Exception:  # noqa: BLE001  (a version is a nicety: never fail the check for it)
        return ""


def libreoffice() -> Check:
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice:
        return Check("ok", f"LibreOffice: {soffice} (opens and converts the DOCX)")
    return Check("note", "LibreOffice: not found (optional: to open the DOCX here, or convert it to PDF)",
                 "sudo apt-get install libreoffice-writer-nogui, or Microsoft Word")


def data(config) -> list[Check]:
    """Each data set the matrix trains on: found (and where), or what `run` will do about it."""
    from labreport.engine.datasets import DATASETS, resolve_root

    root = resolve_root(config.data.root, config.base_dir)
    checks = []
    for name in dict.fromkeys(r.spec.dataset for r in config.runs):
        info = DATASETS[name]
        found = next((p for p in (root / info.folder, root / info.tarball, root) if _holds(p, info)), None)
        if found is not None:
            checks.append(Check("ok", f"{info.title}: {found}"))
        elif config.data.download:
            checks.append(Check("note", f"{info.title}: not in {root} yet; `run` downloads it "
                                f"({info.url}, about {DOWNLOAD_MB[name]} MB, md5 checked)",
                                f"offline: put {info.tarball} or {info.folder}/ into {root}"))
        else:
            checks.append(Check("missing", f"{info.title}: not in {root}, and [data] download = false",
                                f"put {info.tarball} or {info.folder}/ into {root} (or set LABREPORT_DATA)"))
    return checks


DOWNLOAD_MB = {"cifar10": 163, "cifar100": 161}  # the official archives' sizes


def _holds(path: Path, info) -> bool:
    if path.name == info.tarball:
        return path.is_file()
    return (path / info.train_files[0]).is_file()


def store(root: Path) -> Check:
    """Where the run store is, whether it can be written, and the free disk there."""
    existing = next((p for p in (root, *root.absolute().parents) if p.exists()), Path("/"))
    free_gb = shutil.disk_usage(existing).free / 1e9
    where = f"run store {root}" + ("" if root.exists() else " (made by the first `run`)")
    if not _writable(existing):
        return Check("missing", f"{where}: {existing} cannot be written", "pass --runs DIR or set LABREPORT_RUNS")
    if free_gb < LOW_DISK_GB:
        return Check("note", f"{where}: {free_gb:.1f} GB free", "the lab's 27 runs keep ~1 GB of checkpoints")
    return Check("ok", f"{where}: {free_gb:,.0f} GB free")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def checks(config, store_root: Path) -> list[Check]:
    """Every check, in the order `doctor` prints them; config None: no experiments.toml here."""
    out = [python(), *torch_and_devices(), pdf_writer(), libreoffice()]
    if config is None:
        out.append(Check("missing", "experiments.toml: not found here", "`labreport init` writes the lab's, or pass "
                         "--config FILE"))
        return out
    return [*out, Check("ok", f"experiments.toml: {config.path} ({len(config.runs)} runs)"), *data(config),
            store(store_root)]


@dataclass(frozen=True)
class Diagnosis:
    """What `doctor` found: print() it for the lines it prints; `ok`: `run` and `build` can work."""

    checks: tuple[Check, ...]

    @property
    def missing(self) -> list[Check]:
        return [c for c in self.checks if c.status == "missing"]

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 2

    def lines(self) -> list[str]:
        verdict = "run and build can work here" if self.ok else \
            f"{len(self.missing)} thing(s) missing: `run` or `build` cannot work until they are there"
        return [c.line for c in self.checks] + [verdict]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def diagnose(config, store_root: Path) -> Diagnosis:
    return Diagnosis(tuple(checks(config, store_root)))


def diagnose_at(config_path: Path, runs: str | Path | None) -> Diagnosis:
    """`labreport doctor` where experiments.toml may not be yet: the checks of the machine alone then."""
    from labreport.config import load_config, store_root

    config = load_config(config_path) if Path(config_path).exists() else None
    return diagnose(config, store_root(runs, config))
