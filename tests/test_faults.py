"""Fault injection: kill -9 at named points, damaged run folders, full disks, failing builds.

The kill sweep starts real `labreport run` processes that SIGKILL themselves at the n-th pass
through a named site (the LABREPORT_FAULT_AT test hook, labreport/faults.py): deterministic kill
points, not random sleeps. Each chain kills one process after another in the same run store, then
runs `labreport run` without the hook until it exits 0; the runs must end exactly as an
uninterrupted run does.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from labreport.cli import main
from labreport.config import load_config
from labreport.report.study import collect
from labreport.store import RunStore
from procs import tiny_toml

TOML = tiny_toml("{data}", epochs=3) + """[[experiment]]
name = "small"
model = "cifarnet"
dropout = [0.0, 0.1]
"""

TIMING = ("train_time_s", "epoch_time_s", "images_per_s")  # the only fields two identical runs may differ in


def write_config(path: Path, cifar_dir: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "experiments.toml"
    cfg.write_text(TOML.format(data=cifar_dir))
    return cfg


def run_cli(cfg: Path, runs: Path, fault: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LABREPORT_FAULT_AT"}
    env["OMP_NUM_THREADS"] = "1"  # 2 cores, several processes at once
    if fault:
        env["LABREPORT_FAULT_AT"] = fault
    return subprocess.run([sys.executable, "-m", "labreport", "--config", str(cfg), "--runs", str(runs), "run"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def history_without_timing(hist: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in hist]


def final_weights(run_dir: Path) -> dict:
    import torch

    return torch.load(run_dir / "ckpt.pt", map_location="cpu", weights_only=True)["model"]


# Kill chains: in one run store, each process is killed at its kill point (counted from its own
# start), the next one resumes what the last left. 2 runs (A, B) x 3 epochs x 4 steps; per run a
# fresh process writes atomically: spec, (ckpt, history, metrics.csv, lease heartbeat) x 3 epochs,
# history, metrics.csv, result.
CHAINS = {
    "a": ["runner.start:1",       # start-up, before the data set is loaded
          "runner.acquired:1",    # A claimed, nothing written
          "write.open:1",         # A's spec.json temp file empty
          "train.step:2",         # mid epoch 1 of A
          "write.synced:2",       # A's epoch-1 checkpoint written to its temp file, not renamed
          "ckpt.rotated:2",       # A's epoch-2 checkpoint: ckpt.pt rotated away, the new one not written
          "write.renamed:12",     # A's result.json renamed, folder not fsynced, lease not released
          "train.step:4",         # A done; last step of B's epoch 1, before evaluation
          "write.renamed:2",      # B's epoch-1 checkpoint in place, history.json not yet
          "write.renamed:3",      # B's epoch-2 history in place, its metrics.csv and the heartbeat not
          "train.step:3"],        # mid epoch 3 of B
    "b": ["write.renamed:1",      # A's spec.json in place
          "train.step:6",         # mid epoch 2 of A (epoch 1 checkpointed)
          "write.open:5",         # A's lease heartbeat after epoch 2, its temp file empty
          "write.synced:2",       # A's epoch-3 checkpoint in its temp file, ckpt.pt rotated away
          "result.before:1",      # A trained, its result not written
          "write.synced:4",       # A's result.json fully in its temp file, not renamed
          "write.open:4",         # A's result.json temp file empty
          "runner.acquired:2",    # A done; B claimed
          "ckpt.rotated:3",       # B's epoch-3 checkpoint rotation
          "write.renamed:8"],     # B's result.json renamed (lease and ckpt.prev.pt not cleaned up)
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cifar_dir):
    """An uninterrupted `labreport run` of the same matrix (started in the background: the sweep
    runs its chains meanwhile)."""
    root = tmp_path_factory.mktemp("reference")
    cfg = write_config(root, cifar_dir)
    pool = ThreadPoolExecutor(1)
    fut = pool.submit(run_cli, cfg, root / "runs")

    def get():
        proc = fut.result()
        assert proc.returncode == 0, proc.stdout
        return root / "runs"

    yield get
    pool.shutdown()




@pytest.mark.slow
def test_kill_9_sweep_resumes_every_run_exactly(tmp_path, cifar_dir, reference):
    assert sum(len(c) for c in CHAINS.values()) >= 20

    def chain(name: str) -> tuple[Path, list[str]]:
        cfg = write_config(tmp_path / name, cifar_dir)
        runs = tmp_path / name / "runs"
        log = []
        for point in CHAINS[name]:
            proc = run_cli(cfg, runs, fault=point)
            log.append(f"--- {point}: rc {proc.returncode}\n{proc.stdout}")
            assert proc.returncode == -signal.SIGKILL, (f"chain {name}: kill point {point} not reached\n"
                                                        + "\n".join(log))
        for _ in range(3):  # then without the hook until it exits 0
            proc = run_cli(cfg, runs)
            log.append(f"--- clean: rc {proc.returncode}\n{proc.stdout}")
            if proc.returncode == 0:
                tidy = run_cli(cfg, runs)  # nothing to train: it only clears what the kills left
                assert tidy.returncode == 0 and "0 trained, 2 cached" in tidy.stdout, tidy.stdout
                return runs, log
        raise AssertionError(f"chain {name} never finished\n" + "\n".join(log))

    with ThreadPoolExecutor(len(CHAINS)) as pool:
        outcomes = dict(zip(CHAINS, pool.map(chain, CHAINS)))
    ref = reference()
    keys = sorted(r.key for r in load_config(write_config(tmp_path / "x", cifar_dir)).runs)
    ref_store = RunStore(ref)
    for name, (runs, log) in outcomes.items():
        store = RunStore(runs)
        assert store.keys() == keys, (name, store.keys())  # no run lost, none extra
        for key in keys:
            d, r = runs / key, ref / key
            res, want = store.read_result(key), ref_store.read_result(key)
            assert res is not None and res["status"] == "completed" and res["epochs_run"] == 3, (name, key)
            assert res["test_acc_at_best"] == want["test_acc_at_best"], (name, key, log)
            assert res["best_epoch"] == want["best_epoch"] and res["steps"] == want["steps"]
            hist = store.read_history(key)
            assert ([h["train_loss"] for h in hist]
                    == [h["train_loss"] for h in ref_store.read_history(key)]), (name, key)
            assert history_without_timing(hist) == history_without_timing(ref_store.read_history(key))
            got, exp = final_weights(d), final_weights(r)
            assert got.keys() == exp.keys() and all(got[k].equal(exp[k]) for k in exp), (name, key)
            # what the killed processes left (temp files, a dead lease and the previous checkpoint when
            # a kill came after the result) is gone after one more `labreport run`: a finished run's
            # folder holds exactly what an uninterrupted run's does
            names = {p.name for p in d.iterdir()}
            assert names == {p.name for p in r.iterdir()} == {"spec.json", "history.json", "metrics.csv",
                                                              "ckpt.pt", "result.json"}, (name, key, names)
            assert store.state(key).status == "done"


# --- damaged run folders, stale leases, a full disk: the run level ---------------------------------
@pytest.fixture
def finished(tmp_path, cifar_dir, reference):
    """A copy of the reference store (both runs done): (cfg, runs, key of A, key of B)."""
    cfg = write_config(tmp_path, cifar_dir)
    runs = tmp_path / "runs"
    shutil.copytree(reference(), runs)
    a, b = (r.key for r in load_config(cfg).runs)
    return cfg, runs, a, b


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def cli_run(cfg: Path, runs: Path):
    return CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(runs), "run"])


def assert_like_reference(runs: Path, ref: Path, key: str) -> None:
    store, want = RunStore(runs), RunStore(ref)
    res = store.read_result(key)
    assert res is not None and res["status"] == "completed"
    assert res["test_acc_at_best"] == want.read_result(key)["test_acc_at_best"]
    assert history_without_timing(store.read_history(key)) == history_without_timing(want.read_history(key))
    got, exp = final_weights(runs / key), final_weights(ref / key)
    assert all(got[k].equal(exp[k]) for k in exp)
    assert not (runs / key / "lease.json").exists() and not (runs / key / "error.json").exists()


DAMAGE = {"truncated": lambda b: b[: len(b) // 2], "empty": lambda b: b"", "garbage": lambda b: b"\x00\xffnot json{",
          "not-a-result": lambda b: b'{"key": "x"}\n'}


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_result_is_not_a_result_and_the_run_is_redone(finished, reference, how):
    cfg, runs, a, b = finished
    path = runs / a / "result.json"
    path.write_bytes(DAMAGE[how](path.read_bytes()))
    other = snapshot(runs / b)
    status = CliRunner().invoke(main, ["--config", str(cfg), "--runs", str(runs), "status"])
    assert "partial" in status.output, status.output  # never counted as done
    out = cli_run(cfg, runs)
    assert out.exit_code == 0, out.output
    assert "result.json is damaged" in out.output and "1 trained, 1 cached" in out.output
    assert_like_reference(runs, reference(), a)
    assert snapshot(runs / b) == other


@pytest.mark.parametrize("damaged", ["history.json", "spec.json"])
@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_an_unfinished_run_with_a_damaged_history_or_spec_resumes(finished, reference, damaged, how):
    cfg, runs, a, b = finished
    (runs / a / "result.json").unlink()  # killed after its last checkpoint
    path = runs / a / damaged
    path.write_bytes(DAMAGE[how](path.read_bytes()))
    other = snapshot(runs / b)
    out = cli_run(cfg, runs)
    assert out.exit_code == 0 and "resuming after epoch 3" in out.output, out.output
    assert_like_reference(runs, reference(), a)
    assert json.loads((runs / a / "spec.json").read_text())["key"] == a
    assert snapshot(runs / b) == other


@pytest.mark.parametrize("missing", [("result.json", "ckpt.pt"), ("result.json", "ckpt.pt", "history.json"),
                                     ("result.json", "history.json", "spec.json"), ("spec.json", "history.json")])
def test_a_run_folder_with_files_missing(finished, reference, missing):
    cfg, runs, a, b = finished
    for name in missing:
        (runs / a / name).unlink()
    other = snapshot(runs / b)
    out = cli_run(cfg, runs)
    assert out.exit_code == 0, out.output
    if "result.json" in missing:  # retrained from scratch, or resumed from the checkpoint
        assert ("resuming after epoch 3" in out.output) == ("ckpt.pt" not in missing), out.output
        assert "1 trained, 1 cached" in out.output
    else:  # a valid result is the run; what is lost beside it is reported by build
        assert "0 trained, 2 cached" in out.output
        problems = next(v for v in collect(load_config(cfg), RunStore(runs)) if v.key == a).problems
        assert any("history.json is missing or unreadable" in p for p in problems)
        return
    assert_like_reference(runs, reference(), a)
    assert snapshot(runs / b) == other


def test_a_stale_lease_is_taken_over(finished, reference):
    cfg, runs, a, b = finished
    (runs / a / "result.json").unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is gone
    lease = {"host": __import__("socket").gethostname(), "pid": dead.pid, "since": "x", "heartbeat": 0}
    (runs / a / "lease.json").write_text(json.dumps(lease))
    other = snapshot(runs / b)
    out = cli_run(cfg, runs)
    assert out.exit_code == 0 and "1 trained" in out.output, out.output
    assert_like_reference(runs, reference(), a)
    assert snapshot(runs / b) == other


@pytest.fixture
def full_disk(monkeypatch):
    """disk_full(folder, names): atomic writes of those file names in that folder fail with ENOSPC
    mid-write (half the bytes written) until the returned 'free' function is called."""
    import labreport.store as store_mod

    real_fdopen = os.fdopen
    full: dict = {}

    class Failing:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if target.parent == full.get("dir") and any(target.name.startswith(f".{n}.") for n in full["names"]):
            return Failing(f)
        return f

    monkeypatch.setattr(store_mod.os, "fdopen", fdopen)

    def disk_full(folder: Path, names: tuple[str, ...]):
        full.update(dir=folder.resolve(), names=names)
        return full.clear

    return disk_full


@pytest.mark.parametrize("names", [("result.json",), ("ckpt.pt",), ("spec.json", "error.json", "result.json")])
def test_a_full_disk_fails_the_run_clearly_and_a_rerun_finishes_it(finished, reference, full_disk, names):
    cfg, runs, a, b = finished
    (runs / a / "result.json").unlink()
    (runs / a / "ckpt.pt").unlink()  # retrained: every file is written again
    other = snapshot(runs / b)
    free = full_disk(runs / a, names)
    out = cli_run(cfg, runs)
    assert out.exit_code == 1, out.output
    assert "No space left on device" in out.output and "1 failed" in out.output, out.output
    assert RunStore(runs).read_result(a) is None  # the half-written file is never a result
    assert not (runs / a / "result.json").exists()
    assert not [p for p in (runs / a).iterdir() if p.name.endswith(".tmp")]  # the writer cleaned up
    if "error.json" in names:  # the failure could not even be recorded: still said, the matrix goes on
        assert "error.json not written either" in out.output
    assert snapshot(runs / b) == other
    free()
    out = cli_run(cfg, runs)
    assert out.exit_code == 0 and "1 trained, 1 cached" in out.output, out.output
    assert_like_reference(runs, reference(), a)
    assert snapshot(runs / b) == other


# --- build faults ------------------------------------------------------------------------------
def test_build_reads_a_run_being_written_and_a_failed_build_keeps_the_previous_report(finished, monkeypatch):
    from labreport.report import word as docx_writer
    from labreport.report import figures
    from labreport.report import pdf
    from labreport.report import build as report

    cfg, runs, a, b = finished
    d = runs / b  # B as a worker leaves it mid-write: its result half in a temp file, no result yet
    result = (d / "result.json").read_bytes()
    (d / "result.json").unlink()
    (d / f".result.json.{os.getpid()}.tmp").write_bytes(result[: len(result) // 2])
    (d / ".history.json.1.tmp").write_bytes(b"")
    (d / "ckpt.pt").write_bytes((d / "ckpt.pt").read_bytes()[:100])
    (d / "lease.json").write_text(json.dumps({"host": "h", "pid": 1, "since": "x", "heartbeat": 1e12}))
    config, store = load_config(cfg), RunStore(runs)
    out = cfg.parent / "report.pdf"
    built = report.build(config, store, out)
    summary_path = built.summary
    s = json.loads(summary_path.read_text())
    assert s["counts"]["done"] == 1 and s["counts"]["partial"] == 1, s["counts"]
    keys_done = [k for t in s["tasks"] for g in t["groups"] for k in g["keys"]]
    assert a in keys_done and b in keys_done
    views = {v.key: v for v in collect(config, store)}
    assert views[a].status == "done" and views[b].status == "partial" and views[b].result is None
    pdf_bytes, summ = out.read_bytes(), summary_path.read_bytes()
    assets = {p.name: p.read_bytes() for p in summary_path.parent.iterdir()}  # figures + summary.json
    assert any(n.endswith(".svg") for n in assets) and any(n.endswith(".png") for n in assets)

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    for target, name in ((figures, "curves"), (figures, "resources_chart"), (report, "render_html"),
                         (pdf, "pdf_bytes"), (docx_writer, "docx_bytes")):
        (d / "result.json").write_bytes(result)  # the worker has finished meanwhile: the new build differs
        with monkeypatch.context() as m:
            m.setattr(target, name, boom)
            with pytest.raises(RuntimeError, match="boom"):  # the PDF and the DOCX are written together
                report.build(config, store, [out, out.with_suffix(".docx")])
        assert out.read_bytes() == pdf_bytes and summary_path.read_bytes() == summ, name
        assert not out.with_suffix(".docx").exists(), name
        # the figures too: the new ones are drawn in a staging folder, published only after the PDF
        assert {p.name: p.read_bytes() for p in summary_path.parent.iterdir()} == assets, name
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".report_files")]
    report.build(config, store, out)  # and a build that succeeds replaces them all
    assert out.read_bytes() != pdf_bytes and summary_path.read_bytes() != summ
