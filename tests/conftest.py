"""Shared fixtures. Data: a small synthetic CIFAR-10 on disk, and a guard that no test downloads."""
from __future__ import annotations

from pathlib import Path

import pytest

from labreport.testing import write_synthetic_cifar10


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.gpu` is the one mark of a CUDA test: skipped where there is no CUDA, and
    selected with `pytest -m gpu` on a GPU machine (bench/device_run.sh runs them)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (pytest -m gpu on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    """Root folder holding cifar-10-batches-py/ with 500 train / 100 test learnable synthetic images.

    Session-scoped and shared: treat it as read-only (copy it, or write your own, to corrupt files).
    """
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar10(root, n_train=500, n_test=100, seed=0)
    return root


@pytest.fixture
def no_download(monkeypatch) -> list:
    """Make torchvision's download fail as if offline; returns the list of attempted calls (args, kwargs)."""
    import torchvision.datasets.utils as tv_utils

    calls: list = []

    def offline(*args, **kwargs):
        calls.append((args, kwargs))
        raise OSError("network is unreachable (tests never download)")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    return calls


@pytest.fixture(autouse=True)
def no_gradflow_by_default(monkeypatch):
    """[gradflow] enabled defaults to false in tests: `labreport run` would otherwise end every CLI
    test with the gradient-flow measurement (minutes of ResNet-110 on a CPU). Tests of it say
    `enabled = true` in their TOML (tests/engine/test_gradflow.py)."""
    from labreport.settings import GradflowSettings

    monkeypatch.setattr(GradflowSettings.__dataclass_fields__["enabled"], "default", False)


def pristine_logger():
    """labreport's logger as a program finds it: no handler, no level, messages passed to the root."""
    from labreport.logs import LOG

    LOG.handlers[:], LOG.level, LOG.propagate, LOG.disabled = [], 0, True, False


@pytest.fixture(autouse=True)
def labreport_logging():
    """Each test starts with labreport's logger as a program finds it (whatever a module-scoped
    fixture's CLI call configured), and leaves it so."""
    pristine_logger()
    yield
    pristine_logger()
