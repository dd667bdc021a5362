"""The `labreport` command, driven through click's CliRunner (one test through `python -m`)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from labreport.cluster import eta
from labreport.cli import main

TINY = """
[report]
title = "CLI test"

[data]
root = "{root}"
download = false

[defaults]
epochs = 1
batch_size = 32
train_subset = 64
val_size = 32
test_subset = 32
lr = 1e-3

[[experiment]]
name = "small"
model = "cifarnet"

[[experiment]]
name = "grid"
model = "cifarnet"
lr = [2e-3, 3e-3]
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("LABREPORT_DATA", "LABREPORT_RUNS"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def toml(tmp_path, cifar_dir) -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(TINY.format(root=cifar_dir))
    return path


def cli(config: Path, runs: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), "--runs", str(runs), *args])


def test_every_command_has_help_with_an_example():
    runner = CliRunner()
    assert set(main.commands) >= {"plan", "run", "status", "models"}
    for args in ([], *([name] for name in main.commands)):
        res = runner.invoke(main, [*args, "--help"])
        assert res.exit_code == 0, args
        assert "Example" in res.output and "Usage:" in res.output, args


def test_python_dash_m_labreport_help():
    proc = subprocess.run([sys.executable, "-m", "labreport", "--help"], capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: labreport") and "Example" in proc.stdout
    for command in ("plan", "run", "status", "models"):
        assert command in proc.stdout


def test_plan_lists_every_run(toml, tmp_path):
    res = cli(toml, tmp_path / "runs", "plan")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("small: cifarnet, 1 run(s), 1 epochs, adam lr=0.001, batch 32")
    assert any(line.startswith("grid: cifarnet, 2 run(s)") for line in lines)
    assert any("missing" in line and "lr=0.002" in line for line in lines)
    assert lines[-1] == "3 runs (3 distinct)"

    res = cli(toml, tmp_path / "runs", "plan", "--json")
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    assert [r["experiment"] for r in rows] == ["small", "grid", "grid"]
    assert [r["varying"] for r in rows] == [{}, {"lr": 0.002}, {"lr": 0.003}]
    assert {r["status"] for r in rows} == {"missing"}
    assert all(len(r["key"]) == 16 for r in rows) and len({r["key"] for r in rows}) == 3
    assert rows[0]["spec"]["model"] == "cifarnet" and rows[0]["epochs"] == 1


def test_run_dry_run_trains_nothing(toml, tmp_path):
    runs = tmp_path / "runs"
    res = cli(toml, runs, "run", "--dry-run")
    assert res.exit_code == 0, res.output
    would = [line for line in res.output.splitlines() if line.startswith("would train")]
    assert len(would) == 3 and all("missing" in line for line in would)
    assert res.stdout.splitlines()[-1] == "3 to train, 0 already done"
    # on an empty store the one setting of the matrix (cifarnet, batch 32) is timed here, and only that is kept
    assert res.stdout.splitlines()[-2].startswith("estimate: ~")
    assert all(line.split()[4].startswith("~") for line in would)
    timed = [line for line in res.stdout.splitlines() if "img/s training" in line]
    assert len(timed) == 1 and timed[0].lstrip().startswith("cifarnet, norm batch, batch 32, fp32")
    assert "timing 1 setting(s) on" in res.stderr
    assert [p.name for p in runs.iterdir()] == [".speeds.json"]

    res = cli(toml, runs, "run", "--dry-run", "--only", "grid")
    assert res.output.splitlines()[-1] == "2 to train, 0 already done"


def test_a_long_run_on_a_cpu_asks_first_in_a_terminal_and_names_the_preview(tmp_path, cifar_dir, monkeypatch):
    import labreport.cli as cli_mod

    toml = tmp_path / "experiments.toml"
    toml.write_text(TINY.format(root=cifar_dir) + "[profile.smoke]\nexperiments = [\"small\"]\n")
    runs = tmp_path / "runs"
    monkeypatch.setattr(cli_mod, "LONG_RUN_S", 0.01)  # every run counts as long
    monkeypatch.setattr(cli_mod, "_interactive", lambda: True)

    def run(*args, answer=""):
        return CliRunner().invoke(main, ["--config", str(toml), "--runs", str(runs), "run", "--device", "cpu", *args],
                                  input=answer)

    res = run(answer="n\n")
    assert res.exit_code == 0, res.output
    assert "this trains 3 run(s) on this CPU for about" in res.stderr
    assert "`labreport run --profile smoke` previews the whole lab in about" in res.stderr
    assert "train now? [y/N]" in res.stderr and "nothing trained" in res.stderr
    assert not list(runs.glob("*/result.json"))
    res = run("--only", "small", answer="y\n")
    assert res.exit_code == 0 and "1 trained" in res.stdout
    res = run("--yes")  # asked nothing
    assert res.exit_code == 0 and "train now?" not in res.stderr and "2 trained" in res.stdout
    monkeypatch.setattr(cli_mod, "_interactive", lambda: False)  # a script, a notebook, a batch job: no question
    assert "train now?" not in run().stderr


def test_build_status_and_export_after_a_profile_run_read_that_profile_and_say_so(tmp_path, cifar_dir):
    toml = tmp_path / "experiments.toml"
    toml.write_text(TINY.format(root=cifar_dir) + "[profile.quick]\nexperiments = [\"small\"]\nlr = 2e-2\n")
    runs = tmp_path / "runs"
    assert cli(toml, runs, "run", "--profile", "quick").exit_code == 0
    quick_key = json.loads(cli(toml, runs, "plan", "--profile", "quick", "--json").stdout)[0]["key"]
    note = (f"warning: {runs} holds none of the 3 run(s) of this matrix; reading profile 'quick' of the last "
            "`labreport run` there (`--profile quick`; pass --profile to choose)")
    status = cli(toml, runs, "status")
    assert note in status.stderr and status.stdout.startswith(f"{quick_key}  done")
    export = cli(toml, runs, "export")
    assert note in export.stderr and export.stdout.count("\n") == 2 and ",done," in export.stdout
    build = cli(toml, runs, "build", "--out", str(tmp_path / "r.docx"))
    assert build.exit_code == 0 and note in build.stderr and "(1 done, 0 diverged, 0 not finished)" in build.stdout
    (runs / ".last-run.json").unlink()  # a store from elsewhere: the profile whose runs it holds
    assert "reading profile 'quick' whose runs it holds" in cli(toml, runs, "status").stderr
    assert "holds none" not in cli(toml, runs, "status", "--profile", "quick").stderr  # asked for: no note
    plain = cli(toml, runs, "status", "--set", "epochs=1")
    assert "holds none" not in plain.stderr and plain.stdout.splitlines()[-1].startswith("3 missing")
    assert cli(toml, runs, "run", "--only", "small").exit_code == 0  # the matrix's own run: read as it is
    assert "holds none" not in cli(toml, runs, "status").stderr


def test_run_then_run_again_then_status(toml, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    res = cli(toml, runs, "run", "--only", "small", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert f"1 trained, 0 cached, 0 diverged, 0 failed  (store: {runs})" in res.stdout
    assert "Train Epoch: 1/1" in res.stderr  # one log line per epoch, off a terminal
    assert "training on the CPU (" in res.stderr and "precision auto = fp32; eager" in res.stderr
    assert len(list(runs.glob("*/result.json"))) == 1

    with monkeypatch.context() as m:  # nothing to do: no data loaded (a load would fail: no data there)
        m.setenv("LABREPORT_DATA", str(tmp_path / "no-data-here"))
        res = cli(toml, runs, "run", "--only", "small")
    assert res.exit_code == 0, res.output
    assert "0 trained, 1 cached, 0 diverged, 0 failed" in res.stdout and "training on" not in res.output

    res = cli(toml, runs, "run", "--dry-run")
    assert res.output.splitlines()[-1] == "2 to train, 1 already done"
    # each run left is estimated from the finished one (same model, same data sizes: its own epoch time)
    done = json.loads(next(runs.glob("*/result.json")).read_text())
    would = [line for line in res.output.splitlines() if line.startswith("would train")]
    assert len(would) == 2 and all(f' ~{eta.duration(done["mean_epoch_time_s"])}  grid[' in line for line in would)
    assert res.stdout.splitlines()[-2].startswith("estimate: ~") and "1 finished cpu run(s)" in res.stdout
    assert "img/s training" not in res.stdout  # finished runs of that model here: nothing timed

    res = cli(toml, runs, "status")
    assert res.exit_code == 0
    small = [line for line in res.stdout.splitlines() if line.endswith("  small")]
    assert len(small) == 1 and "  done  " in small[0]
    assert res.stdout.splitlines()[-1] == f"1 done, 2 missing  (store: {runs})"

    rows = json.loads(cli(toml, runs, "status", "--json").stdout)
    assert [r["status"] for r in rows] == ["done", "missing", "missing"]
    assert rows[0]["epochs_done"] == 1

    # plan, status and a run with nothing left to do answer without importing torch (~1.5 s)
    code = (f"import sys; from click.testing import CliRunner; from labreport.cli import main\n"
            f"for cmd in (['plan'], ['status'], ['run', '--only', 'small']):\n"
            f"    r = CliRunner().invoke(main, ['--config', {str(toml)!r}, '--runs', {str(runs)!r}, *cmd])\n"
            f"    assert r.exit_code == 0, r.output\n"
            f"print(sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_failing_run_exits_1_and_status_shows_it(tmp_path, cifar_dir):
    toml = tmp_path / "e.toml"
    toml.write_text(TINY.format(root=cifar_dir).replace("batch_size = 32", "batch_size = 128"))  # > 64 images
    runs = tmp_path / "runs"
    res = cli(toml, runs, "run", "--only", "small", "--device", "cpu")
    assert res.exit_code == 1, res.output
    assert "0 trained, 0 cached, 0 diverged, 1 failed" in res.stdout
    assert "FAILED small: ValueError: batch_size 128 is larger than the 64 training images" in res.stderr
    assert "Traceback" not in res.output
    res = cli(toml, runs, "status")
    line = next(line for line in res.stdout.splitlines() if "  small" in line)
    assert "failed" in line and "batch_size 128" in line


BAD_TOMLS = {
    "unknown-key": ("[defaults]\nlrr = 0.1\n[[experiment]]\nname = 'a'\nmodel = 'resnet20'\n", "did you mean 'lr'"),
    "syntax": ("[defaults\n", "TOML syntax error"),
    "unknown-model": ("[[experiment]]\nname = 'a'\nmodel = 'resnet21'\n", "unknown model 'resnet21'"),
}


@pytest.mark.parametrize("case", list(BAD_TOMLS))
@pytest.mark.parametrize("command", [["plan"], ["status"], ["run"], ["run", "--dry-run"]])
def test_a_config_error_is_one_line_and_exit_2(tmp_path, case, command):
    text, expected = BAD_TOMLS[case]
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    res = cli(toml, tmp_path / "runs", *command)
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)  # not an uncaught exception
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {toml}") and expected in lines[0]
    assert "Traceback" not in res.output


def test_a_missing_config_file(tmp_path):
    res = cli(tmp_path / "nope.toml", tmp_path / "runs", "plan")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and "no such file" in res.stderr and len(res.stderr.splitlines()) == 1


@pytest.mark.parametrize("download", [False, True])
def test_missing_data_names_the_data_root(tmp_path, no_download, download):
    (tmp_path / "lab").mkdir()
    toml = tmp_path / "lab" / "e.toml"
    toml.write_text(TINY.format(root="nodata").replace("download = false", f"download = {str(download).lower()}"))
    res = cli(toml, tmp_path / "runs", "run", "--only", "small", "--device", "cpu")
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(tmp_path / "lab" / "nodata") in lines[0]  # [data] root is relative to the TOML's folder
    assert ("download failed" if download else "downloading is off") in lines[0]
    assert len(no_download) == int(download)  # download = false: not even tried
    assert "Traceback" not in res.output


def test_where_the_run_store_is(tmp_path, cifar_dir, monkeypatch):
    (tmp_path / "lab").mkdir()
    toml = tmp_path / "lab" / "e.toml"
    toml.write_text(TINY.format(root=cifar_dir) + '\n[store]\nroot = "myruns"\n')
    monkeypatch.chdir(tmp_path)

    def store_of(*args):
        res = CliRunner().invoke(main, ["--config", str(toml), *args, "status"])
        assert res.exit_code == 0, res.output
        return res.stdout.splitlines()[-1].split("(store: ")[1].rstrip(")")

    assert store_of() == str(tmp_path / "lab" / "myruns")  # relative to the TOML, not the cwd
    monkeypatch.setenv("LABREPORT_RUNS", str(tmp_path / "env"))
    assert store_of() == str(tmp_path / "env")
    assert store_of("--runs", str(tmp_path / "opt")) == str(tmp_path / "opt")


def test_models_lists_the_registry_with_parameter_counts():
    res = CliRunner().invoke(main, ["models"])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.stdout.splitlines() if line.startswith("resnet20 "))
    assert row.split()[1] == "269,722" and "0.27M" in row
    assert any(line.startswith("resnet1202") and "19,421,274" in line for line in res.stdout.splitlines())
    # the counts come from the torch-free catalog: no model (resnet1202: 19M parameters) is built
    code = ("import sys; from click.testing import CliRunner; from labreport.cli import main; "
            "r = CliRunner().invoke(main, ['models']); assert r.exit_code == 0, r.output; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(main, ["models", "--json"]).stdout)}
    assert rows["resnet20"]["params"] == 269_722 and rows["resnet20"]["paper_params_m"] == 0.27
    assert rows["cifarnet"]["params"] == 2_168_554


@pytest.mark.parametrize("device", ["nonsense", "cuda:99"])
def test_an_unusable_device_is_a_usage_error(toml, tmp_path, device):
    res = cli(toml, tmp_path / "runs", "run", "--only", "small", "--device", device)
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and device in lines[0]
    assert "Traceback" not in res.output


@pytest.mark.slow
def test_sigterm_stops_a_run_as_ctrl_c_does_and_leaves_no_claim(tmp_path, cifar_dir):
    """kill, scancel and a stopped notebook runtime send SIGTERM: one line, the checkpoint kept, the
    claim released (status shows none), exit 143, and the same command resumes."""
    import signal
    import time

    from procs import labreport

    toml = tmp_path / "e.toml"
    toml.write_text(TINY.format(root=cifar_dir).replace("epochs = 1", "epochs = 20"))
    runs = tmp_path / "runs"
    proc = labreport(toml, runs, "run", "--only", "small", "--device", "cpu")
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/history.json")) and time.monotonic() < deadline:  # its first epoch is saved
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert ("terminated (SIGTERM) during small: its last epoch checkpoint is kept and its claim released; run the "
            "same command again to resume") in out
    assert "Traceback" not in out
    status = cli(toml, runs, "status")
    (line,) = [x for x in status.stdout.splitlines() if x.endswith("small")]
    assert "partial" in line and "claimed by" not in line
    assert not list(runs.glob("*/lease.json"))
    resumed = cli(toml, runs, "run", "--only", "small", "--device", "cpu")
    assert resumed.exit_code == 0 and "resuming after epoch " in resumed.stderr, resumed.output


def test_the_md5_warning_is_said_once_per_data_folder(toml, tmp_path):
    runs = tmp_path / "runs"
    first = cli(toml, runs, "run", "--only", "small", "--device", "cpu")
    assert first.exit_code == 0 and "differ from the official CIFAR-10 files (md5 check)" in first.stderr
    second = cli(toml, runs, "run", "--only", "grid", "--device", "cpu")  # loads the same folder again
    assert second.exit_code == 0 and "2 trained" in second.stdout and "md5 check" not in second.stderr
    assert "md5 check" in cli(toml, runs, "-v", "run", "--device", "cpu", "--set", "lr=5e-3").stderr  # -v: still


@pytest.mark.parametrize("setting, message", [
    ("report.language=de", "[report] language: no message catalogue for language 'de' (known: en, ru)"),
    ("train_subset=999999", "train_subset = 999999 is not below the 49,968 training images left after "
                            "val_size = 32: 0 means all of them"),
    ("test_subset=10000", "test_subset = 10000 is not below the 10,000 test images: 0 means all of them"),
])
def test_settings_that_cannot_work_are_refused_by_plan(toml, tmp_path, setting, message):
    res = cli(toml, tmp_path / "runs", "plan", "--set", setting)
    assert res.exit_code == 2 and message in res.stderr, res.output


def test_only_an_unknown_experiment(toml, tmp_path):
    res = cli(toml, tmp_path / "runs", "run", "--only", "nope")
    assert res.exit_code == 2
    assert res.stderr.strip() == "error: --only: no experiment named 'nope' (experiments: small, grid)"


def test_an_interrupted_run_exits_130_and_the_same_command_resumes(tmp_path, cifar_dir, monkeypatch):
    from labreport.store import RunStore

    toml = tmp_path / "e.toml"
    toml.write_text(TINY.format(root=cifar_dir).replace("epochs = 1", "epochs = 2"))
    runs = tmp_path / "runs"
    real_heartbeat = RunStore.heartbeat

    def ctrl_c_after_epoch_1(self, key):
        real_heartbeat(self, key)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunStore, "heartbeat", ctrl_c_after_epoch_1)
    res = cli(toml, runs, "run", "--only", "small", "--device", "cpu")
    assert res.exit_code == 130, res.output
    assert "interrupted during small: run the same command again to resume" in res.stderr
    assert "Traceback" not in res.output
    assert "partial 1/2" in cli(toml, runs, "status").stdout

    monkeypatch.undo()
    res = cli(toml, runs, "run", "--only", "small", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "resuming after epoch 1" in res.stderr and "Train Epoch: 2/2" in res.stderr
    assert "Train Epoch: 1/2" not in res.stderr
    assert "1 trained, 0 cached" in res.stdout
