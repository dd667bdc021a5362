"""Training through the runner: the run cache, crash-safe resume, divergence, OOM fallback, failures.

Every run here is tiny (64 training images, batches of 32, 1-3 epochs) on the synthetic CIFAR-10 of
conftest.py, on the CPU. The resume tests train the real cifarnet (BatchNorm and dropout: every
piece of state a checkpoint must carry); the tests of the runner's bookkeeping swap in a
one-conv network (fixture `tiny`) because the network is not what they test.
"""
from __future__ import annotations

import dataclasses

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import labreport.engine.device as device_mod
import labreport.engine.trainer as train_mod
from labreport.logs import configure
from labreport.testing import spec_from_dict
from labreport.engine import hostmem
from labreport.config import load_config
from labreport.spec import TrainSpec
from labreport.engine.datasets import load as load_data
from labreport.errors import LabreportError
from labreport.engine.networks import build_model, count_parameters
from labreport.engine.runner import run_matrix
from labreport.store import RunStore, read_json
from labreport.engine.splits import prepare
from labreport.engine.observe import Observer
from labreport.engine.trainer import summarize, train

TINY = {"model": "cifarnet", "epochs": 1, "batch_size": 32, "train_subset": 64, "val_size": 64,
        "test_subset": 64, "lr": 1e-3}
TIMING = ("train_time_s", "epoch_time_s", "images_per_s")  # the only fields allowed to differ between runs


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def write_config(path: Path, experiments: list[dict], title: str = "Lab", **defaults) -> Path:
    """An experiments.toml with TINY defaults (overridden by `defaults`) and the given experiments."""
    lines = ["[report]", f"title = {_toml(title)}", "", "[defaults]"]
    settings = {**TINY, **defaults}
    model = settings.pop("model")  # every experiment names its model
    lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
    for exp in experiments:
        lines += ["", "[[experiment]]"] + [f"{k} = {_toml(v)}" for k, v in {"model": model, **exp}.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Recorder(Observer):
    """An Observer that remembers what it was told, and the messages labreport logged meanwhile."""

    def __init__(self):
        self.started: list[tuple] = []  # (label, key, epochs, start_epoch, steps)
        self.epochs: list[dict] = []
        self.messages: list[str] = []
        configure(1, self.messages.append)  # conftest's fixture puts logging back after the test

    def run_started(self, label, key, epochs, start_epoch, steps):
        self.started.append((label, key, epochs, start_epoch, steps))

    def step(self, epoch, step):
        pass

    def epoch_done(self, record):
        self.epochs.append(record)


def tiny_net(name, *, num_classes=10, norm="batch", dropout=0.0, init="he", model_args=None, lab_dir=None):
    """build_model's signature, a network of 330 parameters: one conv, BatchNorm, dropout."""
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(8, num_classes))


@pytest.fixture
def tiny(monkeypatch):
    """Train `tiny_net` whatever the spec's model; returns the builder so a test can wrap it."""
    monkeypatch.setattr(train_mod, "build_model", tiny_net)
    return tiny_net


@pytest.fixture(scope="module")
def data(cifar_dir):
    return load_data(cifar_dir, download=False)


class Loader:
    """data_loader for run_matrix that counts its calls."""

    def __init__(self, data):
        self.data, self.calls = data, 0

    def __call__(self, dataset="cifar10"):
        assert dataset == "cifar10"
        self.calls += 1
        return self.data


def never_load(dataset="cifar10"):
    raise AssertionError("the data loader must not be called when nothing is left to train")


def matrix(config, store, data, device="cpu", **kw):
    loader = Loader(data)
    summary = run_matrix(config, store, device=device, data_loader=loader, **kw)
    return summary, loader.calls


@contextlib.contextmanager
def interrupted_after_epoch(n: int):
    """Ctrl-C right after epoch n was saved: the runner's heartbeat after the epoch raises."""
    real_heartbeat = RunStore.heartbeat

    def heartbeat(self, key):
        real_heartbeat(self, key)
        if len(self.read_history(key)) == n:
            raise KeyboardInterrupt

    mp = pytest.MonkeyPatch()
    mp.setattr(RunStore, "heartbeat", heartbeat)
    try:
        yield
    finally:
        mp.undo()


def strip_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def final_ckpt(store: RunStore, key: str) -> dict:
    return torch.load(store.run_dir(key) / "ckpt.pt", weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def assert_same_optimizer(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        assert_same_tensors(a["state"][i], b["state"][i])


# --- the cache ---------------------------------------------------------------------------------
def test_a_second_run_trains_nothing_and_loads_no_data(tmp_path, data, monkeypatch, tiny):
    config = load_config(write_config(tmp_path / "e.toml", [{"name": "base"}]))
    store = RunStore(tmp_path / "runs")
    summary, loads = matrix(config, store, data)
    assert (summary.trained, summary.cached, summary.failed, loads) == (["base"], [], [], 1)
    key = config.runs[0].key
    assert store.state(key).status == "done"
    assert store.read_result(key)["epochs_run"] == 1
    assert store.state(key).leased_by is None  # released

    def no_training(*a, **k):
        raise AssertionError("nothing should be trained")

    monkeypatch.setattr(train_mod, "train", no_training)
    summary = run_matrix(config, store, device="cpu", data_loader=never_load)
    assert (summary.trained, summary.cached, summary.exit_code) == ([], ["base"], 0)

    # the report's title and the experiment's name are not training settings
    renamed = load_config(write_config(tmp_path / "e2.toml", [{"name": "renamed", "task": 3}], title="Other"))
    assert renamed.runs[0].key == key
    summary = run_matrix(renamed, store, device="cpu", data_loader=never_load)
    assert (summary.trained, summary.cached) == ([], ["renamed"])


def test_a_changed_training_setting_is_a_new_run(tmp_path, data, tiny):
    store = RunStore(tmp_path / "runs")
    first = load_config(write_config(tmp_path / "a.toml", [{"name": "base"}]))
    assert matrix(first, store, data)[0].trained == ["base"]
    changed = load_config(write_config(tmp_path / "b.toml", [{"name": "base", "lr": 2e-3}]))
    assert changed.runs[0].key != first.runs[0].key
    summary, loads = matrix(changed, store, data)
    assert (summary.trained, summary.cached, loads) == (["base"], [], 1)
    assert sorted(store.keys()) == sorted([first.runs[0].key, changed.runs[0].key])
    assert store.read_result(changed.runs[0].key)["spec"]["lr"] == 2e-3


def test_two_experiments_with_the_same_training_share_one_run(tmp_path, data, tiny):
    config = load_config(write_config(tmp_path / "e.toml", [{"name": "a"}, {"name": "b"}]))
    summary, _ = matrix(config, RunStore(tmp_path / "runs"), data)
    assert summary.trained == ["a"] and len(RunStore(tmp_path / "runs").keys()) == 1


# --- resume after a crash: bit-identical -------------------------------------------------------
RESUME = {"epochs": 3, "val_size": 32, "test_subset": 32, "dropout": 0.15, "deterministic": True,
          "augment": True}  # cifarnet, 2 steps per epoch


@pytest.fixture(scope="module")
def resume_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "e.toml"
    return load_config(write_config(path, [{"name": "det"}], **RESUME))


@pytest.fixture(scope="module")
def reference(resume_config, data, tmp_path_factory):
    """Run A: three epochs without interruption."""
    store = RunStore(tmp_path_factory.mktemp("ref") / "runs")
    summary, _ = matrix(resume_config, store, data)
    assert summary.trained == ["det"]
    key = resume_config.runs[0].key
    return store, key, store.read_result(key), final_ckpt(store, key)


@pytest.fixture(scope="module")
def crashed(resume_config, data, tmp_path_factory):
    """Run B: Ctrl-C right after epoch 2 was saved (the runner's per-epoch heartbeat raises)."""
    store = RunStore(tmp_path_factory.mktemp("crashed") / "runs")
    key = resume_config.runs[0].key
    with interrupted_after_epoch(2):
        summary, _ = matrix(resume_config, store, data)
    assert summary.interrupted_run == "det" and summary.trained == [] and summary.exit_code
    st = store.state(key)
    assert (st.status, st.epochs_done, st.leased_by) == ("partial", 2, None)
    assert final_ckpt(store, key)["epoch"] == 2
    assert torch.load(store.run_dir(key) / "ckpt.prev.pt", weights_only=True)["epoch"] == 1
    return store.root


def resume(crashed_root: Path, tmp_path: Path, config, data, damage=()) -> tuple[RunStore, Recorder]:
    """Copy the crashed store, damage the named checkpoint files, and run the matrix again."""
    store = RunStore(tmp_path / "runs")
    shutil.copytree(crashed_root, store.root)
    key = config.runs[0].key
    for name in damage:
        path = store.run_dir(key) / name
        path.write_bytes(path.read_bytes()[:1000])  # truncated
    rec = Recorder()
    summary, _ = matrix(config, store, data, observer=rec)
    assert (summary.trained, summary.failed) == (["det"], [])
    return store, rec


def assert_same_as_reference(store: RunStore, reference) -> None:
    ref_store, key, ref_result, ref_ckpt = reference
    res = store.read_result(key)
    ckpt = final_ckpt(store, key)
    assert ckpt["epoch"] == 3 and res["epochs_run"] == 3 and res["steps"] == ref_result["steps"] == 6
    assert_same_tensors(ckpt["model"], ref_ckpt["model"])
    assert_same_optimizer(ckpt["optimizer"], ref_ckpt["optimizer"])
    assert strip_timing(store.read_history(key)) == strip_timing(ref_store.read_history(key))
    for field in ("best_epoch", "best_val_acc", "test_acc_at_best", "final_test_acc", "final_train_acc",
                  "test_predictions", "test_labels"):
        assert res[field] == ref_result[field], field


@pytest.mark.slow
def test_resume_after_a_crash_is_bit_identical(crashed, reference, resume_config, data, tmp_path):
    store, rec = resume(crashed, tmp_path, resume_config, data)
    assert rec.started[0][3] == 2  # resumed after epoch 2
    assert [r["epoch"] for r in rec.epochs] == [3]  # trained only the missing epoch
    assert not any("warning" in m for m in rec.messages)
    assert_same_as_reference(store, reference)


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_resumes_from_the_previous(crashed, reference, resume_config, data,
                                                                tmp_path):
    store, rec = resume(crashed, tmp_path, resume_config, data, damage=["ckpt.pt"])
    assert rec.started[0][3] == 1  # from ckpt.prev.pt, one epoch earlier
    assert [r["epoch"] for r in rec.epochs] == [2, 3]
    assert any("ckpt.pt is unreadable" in m for m in rec.messages)
    assert_same_as_reference(store, reference)


@pytest.mark.slow
def test_both_checkpoints_damaged_restarts_from_scratch(crashed, reference, resume_config, data, tmp_path):
    store, rec = resume(crashed, tmp_path, resume_config, data, damage=["ckpt.pt", "ckpt.prev.pt"])
    assert rec.started[0][3] == 0
    assert [r["epoch"] for r in rec.epochs] == [1, 2, 3]
    assert any("restarts from epoch 0" in m for m in rec.messages)
    assert_same_as_reference(store, reference)


def test_a_crash_between_the_last_checkpoint_and_the_result(reference, resume_config, data, tmp_path):
    ref_store, key, ref_result, _ = reference
    store = RunStore(tmp_path / "runs")
    shutil.copytree(ref_store.root, store.root)
    (store.run_dir(key) / "result.json").unlink()
    assert store.state(key).status == "partial"
    rec = Recorder()
    summary, _ = matrix(resume_config, store, data, observer=rec)
    assert summary.trained == ["det"]
    assert rec.started[0][3] == 3 and rec.epochs == []  # nothing retrained: the result is rebuilt
    res = store.read_result(key)
    assert res["steps"] == 6 and res["best_epoch"] == ref_result["best_epoch"]
    assert res["test_acc_at_best"] == ref_result["test_acc_at_best"]


# (the precision rule and fp16 loss scaling: tests/engine/test_precision.py)
def test_result_carries_its_provenance(reference, data):
    store, key, res, _ = reference
    prov = res["provenance"]
    assert prov["data_fingerprint"] == data.fingerprint
    assert prov["torch"] == torch.__version__
    assert prov["device_type"] == "cpu" and prov["device"]
    assert prov["precision"] == "fp32" and prov["capability"] is None  # auto on CPU
    assert (prov["compile"], prov["cuda_graphs"], prov["cudagraph_skips"], prov["tf32"]) == (False, False, None, None)
    assert prov["host_malloc"] == hostmem.setting()  # what the CPU run set (None off glibc)
    assert res["key"] == key and spec_from_dict(res["spec"]).key == key
    assert res["status"] == "completed" and res["diverged_at_epoch"] is None and res["diverged_reason"] is None
    assert res["skipped_steps"] == 0  # no loss scaling in fp32
    assert (res["n_train"], res["n_val"], res["n_test"]) == (64, 32, 32)
    assert res["params"] == count_parameters(build_model("cifarnet", dropout=0.15))
    assert res["oom_events"] == []
    assert res["selected_by"] == "val_acc"
    hist = store.read_history(key)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert all((h["precision"], h["skipped_steps"], h["loss_scale"]) == ("fp32", 0, None) for h in hist)
    best = max(hist, key=lambda h: (h["val_acc"], -h["epoch"]))
    assert (res["best_epoch"], res["test_acc_at_best"]) == (best["epoch"], best["test_acc"])
    spec = read_json(store.run_dir(key) / "spec.json")
    assert spec["key"] == key and spec["spec"] == res["spec"]


def test_a_checkpoint_from_another_device_type_still_resumes(tmp_path, data, tiny):
    """A CUDA run resumed on a CPU: the data generator's saved state (16 bytes on CUDA, 5056 on a
    CPU) does not fit; the run goes on with a warning instead of failing at every retry."""
    config = load_config(write_config(tmp_path / "e.toml", [{"name": "moved"}], epochs=2))
    store = RunStore(tmp_path / "runs")
    key = config.runs[0].key
    with interrupted_after_epoch(1):
        assert matrix(config, store, data)[0].interrupted_run == "moved"
    path = store.run_dir(key) / "ckpt.pt"
    ckpt = torch.load(path, weights_only=True)
    cuda_like = torch.zeros(16, dtype=torch.uint8)  # what torch.cuda.get_rng_state() returns: seed, offset
    ckpt["rng"] = dict(ckpt["rng"], data=cuda_like, cuda=cuda_like)
    torch.save(ckpt, path)
    rec = Recorder()
    summary, _ = matrix(config, store, data, observer=rec)
    assert (summary.trained, summary.failed) == (["moved"], [])
    assert rec.started[0][3] == 1 and store.read_result(key)["epochs_run"] == 2
    assert any("another device type" in m for m in rec.messages)


@pytest.mark.gpu
def test_resume_on_cuda(tmp_path, data):
    """load_checkpoint(map_location=cuda) puts the saved RNG states on the GPU too; they must go
    back to the CPU to be restored, or every resume on a GPU fails."""
    config = load_config(write_config(tmp_path / "e.toml", [{"name": "gpu"}], epochs=2, dropout=0.15))
    store = RunStore(tmp_path / "runs")
    with interrupted_after_epoch(1):
        assert matrix(config, store, data, device="cuda")[0].interrupted_run == "gpu"
    rec = Recorder()
    summary, _ = matrix(config, store, data, device="cuda", observer=rec)
    assert (summary.trained, summary.failed) == (["gpu"], [])
    assert rec.started[0][3] == 1 and not any("warning" in m for m in rec.messages)
    res = store.read_result(config.runs[0].key)
    assert res["epochs_run"] == 2 and res["provenance"]["device_type"] == "cuda"


# --- divergence --------------------------------------------------------------------------------
def nan_after(n_forwards: int):
    """A build_model whose network outputs NaN from its (n+1)-th training forward on."""
    def build(name, **kw):
        model = tiny_net(name, **kw)
        seen = [0]

        def hook(module, inputs, output):
            if module.training:
                seen[0] += 1
                if seen[0] > n_forwards:
                    return output * float("nan")
            return None

        model.register_forward_hook(hook)
        return model
    return build


def test_a_diverged_run_is_recorded_and_never_retried(tmp_path, data, monkeypatch):
    from click.testing import CliRunner

    from labreport.cli import main

    path = write_config(tmp_path / "e.toml", [{"name": "nan"}], epochs=3)
    config = load_config(path)
    store = RunStore(tmp_path / "runs")
    key = config.runs[0].key
    monkeypatch.setattr(train_mod, "build_model", nan_after(2))  # epoch 1 has 2 steps: NaN in epoch 2
    rec = Recorder()
    summary, _ = matrix(config, store, data, observer=rec)
    assert (summary.diverged, summary.trained, summary.failed, summary.exit_code) == (["nan"], [], [], 0)
    res = store.read_result(key)
    assert res["status"] == "diverged" and res["diverged_at_epoch"] == 2
    # NaN logits in fp32: the network's doing, not a precision's range
    assert res["diverged_reason"] == "non-finite loss at epoch 2, step 2; the logits themselves were not finite in fp32"
    assert res["epochs_run"] == 1 and res["best_epoch"] == 1 and res["steps"] == 2
    assert any("diverged" in m for m in rec.messages)
    st = store.state(key)
    assert (st.status, st.leased_by) == ("diverged", None)
    assert not (store.run_dir(key) / "error.json").exists()

    monkeypatch.undo()
    summary = run_matrix(config, store, device="cpu", data_loader=never_load)
    assert (summary.trained, summary.diverged, summary.cached) == ([], [], ["nan"])

    out = CliRunner().invoke(main, ["--config", str(path), "--runs", str(store.root), "status"])
    assert out.exit_code == 0
    assert f"{key}  diverged" in out.output and "1 diverged" in out.output


# --- out of memory -----------------------------------------------------------------------------
@pytest.mark.parametrize("after", [0, 2], ids=["first-step", "second-epoch"])
def test_out_of_memory_falls_back_to_micro_batches(tmp_path, data, monkeypatch, after):
    """A training forward over more than 16 images "runs out of memory" (after `after` forwards)."""
    seen_batches: list[int] = []

    def build(name, **kw):
        model = tiny_net(name, **kw)
        forwards = [0]

        def pre_hook(module, inputs):
            if module.training:
                forwards[0] += 1
                if forwards[0] > after and inputs[0].shape[0] > 16:
                    raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
                seen_batches.append(inputs[0].shape[0])

        model.register_forward_pre_hook(pre_hook)
        return model

    monkeypatch.setattr(train_mod, "build_model", build)
    config = load_config(write_config(tmp_path / "e.toml", [{"name": "oom"}], epochs=2))
    store = RunStore(tmp_path / "runs")
    rec = Recorder()
    summary, _ = matrix(config, store, data, observer=rec)
    assert (summary.trained, summary.failed) == (["oom"], [])
    res = store.read_result(config.runs[0].key)
    assert res["oom_events"] == [{"epoch": after // 2, "micro_batch": 16}]
    assert res["spec"]["batch_size"] == 32  # the effective batch is unchanged
    assert res["steps"] == 64 // 32 * 2
    assert [h["micro_batch"] for h in store.read_history(res["key"])] == ([32, 16] if after else [16, 16])
    assert max(seen_batches[after:]) == 16
    assert any("out of memory" in m and "micro-batch 16" in m for m in rec.messages)


# --- failures ----------------------------------------------------------------------------------
def test_a_failed_run_is_recorded_the_others_train_and_a_rerun_retries_it(tmp_path, data, monkeypatch, tiny):
    config = load_config(write_config(tmp_path / "e.toml", [{"name": "bad", "lr": 2e-3}, {"name": "good"}]))
    store = RunStore(tmp_path / "runs")
    bad_key = config.runs[0].key
    real_train = train_mod.train
    calls: list[str] = []

    def flaky(spec, *a, **k):
        calls.append(spec.key)
        if spec.key == bad_key and calls.count(bad_key) == 1:
            raise RuntimeError("boom")
        return real_train(spec, *a, **k)

    monkeypatch.setattr(train_mod, "train", flaky)
    summary, _ = matrix(config, store, data)
    assert summary.trained == ["good"] and summary.exit_code
    assert [label for label, _ in summary.failed] == ["bad"]
    assert "RuntimeError: boom" in summary.failed[0][1] and "error.json" in summary.failed[0][1]
    st = store.state(bad_key)
    assert (st.status, st.error, st.leased_by) == ("failed", "RuntimeError: boom", None)
    err = read_json(store.run_dir(bad_key) / "error.json")
    assert "Traceback" in err["log"] and "boom" in err["log"]

    summary, _ = matrix(config, store, data)
    assert (summary.trained, summary.cached, summary.failed) == (["bad"], ["good"], [])
    assert calls == [bad_key, config.runs[1].key, bad_key]
    assert store.state(bad_key).status == "done"
    assert not (store.run_dir(bad_key) / "error.json").exists()


def test_a_batch_larger_than_the_training_set_fails_with_a_clear_message(tmp_path, data):
    spec = TrainSpec(**{**TINY, "batch_size": 128})
    store = RunStore(tmp_path / "runs")
    with pytest.raises(ValueError, match="batch_size 128 is larger than the 64 training images"):
        train(spec, prepare(data, spec, torch.device("cpu")), torch.device("cpu"), store)
    assert store.read_result(spec.key) is None


# --- the reported epoch is chosen on validation --------------------------------------------------
def _hist(val, test):
    return [{"epoch": i + 1, "val_acc": v, "test_acc": t, "train_acc": 0.5, "epoch_time_s": 1.0,
             "mem_alloc_mib": None, "mem_reserved_mib": None} for i, (v, t) in enumerate(zip(val, test, strict=True))]


SPEC = TrainSpec(model="resnet20")


def test_best_epoch_is_chosen_on_validation_not_test():
    res = summarize(SPEC, _hist(val=[0.3, 0.6, 0.5], test=[0.31, 0.58, 0.70]), "completed", None)
    assert (res["best_epoch"], res["selected_by"]) == (2, "val_acc")
    assert (res["best_val_acc"], res["test_acc_at_best"], res["final_test_acc"]) == (0.6, 0.58, 0.70)
    assert res["total_time_s"] == 3.0 and res["mean_epoch_time_s"] == 1.0
    assert res["peak_mem_alloc_mib"] is None


def test_ties_on_validation_go_to_the_earliest_epoch():
    res = summarize(SPEC, _hist(val=[0.2, 0.6, 0.6, 0.6], test=[0.2, 0.5, 0.9, 0.7]), "completed", None)
    assert (res["best_epoch"], res["test_acc_at_best"]) == (2, 0.5)


def test_without_validation_the_last_epoch_is_reported():
    res = summarize(SPEC, _hist(val=[None, None, None], test=[0.4, 0.9, 0.6]), "completed", None)
    assert (res["best_epoch"], res["selected_by"], res["test_acc_at_best"]) == (3, "last_epoch", 0.6)
    assert res["best_val_acc"] is None and res["final_val_acc"] is None


def test_summary_of_an_empty_history():
    res = summarize(SPEC, [], "diverged", 1)
    assert (res["epochs_run"], res["best_epoch"], res["test_acc_at_best"], res["diverged_at_epoch"]) == \
        (0, None, None, 1)


# --- the runner's bookkeeping --------------------------------------------------------------------
def test_only_keeps_the_matrix_order_and_the_first_label_of_shared_runs(tmp_path):

    config = load_config(write_config(tmp_path / "e.toml", [{"name": "a"}, {"name": "b", "lr": 2e-3},
                                                            {"name": "c"}]))  # c trains what a trains
    assert [r.label for r in config.select()] == ["a", "b"]
    assert [r.label for r in config.select(("a", "b", "c"))] == ["a", "b"]
    assert [r.label for r in config.select(("c", "b"))] == ["b", "c"]
    with pytest.raises(Exception, match="no experiment named 'd'"):
        config.select(("d",))


def test_the_lease_is_refreshed_during_an_epoch(tmp_path, data, monkeypatch, tiny):
    """An epoch can outlast the lease's stale_after (600 s) on a CPU: the lease must be refreshed
    from the step loop, not only between epochs (here: at every step)."""
    import labreport.engine.runner as runner_mod

    config = load_config(write_config(tmp_path / "e.toml", [{"name": "a"}], epochs=2))  # 2 x 2 steps
    store = RunStore(tmp_path / "runs")
    beats: list[int] = []  # finished epochs at each heartbeat
    rec = Recorder()
    real = RunStore.heartbeat

    def heartbeat(self, key):
        beats.append(len(self.read_history(key)))
        real(self, key)

    monkeypatch.setattr(RunStore, "heartbeat", heartbeat)
    monkeypatch.setattr(runner_mod, "HEARTBEAT_EVERY_S", 0.0)
    assert run_matrix(config, store, device="cpu", data_loader=lambda dataset: data, observer=rec).trained == ["a"]
    # per epoch: a beat after each of the 2 steps and one after the epoch's checkpoint
    assert beats == [0, 0, 1, 1, 1, 2]
    assert len(rec.epochs) == 2  # the user's observer still hears everything


def test_a_run_leased_by_a_live_worker_is_skipped(tmp_path, data, tiny):
    config = load_config(write_config(tmp_path / "e.toml", [{"name": "busy"}, {"name": "free", "lr": 2e-3}]))
    store = RunStore(tmp_path / "runs")
    busy_key = config.runs[0].key
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        store.run_dir(busy_key).mkdir(parents=True)
        lease = {"host": socket.gethostname(), "pid": worker.pid, "since": "now", "heartbeat": time.time()}
        (store.run_dir(busy_key) / "lease.json").write_text(json.dumps(lease))
        summary, _ = matrix(config, store, data)
        assert (summary.busy, summary.trained, summary.failed) == (["busy"], ["free"], [])
        st = store.state(busy_key)
        assert (st.status, st.leased_by["pid"]) == ("partial", worker.pid)  # its lease is untouched
    finally:
        worker.kill()
        worker.wait()
    summary, _ = matrix(config, store, data)  # the worker died without finishing: taken over
    assert (summary.trained, summary.cached) == (["busy"], ["free"])
    assert store.state(busy_key).leased_by is None


def test_without_a_validation_split_the_last_epoch_is_reported(tmp_path, data, tiny):
    config = load_config(write_config(tmp_path / "e.toml", [{"name": "noval"}], epochs=2, val_size=0))
    store = RunStore(tmp_path / "runs")
    assert matrix(config, store, data)[0].trained == ["noval"]
    res = store.read_result(config.runs[0].key)
    assert (res["selected_by"], res["best_epoch"], res["best_val_acc"], res["n_val"]) == ("last_epoch", 2, None, 0)
    assert res["test_acc_at_best"] == store.read_history(res["key"])[-1]["test_acc"]


def test_the_result_keeps_the_test_predictions_of_the_epoch_chosen_on_validation(reference):
    """The per-image predictions are those of the chosen epoch: scored against the stored labels they
    give exactly test_acc_at_best (the epoch's own accuracy), one digit per test image."""
    _, _, res, _ = reference
    preds, labels = res["test_predictions"], res["test_labels"]
    assert len(preds) == len(labels) == res["n_test"] == 32
    assert set(preds) <= set("0123456789") and set(labels) <= set("0123456789")
    acc = sum(p == t for p, t in zip(preds, labels)) / len(labels)
    assert acc == res["test_acc_at_best"]


# --- torch.compile / CUDA graphs ([run] compile) -----------------------------------------------
@pytest.mark.slow
def test_compiled_training_agrees_with_eager(tmp_path, data, tiny):
    """[run] compile = "reduce-overhead" trains through torch.compile (inductor; on a GPU with CUDA
    graphs, which a CPU declines) and agrees with eager over 2 epochs of 4 Adam steps, within:
    - rel 1e-5 for the training loss and gradient norm (measured: 3e-8 and 2e-7; inductor fuses and
      reorders floating-point operations, so not bit-identical);
    - rel 1e-3 for validation and test losses (measured: 1e-4). The conv bias before BatchNorm has
      a true gradient of zero, so its gradient is rounding noise, which Adam turns into full steps
      of lr x sign: the bias differs by ~2% between the two, BatchNorm cancels it in training but
      its running mean, an average over 8 steps, only in part in evaluation.
    No dropout: inductor draws its own random numbers. One compile of the one-conv network
    (~20 s on 2 cores; seconds when inductor's on-disk cache has it)."""
    results = {}
    for setting in (False, "reduce-overhead"):
        cfg = load_config(write_config(tmp_path / f"{setting}.toml", [{"name": "c"}], epochs=2, dropout=0.0,
                                       train_subset=128, val_size=64))
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, compile=setting))  # how it runs: not in the key
        store = RunStore(tmp_path / f"runs-{setting}")
        assert matrix(cfg, store, data)[0].trained == ["c"]
        results[setting] = store.read_result(cfg.runs[0].key), store.read_history(cfg.runs[0].key)
    assert len({res["key"] for res, _ in results.values()}) == 1
    (eager, eager_hist), (compiled, compiled_hist) = results[False], results["reduce-overhead"]
    for field, rel in (("train_loss", 1e-5), ("grad_norm_mean", 1e-5), ("val_loss", 1e-3), ("test_loss", 1e-3)):
        assert [h[field] for h in compiled_hist] == pytest.approx([h[field] for h in eager_hist], rel=rel), field
    # (accuracies are not compared: this near-chance network has near-ties between classes, and a
    # 1e-4 change of the logits moves an image or two of 64 across them)
    assert compiled["steps"] == eager["steps"] == 8
    prov = compiled["provenance"]
    assert (prov["compile"], prov["cuda_graphs"]) == ("reduce-overhead", False)  # no CUDA graphs on a CPU
    assert prov["cudagraph_skips"] is None or prov["cudagraph_skips"] >= 1  # inductor counted that it declined
    assert (eager["provenance"]["compile"], eager["provenance"]["cudagraph_skips"]) == (False, None)


@pytest.mark.parametrize("setting, mode", [(False, None), (True, "default"), ("reduce-overhead", "reduce-overhead")])
def test_compile_setting_to_torch_compile_mode(setting, mode):
    assert device_mod.compile_mode(setting) == mode


@pytest.mark.parametrize("value, ok", [("false", False), ("true", True), ('"reduce-overhead"', "reduce-overhead"),
                                       ('"max-autotune"', None), ("1", None), ('"true"', None)])
def test_run_compile_takes_false_true_or_reduce_overhead(tmp_path, value, ok):
    from labreport.errors import ConfigError

    path = tmp_path / "e.toml"
    path.write_text(f'[run]\ncompile = {value}\n[[experiment]]\nname = "a"\nmodel = "resnet20"\n')
    if ok is None:
        with pytest.raises(ConfigError, match=r"\[run\]: 'compile' must be one of false, true, \"reduce-overhead\""):
            load_config(path)
    else:
        config = load_config(path)
        assert config.run.compile == ok and type(config.run.compile) is type(ok)


def test_device_identity_is_what_results_record():
    """run --dry-run matches finished runs on (provenance.device_type, provenance.device)."""
    assert device_mod.device_identity("cpu") == ("cpu", None)
    with pytest.raises(LabreportError, match="unknown device"):
        device_mod.device_identity("tpu:0")


def test_run_starts_by_saying_where_it_trains_and_in_what_precision():
    line = device_mod.summary_line
    assert line("cuda", "Tesla T4", (7, 5), 2, False) == (
        "training on Tesla T4 (CUDA, compute capability 7.5); precision auto = fp16, BN-less runs fp32; eager")
    assert line("cuda", "NVIDIA H100 80GB HBM3", (9, 0), 16, "reduce-overhead") == (
        "training on NVIDIA H100 80GB HBM3 (CUDA, compute capability 9.0); precision auto = bf16; "
        "compiled with CUDA graphs")
    assert line("cpu", "cpu", None, 2, True) == (
        "training on the CPU (2 threads); precision auto = fp32; compiled (default)")
    assert line("cpu", "x86_64", None, 1, "reduce-overhead").endswith("(x86_64, 1 thread); precision auto = fp32; "
                                                                      "compiled (CUDA graphs need a GPU)")
