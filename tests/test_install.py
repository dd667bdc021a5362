"""Where users are: the wheel installed outside the checkout, and the Colab notebook run top to bottom.

Both are slow (a wheel build, a kernel) and run in `make test`, as CI does. The wheel goes into a
fresh virtual environment whose only other packages are labreport's dependencies, borrowed from
the development environment through a .pth file (a filtered view without labreport itself), so the
test checks what the wheel carries and that its declared dependencies are met, without copying
gigabytes of torch. The notebook runs off-Colab through papermill on generated data, so that it
cannot rot. Both use a tiny profile of the smoke profile's shape (3 runs of 1 epoch on 128 images).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


# the smoke profile's shape in seconds: 3 runs of 1 epoch on 128 generated images
TINY = """
[profile.tiny]
experiments = ["cifarnet", "resnet20-reg"]
epochs = 1
train_subset = 128
val_size = 64
test_subset = 128
[profile.tiny.experiment.resnet20-reg]
dropout = 0.0
weight_decay = [0.0, 1e-4]
"""


def lab_folder(folder: Path, data: Path, init_cmd: list[str], env: dict) -> Path:
    """`labreport init` in an empty folder, then the data on generated images and no gradient-flow
    measurement (minutes of ResNet-110 on a CPU)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([*init_cmd, "init"], cwd=folder, env=env, check=True, capture_output=True, text=True)
    toml = folder / "experiments.toml"
    text = toml.read_text(encoding="utf-8").replace('root = "data"', f'root = "{data}"').replace(
        "download = true", "download = false")
    text, n = re.subn(r"(\[gradflow\][^\n]*\n)enabled = true", r"\1enabled = false", text)
    assert n == 1
    toml.write_text(text + TINY, encoding="utf-8")
    return folder


def test_the_wheel_carries_its_data_and_works_outside_the_checkout(tmp_path, cifar_dir):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, text=True)
    (wheel,) = dist.glob("labreport-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("labreport/report/templates/report.html.j2", "labreport/report/templates/style.css", "labreport/experiments.toml",
                   "labreport/report/locale/ru/LC_MESSAGES/labreport.po", "labreport/report/locale/en/LC_MESSAGES/labreport.po",
                   "labreport/report/fonts/LiberationSerif-Regular.ttf", "labreport/report/fonts/LICENSE_LIBERATION"):
        assert needed in names, needed

    # a fresh venv; the dependencies come from the development venv, labreport itself does not
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    deps = tmp_path / "deps"
    deps.mkdir()
    dev_site = Path(sysconfig.get_paths()["purelib"])
    for entry in dev_site.iterdir():
        if not entry.name.lower().startswith(("labreport", "__editable__")) and not entry.name.endswith(".pth"):
            (deps / entry.name).symlink_to(entry)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "labreport-deps.pth").write_text(str(deps) + "\n")
    # the venv's own old setuptools would shadow the one torch needs (>= 77) in the borrowed view
    subprocess.run([str(py), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], capture_output=True)
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", str(wheel)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr  # every declared dependency is there
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LABREPORT_RUNS", "LABREPORT_DATA")}
    where = subprocess.run([str(py), "-c", "import labreport, sys; print(labreport.__file__)"], cwd=tmp_path, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(site)), where  # the installed wheel, not the checkout

    cmd = [str(venv / "bin" / "labreport")]
    work = lab_folder(tmp_path / "work", cifar_dir, cmd, env)
    outputs = {}
    for args in (["plan", "--profile", "tiny"], ["run", "--profile", "tiny"],
                 ["build", "--profile", "tiny", "--out", "report.pdf", "--out", "report.docx"]):
        res = subprocess.run([*cmd, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, (args, res.stdout[-2000:], res.stderr[-2000:])
        outputs[args[0]] = res.stdout
    assert "3 runs (3 distinct), profile 'tiny'" in outputs["plan"]
    assert outputs["run"].startswith("3 trained, 0 cached") or "\n3 trained, 0 cached" in outputs["run"]
    assert (work / "report.pdf").stat().st_size > 50_000 and (work / "report.docx").stat().st_size > 20_000


def test_the_colab_notebook_runs_top_to_bottom_off_colab(tmp_path, cifar_dir):
    papermill = pytest.importorskip("papermill")
    pytest.importorskip("ipykernel")
    env = {k: v for k, v in os.environ.items() if k not in ("LABREPORT_RUNS", "LABREPORT_DATA")}
    work = lab_folder(tmp_path / "work", cifar_dir, [sys.executable, "-m", "labreport"], env)
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "labreport.ipynb"), str(out), kernel_name="python3",
                               parameters={"PROFILE": "tiny", "FOLDER": str(work), "DATA": str(cifar_dir),
                                           "INSTALL": "", "DOCX": True}, progress_bar=False, cwd=str(tmp_path))
    text = out.read_text(encoding="utf-8")
    assert "3 runs (3 distinct), profile 'tiny'" in text  # plan
    assert "to train" in text  # the --dry-run estimate
    assert "exit code 0" in text  # trained every run
    assert (work / "report.pdf").stat().st_size > 50_000 and (work / "report.docx").stat().st_size > 20_000
    # and a second run of every cell (a reconnected session) trains nothing again
    papermill.execute_notebook(str(ROOT / "notebooks" / "labreport.ipynb"), str(out), kernel_name="python3",
                               parameters={"PROFILE": "tiny", "FOLDER": str(work), "DATA": str(cifar_dir),
                                           "INSTALL": "", "DOCX": False}, progress_bar=False, cwd=str(tmp_path))
    assert "0 trained, 3 cached" in out.read_text(encoding="utf-8")
