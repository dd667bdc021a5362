"""`labreport doctor`: a line per thing the lab needs, the fix for what is missing, exit 0 only when
`run` and `build` can work; and without Pango the DOCX and `export` still work."""
from __future__ import annotations

import importlib.abc
import sys

import pytest
from click.testing import CliRunner

from labreport.cli import main
from labreport.api import Lab
from procs import tiny_toml

TOML = tiny_toml("{root}", epochs=1) + """[[experiment]]
name = "small"
task = 3
model = "cifarnet"
"""


def doctor(tmp_path, *args: str):
    return CliRunner().invoke(main, ["--config", str(tmp_path / "experiments.toml"), "--runs", str(tmp_path / "runs"),
                                     *args, "doctor"])


@pytest.fixture
def lab_dir(tmp_path, cifar_dir):
    (tmp_path / "experiments.toml").write_text(TOML.format(root=cifar_dir))
    return tmp_path


class _NoPango(importlib.abc.MetaPathFinder):
    """Importing WeasyPrint fails as it does where Pango is not installed (cffi cannot dlopen it)."""

    def find_spec(self, name, path, target=None):
        if name == "weasyprint" or name.startswith("weasyprint."):
            raise OSError("cannot load library 'libpango-1.0-0': libpango-1.0-0: cannot open shared object file")
        return None


@pytest.fixture
def no_pango(monkeypatch):
    for name in [n for n in sys.modules if n == "weasyprint" or n.startswith("weasyprint.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoPango(), *sys.meta_path])


def test_everything_here_is_ok_and_each_line_says_what_it_found(lab_dir, cifar_dir):
    res = doctor(lab_dir)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[-1] == "run and build can work here"
    assert all(line.split()[0] in ("ok", "note") for line in lines[:-1])
    assert lines[0].startswith("ok       Python 3.")
    assert lines[1].startswith("ok       torch ") and "precision auto = " in lines[1]
    assert any(line.startswith("ok       PDF: WeasyPrint ") and "with Pango " in line for line in lines)
    assert any(line.startswith(f"ok       CIFAR-10: {cifar_dir}") for line in lines)
    assert any(line.startswith(f"ok       run store {lab_dir / 'runs'} (made by the first `run`): ") and
               line.endswith(" GB free") for line in lines)


def test_without_pango_the_pdf_is_missing_with_its_fix_and_the_docx_and_export_still_work(lab_dir, no_pango):
    res = doctor(lab_dir)
    assert res.exit_code == 2
    (pdf,) = [line for line in res.stdout.splitlines() if "PDF:" in line]
    assert pdf.startswith("missing  PDF: WeasyPrint cannot be loaded (cannot load library 'libpango-1.0-0'")
    assert "apt-get install libpango-1.0-0" in pdf and "brew install pango" in pdf
    assert "`build --out report.docx` and `export` work without it" in pdf
    assert res.stdout.splitlines()[-1].startswith("1 thing(s) missing")
    args = ["--config", str(lab_dir / "experiments.toml"), "--runs", str(lab_dir / "runs")]
    built = CliRunner().invoke(main, [*args, "build", "--out", str(lab_dir / "r.docx")])
    assert built.exit_code == 0, built.output
    assert (lab_dir / "r.docx").stat().st_size > 10_000
    exported = CliRunner().invoke(main, [*args, "export", "--format", "json"])
    assert exported.exit_code == 0 and '"conclusions"' in exported.stdout
    assert "weasyprint" not in sys.modules


def test_data_not_there_is_a_note_when_run_downloads_it_and_missing_when_it_cannot(tmp_path):
    toml = tmp_path / "experiments.toml"
    toml.write_text(TOML.format(root=tmp_path / "nodata").replace("download = false", "download = true"))
    res = doctor(tmp_path)
    (line,) = [x for x in res.stdout.splitlines() if "CIFAR-10" in x]
    assert line.startswith(f"note     CIFAR-10: not in {tmp_path / 'nodata'} yet; `run` downloads it (https://")
    assert "md5 checked" in line and "offline: put cifar-10-python.tar.gz or cifar-10-batches-py/ into" in line
    assert res.exit_code == 0
    toml.write_text(TOML.format(root=tmp_path / "nodata"))
    res = doctor(tmp_path)
    assert res.exit_code == 2 and any(x.startswith("missing  CIFAR-10: not in ") for x in res.stdout.splitlines())


def test_no_experiments_toml_is_missing_with_init_as_the_fix(tmp_path):
    res = doctor(tmp_path)
    assert res.exit_code == 2
    assert "missing  experiments.toml: not found here -> `labreport init` writes the lab's" in res.stdout


def test_a_torch_too_old_is_missing(lab_dir, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    res = doctor(lab_dir)
    assert res.exit_code == 2 and "missing  torch 2.5.1+cpu -> labreport needs torch 2.6 or newer" in res.stdout


def test_the_api_gives_the_same_lines(lab_dir):
    found = Lab(lab_dir / "experiments.toml", runs=lab_dir / "runs").doctor()
    assert found.ok and str(found) == doctor(lab_dir).stdout.rstrip("\n")
