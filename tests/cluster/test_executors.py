"""labreport.cluster.executors: every executor chosen by name and driven through the same calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labreport.cluster import executors
from labreport.config import load_config
from labreport.errors import LabreportError
from labreport.store import RunStore

TOML = """
[data]
root = "{data}"
download = false
[defaults]
epochs = 1
batch_size = 32
lr = 1e-3
val_size = 32
train_subset = 64
test_subset = 32
deterministic = true
[run]
threads = 1
[gradflow]
enabled = false
[executor]
gpus_per_task = 0
cpus_per_task = 1
[[experiment]]
name = "small"
model = "cifarnet"
dropout = [0.0, 0.1]
"""


class Lines:
    """A Console that keeps what it was given."""

    def __init__(self):
        self.out: list[str] = []
        self.err: list[str] = []

    def console(self) -> executors.Console:
        return executors.Console(out=self.out.append, err=self.err.append)


@pytest.fixture(scope="module")
def config(tmp_path_factory, cifar_dir):
    path = tmp_path_factory.mktemp("executors") / "experiments.toml"
    path.write_text(TOML.format(data=cifar_dir))
    return load_config(path)


@pytest.fixture(scope="module")
def reference(config) -> RunStore:
    """The matrix trained in this process, once per test process."""
    store = RunStore(config.base_dir / "reference")
    assert executors.run(executors.get("local"), executors.Request(config, store), Lines().console()).exit_code == 0
    return store


def test_executors_are_chosen_by_name_with_the_options_they_take_and_refuse_others():
    assert set(executors.EXECUTORS) == {"local", "processes", "slurm", "submitit-local"}
    local = executors.get("local")
    procs = executors.get("processes", jobs=3, gpus=["0", "1"], fail_fast=True)
    slurm = executors.get("slurm", partition="gpu", time_min=30)
    assert type(local).__name__ == "Local"
    assert (procs.jobs, procs.gpus, procs.fail_fast) == (3, ["0", "1"], True)
    assert (slurm.partition, slurm.time_min) == ("gpu", 30)
    with pytest.raises(LabreportError, match=r"^executor 'local' does not take partition \(it takes no options\)$"):
        executors.get("local", partition="gpu")
    with pytest.raises(LabreportError, match=r"^executor 'processes' does not take time_min \(it takes jobs, gpus, "
                                             r"fail_fast\)$"):
        executors.get("processes", jobs=2, time_min=5)
    assert executors.get("submitit-local").name == "submitit-local"
    with pytest.raises(LabreportError, match=r"unknown executor 'pbs' \(executors: local, processes, slurm, "
                                             r"submitit-local\)"):
        executors.get("pbs")


def test_exit_codes_follow_the_outcome():
    assert executors.Outcome(trained=["a"], cached=["b"]).exit_code == 0
    assert executors.Outcome(failed=[("a", "boom")]).exit_code == 1
    assert executors.Outcome(crashed=[(0, -9, Path("w0.log"))]).exit_code == 1
    assert executors.Outcome(failed=[("a", "boom")], interrupted=True).exit_code == 130


def test_describe_says_what_each_executor_would_start(config, tmp_path):
    pytest.importorskip("submitit")
    store = RunStore(tmp_path / "runs")
    runs = config.select()
    assert executors.get("local").describe(config, store, runs) == []
    assert executors.get("processes", jobs=2).describe(config, store, runs) == [
        f"would start 2 worker processes here, 1 torch thread(s) each; logs in {store.root / '.workers'}"]
    lines = executors.get("slurm", time_min=30).describe(config, store, runs)
    assert lines[0] == "would submit 2 run(s) to slurm as one job array, one task per run (1 torch thread(s) each); " \
                       "sbatch parameters:"
    assert ("  #SBATCH --array=0-1%2" in lines and "  #SBATCH --time=30" in lines
            and "  #SBATCH --cpus-per-task=1" in lines)
    assert not any("gpus" in line for line in lines)  # gpus_per_task = 0: no GPU asked for
    assert not store.root.exists()  # nothing written, nothing submitted


def test_run_hands_the_request_to_the_executor_and_returns_its_exit_code(config, tmp_path):
    seen = []

    class Recorder(executors.Executor):
        name = "recorder"

        def execute(self, req, console):
            seen.append(req)
            console.out("done")
            return executors.Outcome(failed=[("small", "boom")])

    lines = Lines()
    req = executors.Request(config, RunStore(tmp_path / "runs"), only=("small",), device="cpu", wait=True, threads=2)
    assert executors.run(Recorder(), req, lines.console()).exit_code == 1 and lines.out == ["done"]
    assert [(r.only, r.device, r.wait, r.threads) for r in seen] == [(("small",), "cpu", True, 2)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["local", "processes", "submitit-local"])
def test_each_executor_trains_the_matrix_through_the_same_call(name, config, reference, tmp_path):
    """The same two calls for every executor, and the results of one run in this process."""
    if name == "submitit-local":
        pytest.importorskip("submitit")
    store, lines = RunStore(tmp_path / name), Lines()
    ex = executors.get(name, **({"jobs": 2} if name == "processes" else {}))
    code = executors.run(ex, executors.Request(config, store, wait=True), lines.console()).exit_code
    assert code == 0, lines.out + lines.err
    assert lines.out[-1] == f"2 trained, 0 cached, 0 diverged, 0 failed  (store: {store.root})"
    for run in config.select():
        got, want = store.read_result(run.key), reference.read_result(run.key)
        assert got["test_acc_at_best"] == want["test_acc_at_best"]
        history = json.loads((store.run_dir(run.key) / "history.json").read_text())
        reference_history = json.loads((reference.run_dir(run.key) / "history.json").read_text())
        assert [h["train_loss"] for h in history] == [h["train_loss"] for h in reference_history]

    again = Lines()  # a second call finds everything done, whatever the executor
    assert executors.run(ex, executors.Request(config, store, wait=True), again.console()).exit_code == 0
    assert any("2 cached" in line or "2 run(s) already done" in line for line in again.out), again.out
