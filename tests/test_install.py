"""Where users are: the sdist and the wheel as a release publishes them, the wheel installed outside the
checkout, and the Colab notebook run top to bottom.

All are slow (a build, a kernel) and run in `make test`, as CI does. The sdist and the wheel are built
from a copy of the source tree and must pass `twine check` and carry the licences. The wheel goes into a
fresh virtual environment whose only other packages are labreport's dependencies, borrowed from
the development environment through a .pth file (a filtered view without labreport itself), so the
test checks what the wheel carries and that its declared dependencies are met, without copying
gigabytes of torch. The notebook runs off-Colab through papermill on generated data, so that it
cannot rot. The installed wheel and the notebook use a tiny profile of the smoke profile's shape (3 runs of
1 epoch on 128 images).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
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
    for needed in ("labreport/report/templates/report.html.j2", "labreport/report/templates/style.css",
                   "labreport/experiments.toml", "labreport/report/locale/ru/LC_MESSAGES/labreport.po",
                   "labreport/report/locale/en/LC_MESSAGES/labreport.po",
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


def source_tree(dest: Path) -> Path:
    """The files a fresh clone has (tracked, and new ones git does not ignore), copied to dest, so that
    building leaves nothing in the checkout (build/, *.egg-info) for a test running beside this one."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True)
    if listed.returncode:  # not a git checkout (an unpacked sdist): everything but what builds leave
        shutil.copytree(ROOT, dest, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "data", "runs", "demo"))
        return dest
    for name in filter(None, listed.stdout.decode().split("\0")):
        src, dst = ROOT / name, dest / name
        if not (src.exists() or src.is_symlink()):  # deleted in the work tree, not yet in git
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)  # labreport/experiments.toml stays a link
    return dest


def build_with_the_backend(hook: str, src: Path, dist: Path) -> Path:
    """`python -m build --no-isolation`'s work without the build package (whose name our report/build.py
    would shadow): the pyproject's backend, called in src, writes an sdist or a wheel into dist."""
    res = subprocess.run([sys.executable, "-c", f"import setuptools.build_meta as b; print(b.{hook}({str(dist)!r}))"],
                         cwd=src, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return dist / res.stdout.strip().splitlines()[-1]


def test_the_sdist_and_the_wheel_build_pass_twine_check_and_carry_the_licences(tmp_path):
    pytest.importorskip("twine")
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["build-backend"]
    assert backend == "setuptools.build_meta"
    dist = tmp_path / "dist"
    sdist = build_with_the_backend("build_sdist", source_tree(tmp_path / "src"), dist)
    # the wheel is built from the unpacked sdist, as pip does from an sdist: what the sdist lacks, the wheel lacks
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    wheel = build_with_the_backend("build_wheel", tmp_path / "unpacked" / sdist.name.removesuffix(".tar.gz"), dist)
    res = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
                         capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.count("PASSED") == 2, res.stdout + res.stderr

    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as tar:
        in_sdist = set(tar.getnames())
    for name in ("LICENSE", "THIRD_PARTY_NOTICES.md", "labreport/report/fonts/LICENSE_DEJAVU",
                 "labreport/report/fonts/LICENSE_LIBERATION", "labreport/experiments.toml"):
        assert f"{top}/{name}" in in_sdist, name
    with zipfile.ZipFile(wheel) as whl:
        in_wheel = set(whl.namelist())
        metadata = whl.read(f"{top}.dist-info/METADATA").decode()
    for name in ("LICENSE", "THIRD_PARTY_NOTICES.md", "labreport/report/fonts/LICENSE_DEJAVU",
                 "labreport/report/fonts/LICENSE_LIBERATION"):
        assert f"{top}.dist-info/licenses/{name}" in in_wheel, name
    assert "\nLicense-Expression: MIT\n" in metadata


def run_notebook(tmp_path: Path, **parameters) -> str:
    import papermill

    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "labreport.ipynb"), str(out), kernel_name="python3",
                               parameters=parameters, progress_bar=False, cwd=str(tmp_path))
    return out.read_text(encoding="utf-8")


def test_the_colab_notebook_runs_top_to_bottom_off_colab(tmp_path, cifar_dir, monkeypatch):
    pytest.importorskip("papermill")
    pytest.importorskip("ipykernel")
    for var in ("LABREPORT_RUNS", "LABREPORT_DATA"):
        monkeypatch.delenv(var, raising=False)
    work = lab_folder(tmp_path / "work", cifar_dir, [sys.executable, "-m", "labreport"], dict(os.environ))
    params = {"PROFILE": "tiny", "FOLDER": str(work), "DATA": str(cifar_dir), "INSTALL": "", "DOCX": True}
    text = run_notebook(tmp_path, **params)  # labreport is importable here: "already installed"
    assert "labreport: already installed" in text
    assert "profile 'tiny': 3 runs" in text  # the Lab
    assert "to train" in text  # the estimate of what this notebook trains, before it trains
    assert "the full lab (FULL_LAB = True) would take" in text  # and of the full lab, which it does not train
    assert "3 trained, 0 cached" in text and "exit code 0" in text  # trained every run through the API
    assert "test_acc_at_best" in text and "image/png" in text  # the results table and the curves
    assert "best: " in text
    assert (work / "report.pdf").stat().st_size > 50_000 and (work / "report.docx").stat().st_size > 20_000
    # and a second run of every cell (a reconnected session) trains nothing again
    text = run_notebook(tmp_path, **{**params, "DOCX": False})
    assert "0 trained, 3 cached" in text


def test_the_notebook_says_in_one_line_what_to_set_when_install_fails(tmp_path):
    pytest.importorskip("papermill")
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as e:
        run_notebook(tmp_path, FOLDER=str(tmp_path / "work"), INSTALL=str(tmp_path / "no-such.whl"))
    message = str(e.value)
    assert "could not install labreport from" in message and "no-such.whl" in message
    assert "set INSTALL in the parameters cell to the repository's address" in message
    assert "upload labreport-<version>-py3-none-any.whl" in message
