"""`labreport init`: the lab's experiments.toml (and the templates) from the package, never overwritten
by accident; and the one-line errors a broken installation or customisation gives."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from labreport.cli import main
from labreport.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd: Path):
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args))
    finally:
        os.chdir(old)


def test_init_writes_the_shipped_lab_and_refuses_to_overwrite(tmp_path):
    res = run("init", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    written = (tmp_path / "experiments.toml").read_text(encoding="utf-8")
    assert written == (ROOT / "experiments.toml").read_text(encoding="utf-8")
    cfg = load_config(tmp_path / "experiments.toml")
    assert cfg.report.lab_number == 7 and cfg.report.discipline == "Системы поддержки принятия решений"
    (tmp_path / "experiments.toml").write_text("# mine\n" + written, encoding="utf-8")
    again = run("init", cwd=tmp_path)
    assert again.exit_code == 2 and "exists already: pass --force" in again.output
    assert (tmp_path / "experiments.toml").read_text(encoding="utf-8").startswith("# mine")
    assert run("init", "--force", cwd=tmp_path).exit_code == 0
    assert (tmp_path / "experiments.toml").read_text(encoding="utf-8") == written


def test_init_with_templates_copies_them_and_switches_them_on(tmp_path):
    res = run("init", "lab", "--templates", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    lab = tmp_path / "lab"
    names = {p.name for p in (lab / "templates").iterdir()}
    assert {"report.html.j2", "title.html.j2", "style.css", "locale"} <= names
    assert (lab / "templates" / "locale" / "ru" / "LC_MESSAGES" / "labreport.po").is_file()
    assert load_config(lab / "experiments.toml").report.templates == "templates"
    assert run("init", "lab", "--templates", cwd=tmp_path).exit_code == 2  # the copy is not overwritten either


def test_plan_in_an_empty_folder_points_at_init(tmp_path):
    res = run("plan", cwd=tmp_path)
    assert res.exit_code == 2 and "labreport init" in res.output and "Traceback" not in res.output


def _lab(tmp_path: Path) -> Path:
    assert run("init", "--templates", cwd=tmp_path).exit_code == 0
    return tmp_path


def test_a_broken_template_or_catalogue_is_one_line_exit_2(tmp_path):
    lab = _lab(tmp_path)
    (lab / "templates" / "toc.html.j2").write_text("{% for x in %}", encoding="utf-8")
    res = run("build", "--out", "r.pdf", cwd=lab)
    assert res.exit_code == 2 and "toc.html.j2, line 1" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    (lab / "templates" / "toc.html.j2").unlink()  # a removed file falls back to the shipped one
    po = lab / "templates" / "locale" / "ru" / "LC_MESSAGES" / "labreport.po"
    po.write_bytes(b'msgid "x"\nmsgstr \xff')
    res = run("build", "--out", "r.docx", cwd=lab)
    assert res.exit_code == 2 and "message catalogue" in res.output and "cannot be read" in res.output
    po.unlink()
    res = run("build", "--out", "r.pdf", "--out", "r.docx", cwd=lab)
    assert res.exit_code == 0, res.output
    assert (lab / "r.pdf").stat().st_size > 10_000 and (lab / "r.docx").stat().st_size > 10_000


def test_an_unknown_language_or_format_is_one_line_exit_2(tmp_path):
    lab = _lab(tmp_path)
    text = (lab / "experiments.toml").read_text(encoding="utf-8").replace('language = "ru"', 'language = "de"')
    (lab / "experiments.toml").write_text(text, encoding="utf-8")
    res = run("plan", cwd=lab)  # said before anything trains, not first by build
    assert res.exit_code == 2 and "[report] language: no message catalogue for language 'de'" in res.output
    res = run("build", "--out", "r.odt", "--set", "report.language=ru", cwd=lab)
    assert res.exit_code == 2 and "the suffix picks the format" in res.output


def test_a_missing_font_is_a_one_line_error(tmp_path, monkeypatch):
    from labreport.report import build as report

    lab = _lab(tmp_path)
    empty = tmp_path / "no-fonts"
    empty.mkdir()
    monkeypatch.setattr(report, "FONTS_DIR", empty)  # as an installation that lost its fonts
    res = run("build", "--out", "r.pdf", cwd=lab)
    assert res.exit_code == 2 and "font file" in res.output and "is missing: reinstall labreport" in res.output


def test_plan_lists_the_arms_of_the_bn_claim_profile(tmp_path):
    assert run("init", cwd=tmp_path).exit_code == 0
    res = run("plan", "--profile", "bn-claim", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    heads = [line.split(" (")[0] for line in res.output.splitlines() if not line.startswith(" ")]
    assert heads[:4] == ["resnet110-bn", "resnet110-nobn", "resnet110-nobn-torch", "resnet110-nobn-fixup"]
    assert "33 runs (33 distinct), profile 'bn-claim'" in res.output


def test_a_template_copied_from_another_version_is_one_line_naming_its_line(tmp_path):
    """A copied template that uses a name today's context does not hold (docs/compatibility.md)."""
    lab = _lab(tmp_path)
    title = lab / "templates" / "title.html.j2"
    title.write_text(title.read_text(encoding="utf-8").replace("title_page.title", "r.title", 1), encoding="utf-8")
    res = run("build", "--out", "r.docx", cwd=lab)
    assert res.exit_code == 2 and "Traceback" not in res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: title.html.j2, line ") and "'r' is undefined" in line
    assert "labreport init NEW --templates" in line and not (lab / "r.docx").exists()
