"""The house rules the code keeps (docs/architecture.md): the layers and their import contract,
torch only where it may be, functions and modules short enough to read, no module named like a
library."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "labreport"
MAX_FUNCTION_LINES, MAX_COMPLEXITY = 60, 15  # radon's cyclomatic complexity
MAX_MODULE_LINES = 400
WHY = "# long:"  # a comment directly above a function (or its decorators) that says why it may be longer


def test_the_import_contract_is_kept(capsys):
    """pyproject.toml's [tool.importlinter]: the layers, and no torch in the science, the report or
    the vocabulary."""
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out


def test_the_pure_layers_and_the_entry_points_load_without_torch():
    """What the contract says, at run time: every module of science/ and report/, the config, the
    executors' interface and the command line import without torch (~1.5 s saved by plan, status,
    build)."""
    code = ("import importlib, pkgutil, sys\n"
            "import labreport.science, labreport.report\n"
            "for pkg in (labreport.science, labreport.report):\n"
            "    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
            "        importlib.import_module(m.name)\n"
            "import labreport.cli, labreport.config, labreport.cluster.executors, labreport.cluster.eta\n"
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def _functions(source: str):
    from radon.complexity import cc_visit
    from radon.visitors import Class

    for block in cc_visit(source):
        if isinstance(block, Class):
            yield from block.methods
        else:
            yield block


def _says_why(lines: list[str], lineno: int) -> bool:
    i = lineno - 2  # the line above the def (0-based)
    while i >= 0 and lines[i].lstrip().startswith("@"):
        i -= 1
    return i >= 0 and lines[i].lstrip().startswith(WHY)


def test_every_function_reads_at_a_glance():
    """No function over 60 lines or above complexity 15, unless a `# long:` comment above it says why."""
    over = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for f in _functions(source):
            n = f.endline - f.lineno + 1
            if (n > MAX_FUNCTION_LINES or f.complexity > MAX_COMPLEXITY) and not _says_why(lines, f.lineno):
                over.append(f"{path.relative_to(ROOT)}:{f.lineno} {f.fullname}: {n} lines, complexity {f.complexity}")
    assert not over, "\n".join(over)


def test_every_module_is_short_enough_to_hold_in_mind():
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not long, "\n".join(long)


def test_no_module_is_named_like_a_library_it_could_shadow():
    """`from . import docx` beside python-docx reads as the library: our names differ from every
    installed top-level package's."""
    ours = {p.stem for p in PACKAGE.rglob("*.py")} | {p.name for p in PACKAGE.rglob("*") if p.is_dir()}
    assert not ours & set(packages_distributions()) - {"labreport"}


@pytest.mark.parametrize("layer", ["engine", "science", "report", "cluster", "store"])
def test_every_layer_says_what_it_is(layer):
    import importlib

    doc = importlib.import_module(f"labreport.{layer}").__doc__
    assert doc and len(doc.split()) > 15


def test_every_line_fits_the_configured_width():
    """pyproject's [tool.ruff] line-length, for the package, its tests and benches."""
    import tomllib

    width = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]["line-length"]
    long = [f"{path.relative_to(ROOT)}:{n}" for folder in ("labreport", "tests", "bench")
            for path in sorted((ROOT / folder).rglob("*.py"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > width]
    assert not long
