"""The documentation a user reads: no notes about how labreport was developed, links that resolve,
a notebook that trains nothing long by default, a figures page whose every figure is dated, and a
third-party notice that names every dependency.

"Development notes" are what a user never needs: the task tracker's numbers ("issue 14"), the
working sessions and rounds of the development ("in session 3", "added in this pass"), GPUs "lent"
to it, "as the issue asks". A Colab session is the user's, an issue of another project is a
reference ("akamaster/pytorch_resnet_cifar10, issue 18"), and words like "silent" or "Lentz" are
words: the patterns below leave them alone (tested).
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from labreport.cli import main

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "labreport.ipynb"
DOCS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "THIRD_PARTY_NOTICES.md",
               *(ROOT / "docs").rglob("*.md")])

DEV_NOTES = re.compile(
    r"\bsessions? (?:\d+|so far)\b"                   # "in session 1", "sessions so far"
    r"|\bissues? #?\d+\b"                              # "(issue 14)", "issue #3"
    r"|\bas the issue\b|\bthe issue (?:asks|asked|says|said)\b"
    r"|\blent\b"                                       # "a lent GPU machine", "no GPU was lent"
    r"|\bdevice (?:tool|machine)\b"                    # the development's loaned-GPU machinery
    r"|\b(?:added|changed|fixed|done) (?:in|during) (?:this|the (?:first|second|third|last)) (?:pass|round|session)\b",
    re.IGNORECASE)
# a reference to another project's tracker, "owner/repo, issue 18" or "owner/repo#18", is not a note
FOREIGN_ISSUE = re.compile(r"[\w.-]+/[\w.-]+(?:,? (?:issue|#)\s?#?)\d+$")
COLAB_SESSION = re.compile(r"\bColab(?:'s)? session\b", re.IGNORECASE)


def dev_notes(text: str) -> list[str]:
    """Each development note in text, with a little context."""
    found = []
    for m in DEV_NOTES.finditer(text):
        before = text[max(0, m.start() - 60):m.end()]
        if m.group().lower().startswith("issue") and FOREIGN_ISSUE.search(before.replace("\n", " ")):
            continue
        if COLAB_SESSION.search(text[max(0, m.start() - 8):m.end()]):
            continue
        found.append(" ".join(text[max(0, m.start() - 40):m.end() + 40].split()))
    return found


@pytest.mark.parametrize("text, notes", [
    ("Adding fp16 (issue 14) left the keys unchanged.", 1),
    ("91 s in session 1, 145 s in session 3", 2),
    ("no GPU was lent to the sessions so far", 2),
    ("the one command a lent GPU machine runs", 1),
    ("it stays off by default, as the issue asks.", 1),
    ("what the device tool brings back", 1),
    ("a flag added in this pass", 1),
    ("After a disconnect of the Colab session, run all cells again.", 0),
    ("reruns spread 6.89-8.42 % (akamaster/pytorch_resnet_cifar10, issue 18)", 0),
    ("A silent failure; the modified Lentz algorithm; an excellent, prevalent, talented fit.", 0),
    ("Report problems in the project's issues.", 0),
    ("opens a session: torch, the device, the data set", 0),
])
def test_the_patterns_find_development_notes_and_leave_words_alone(text, notes):
    assert len(dev_notes(text)) == notes, dev_notes(text)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_development_notes_in_the_docs(path):
    assert dev_notes(path.read_text(encoding="utf-8")) == []


def notebook_cells() -> list[dict]:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def test_no_development_notes_in_the_notebook_or_the_experiment_matrix():
    text = "\n".join("".join(cell["source"]) for cell in notebook_cells())
    assert dev_notes(text) == []
    assert dev_notes((ROOT / "experiments.toml").read_text(encoding="utf-8")) == []


def test_no_development_notes_in_the_package():
    """Comments, docstrings, messages and templates of labreport/ itself."""
    package = ROOT / "labreport"
    files = [p for p in package.rglob("*") if p.suffix in (".py", ".j2", ".css", ".toml") and p.is_file()]
    assert len(files) > 50
    found = {str(p.relative_to(ROOT)): n for p in files if (n := dev_notes(p.read_text(encoding="utf-8")))}
    assert found == {}


def test_no_development_notes_in_any_help_text():
    texts = [CliRunner().invoke(main, ["--help"]).output]
    for name in main.commands:
        res = CliRunner().invoke(main, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)
        texts.append(res.output)
    assert len(texts) > 8
    assert [n for t in texts for n in dev_notes(t)] == []


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_between_the_docs_resolves(path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert broken == []


def test_the_notebook_trains_a_preview_unless_asked_and_says_how_long_first():
    cells = notebook_cells()
    sources = ["".join(cell["source"]) for cell in cells]
    (params,) = [s for c, s in zip(cells, sources) if "parameters" in c["metadata"].get("tags", [])]
    assert re.search(r"^FULL_LAB = False\b", params, flags=re.MULTILINE)
    assert re.search(r'^PROFILE = "(quick|smoke)"', params, flags=re.MULTILINE)
    code = [s for c, s in zip(cells, sources) if c["cell_type"] == "code"]
    estimate = next(i for i, s in enumerate(code) if "lab.estimate(" in s)
    run = next(i for i, s in enumerate(code) if "lab.run(" in s)
    assert estimate < run  # the time is on the screen before anything trains
    install = next(s for s in code if "apt-get" in s)
    update, apt_install = (re.search(rf'"apt-get", [^\]]*"{verb}"', install) for verb in ("update", "install"))
    assert update and apt_install and update.start() < apt_install.start()
    markdown = "\n".join(s for c, s in zip(cells, sources) if c["cell_type"] == "markdown")
    assert "Google Drive asks for permission" in markdown
    # a relative link breaks on Colab, which opens the notebook without the repository around it
    assert [t for t in re.findall(r"\]\(([^)]+)\)", markdown) if not t.startswith("https://")] == []


def test_every_figure_on_the_figures_page_has_a_date_or_says_it_is_not_measured():
    rows = []
    header = None
    for line in (ROOT / "docs" / "figures.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line) <= set("|- "):
            rows.append(dict(zip(header, cells)))
    dated = [r for r in rows if "date" in r]
    assert len(dated) >= 10
    for row in dated:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["date"]) or "not measured" in row["figure"], row


def test_the_third_party_notice_names_every_dependency_and_font_licence():
    notice = (ROOT / "THIRD_PARTY_NOTICES.md").read_text(encoding="utf-8")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    for dep in deps:
        name = re.match(r"[A-Za-z0-9_.-]+", dep).group()
        assert f"| {name} |" in notice, name
    for licence in (ROOT / "labreport" / "report" / "fonts").glob("LICENSE_*"):
        assert f"labreport/report/fonts/{licence.name}" in notice
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
