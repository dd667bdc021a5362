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
    from labreport.config.sections import GradflowSettings

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


def _process_state() -> dict:
    """What a library must leave as its caller had it (a notebook that called Lab.run, the next test):
    torch's global switches and this process's signal handlers."""
    import signal

    import torch

    from labreport.engine.gradflow import flushing_denormals

    return {"threads": torch.get_num_threads(), "deterministic": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn.benchmark": torch.backends.cudnn.benchmark,
            "cudnn.deterministic": torch.backends.cudnn.deterministic,
            "default_dtype": torch.get_default_dtype(), "grad_enabled": torch.is_grad_enabled(),
            "matmul_precision": torch.get_float32_matmul_precision(), "flush_denormal": flushing_denormals(),
            "SIGINT": signal.getsignal(signal.SIGINT), "SIGTERM": signal.getsignal(signal.SIGTERM)}


def _restore(state: dict) -> None:
    import signal

    import torch

    torch.set_num_threads(state["threads"])
    torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["deterministic_warn_only"])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = (state["cudnn.benchmark"],
                                                                          state["cudnn.deterministic"])
    torch.set_default_dtype(state["default_dtype"])
    torch.set_grad_enabled(state["grad_enabled"])
    torch.set_float32_matmul_precision(state["matmul_precision"])
    torch.set_flush_denormal(state["flush_denormal"])
    signal.signal(signal.SIGINT, state["SIGINT"])
    signal.signal(signal.SIGTERM, state["SIGTERM"])


@pytest.fixture(autouse=True)
def process_state_unchanged(request):
    """Every test leaves torch's global state and the signal handlers as it found them: a test that
    changed them (or a labreport call inside it) fails here, and the state is put back so that no
    later test computes differently (the order of tests never changes a result)."""
    before = _process_state()
    yield
    after = _process_state()
    if changed := {k: (before[k], after[k]) for k in before if before[k] != after[k]}:
        _restore(before)
        pytest.fail(f"{request.node.nodeid} left the process changed (before, after): {changed}", pytrace=False)
