"""No secrets or home paths leak into the run store or the report; names cannot escape the store.

(Checkpoint unpickling, report escaping and the URL fetcher are tested in test_store.py and
test_report.py; hostile names in the hostile-input corpus.)
"""

from __future__ import annotations

from click.testing import CliRunner
from pypdf import PdfReader

from labreport.cli import main

SECRET = "s3cr3t-token-9f8e7d"


def test_store_and_report_hold_no_environment_secret_or_home_path(tmp_path, cifar_dir, monkeypatch):
    home = tmp_path / "home" / "alice-private"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("API_TOKEN", SECRET)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    work = tmp_path / "work"
    work.mkdir()
    cfg = work / "experiments.toml"
    cfg.write_text(f"""
[report]
title = "t"
[data]
root = "{cifar_dir}"
download = false
[gradflow]
enabled = false
[defaults]
epochs = 1
batch_size = 32
val_size = 64
train_subset = 64
test_subset = 64
[[experiment]]
name = "../../escape"
model = "cifarnet"
""")
    runner = CliRunner()
    bad = runner.invoke(main, ["--config", str(cfg), "--runs", str(work / "runs"), "run"])
    assert bad.exit_code == 2 and "name" in bad.output  # a path in a name is refused before anything runs
    assert not (work / "runs").exists() and not (tmp_path / "escape").exists()

    cfg.write_text(cfg.read_text().replace('"../../escape"', '"ok"'))
    res = runner.invoke(main, ["--config", str(cfg), "--runs", str(work / "runs"), "run"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["--config", str(cfg), "--runs", str(work / "runs"), "build", "--out",
                               str(work / "report.pdf")])
    assert res.exit_code == 0, res.output

    texts = {p: p.read_bytes() for p in (work / "runs").rglob("*") if p.is_file() and p.suffix in (".json", "")}
    assert texts, "the store should hold spec, history and result files"
    pdf_text = "\n".join(page.extract_text() for page in PdfReader(work / "report.pdf").pages)
    summary = (work / "report_files" / "summary.json").read_bytes()
    for blob in [*texts.values(), pdf_text.encode(), summary]:
        assert SECRET.encode() not in blob
        assert str(home).encode() not in blob and b"alice-private" not in blob
