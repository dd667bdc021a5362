"""A preview says so: what counts as one (preview.shortened, on the lab's own experiments.toml and its
profiles), how the title page and the header word it in Russian and English, and that the PDF and
the DOCX carry it on the title page and in the header of the other pages."""
from __future__ import annotations

from pathlib import Path

import pytest

from labreport.config import load_config
from labreport.report.build import build
from labreport.report.i18n import Lang
from labreport.report.preview import lab_matrix, preview_texts, shortened
from labreport.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "experiments.toml"
WJ = "\u2060"  # the word joiner that keeps a range "3–10" on one line


def words(text: str) -> str:
    return text.replace("\u00a0", " ").replace(WJ, "")


@pytest.mark.parametrize("profile, overrides, want", [
    (None, (), ()),  # the lab's own report
    ("bn-claim", (), ()),  # more runs of the lab's settings: not shorter
    ("paper", (), ()),  # the paper's recipe: its experiments are not the lab's, nothing to be shorter than
    ("smoke", (), ("epochs", "train", "val", "test", "seeds")),
    ("quick", (), ("epochs", "train", "val", "test", "seeds")),
    (None, ("epochs=2",), ("epochs",)),
    (None, ("epochs=80",), ()),  # longer is not a preview
    (None, ("val_size=1000",), ("val",)),  # fewer validation images (and so more training images)
    ("bn-claim", ("test_subset=500",), ("test",)),
])
def test_what_counts_as_a_preview(profile, overrides, want):
    config = load_config(LAB, profile, overrides)
    assert tuple(s.what for s in shortened(config.runs, lab_matrix(config).runs)) == want


def test_the_shortened_amounts_are_ranges_over_the_shortened_experiments():
    config = load_config(LAB, "quick")
    found = {s.what: (s.ours, s.lab) for s in shortened(config.runs, lab_matrix(config).runs)}
    assert found["epochs"] == ((2, 3), (50, 50))  # cifarnet and resnet18 get 3 epochs, the others 2
    assert found["train"] == ((2000, 8000), (45000, 45000))
    assert found["test"] == ((1000, 1000), (10000, 10000))
    assert found["seeds"] == ((2, 2), (3, 10))  # resnet110-bn 3 -> 2, resnet110-nobn 10 -> 2


@pytest.mark.parametrize("lang, profile, overrides, title, header", [
    ("ru", "smoke", (), "Предварительные результаты (профиль smoke: 1 эпоха вместо 50, 256 обучающих изображений "
     "вместо 45 000, 128 валидационных изображений вместо 5 000, 256 тестовых изображений вместо 10 000 и 1 зерно "
     "вместо 3–10)", "Предварительные результаты (профиль smoke)"),
    ("en", "quick", (), "Preliminary results (profile quick: 2–3 epochs instead of 50, 2,000–8,000 training images "
     "instead of 45,000, 500 validation images instead of 5,000, 1,000 test images instead of 10,000, and 2 seeds "
     "instead of 3–10)", "Preliminary results (profile quick)"),
    ("ru", None, ("epochs=2",), "Предварительные результаты (2 эпохи вместо 50)", "Предварительные результаты"),
    ("en", None, ("epochs=1", "test_subset=1000"),
     "Preliminary results (1 epoch instead of 50 and 1,000 test images instead of 10,000)", "Preliminary results"),
])
def test_the_preview_line_in_both_languages(lang, profile, overrides, title, header):
    texts = preview_texts(load_config(LAB, profile, overrides), Lang(lang))
    assert words(texts["title"]) == title and texts["header"] == header


def test_the_lab_report_has_no_preview_line():
    assert preview_texts(load_config(LAB), Lang("ru")) is None
    assert preview_texts(load_config(LAB, "bn-claim"), Lang("en")) is None


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    """The smoke profile's report (its store empty: the preview line does not depend on results), PDF and DOCX."""
    tmp = tmp_path_factory.mktemp("preview")
    config = load_config(LAB, "smoke")
    out = tmp / "r.pdf"
    build(config, RunStore(tmp / "runs"), [out, tmp / "r.docx"])
    return out, tmp / "r.docx"


def test_the_pdf_says_preview_on_the_title_page_and_in_the_header(smoke_report):
    from pypdf import PdfReader

    pages = [words(p.extract_text()) for p in PdfReader(smoke_report[0]).pages]
    assert "Предварительные результаты (профиль smoke: 1 эпоха вместо 50" in " ".join(pages[0].split())
    assert "Предварительные результаты (профиль smoke)" not in pages[0]  # the title page has no running header
    assert all("Предварительные результаты (профиль smoke)" in p for p in pages[1:])


def test_the_docx_says_preview_on_the_title_page_and_in_the_header(smoke_report):
    import docx

    doc = docx.Document(smoke_report[1])
    title_page = [words(p.text) for p in doc.paragraphs[:12]]
    assert any(t.startswith("Предварительные результаты (профиль smoke: 1 эпоха") for t in title_page)
    section = doc.sections[0]
    assert section.different_first_page_header_footer and not section.first_page_header.paragraphs[0].text
    assert section.header.paragraphs[0].text == "Предварительные результаты (профиль smoke)"
    assert all(s.header.is_linked_to_previous for s in doc.sections[1:])  # the landscape appendix too
