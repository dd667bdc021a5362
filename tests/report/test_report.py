"""`labreport build`: the report from a run store, checked from the PDF and the DOCX themselves.

The run stores here are written by hand through RunStore (made-up accuracies and per-image
predictions with a known answer), so that the report's text can be checked against numbers chosen
for the test; test_cli.py covers a store produced by real training. The layout checks read the PDF
with pdfplumber (fonts, sizes, positions) and the DOCX with python-docx (styles, fields, tables).
"""

from __future__ import annotations

import json
import re
from html import unescape
import shutil
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from labreport.config import load_config
from labreport.report.pdf import _LocalOnlyFetcher
from labreport.report.build import build
from labreport.store import RunStore

TOML = """
[report]
title = "{title}"
student = "Ivanov I. I."
teacher = "Petrov P. P."
teacher_position = "{position}"
university = "{university}"
department = "{department}"
discipline = "{discipline}"
lab_number = 7
group = "IVT-21"
city = "{city}"
year = 2026
language = "{lang}"
accessed = "01.12.2026"
[defaults]
epochs = 3
test_subset = 200
[analysis]
trained_threshold = 0.2
[[experiment]]
name = "base"
task = 3
model = "cifarnet"
[[experiment]]
name = "r18"
task = 3
model = "resnet18"
[[experiment]]
name = "r20"
task = 4
model = "resnet20"
dropout = [0.0, 0.3]
weight_decay = [0.0, 1e-4]
[[experiment]]
name = "r110-bn"
task = 5
model = "resnet110"
seeds = 2
[[experiment]]
name = "r110-nobn"
task = 5
model = "resnet110"
norm = "none"
seeds = 4
[[experiment]]
name = "extra"
model = "resnet32"
"""
RU = dict(title="Исследование архитектуры ResNet на датасете CIFAR", position="доцент кафедры ИВТ",
          university="Университет", department="Кафедра ИВТ", discipline="Системы поддержки принятия решений",
          city="Москва", lang="ru")
EN = dict(title="ResNet on CIFAR", position="associate professor", university="A University",
          department="Department of CS", discipline="Decision support systems", city="Moscow", lang="en")
N_TEST = 200
# (test accuracy, best validation accuracy) per run in matrix order: base, r18, r20 x4, r110-bn x2, nobn x4, extra
ACCS = [0.61, 0.71, 0.72, 0.69, 0.74, 0.80, 0.82, 0.81, 0.1, 0.1, 0.5, 0.1, 0.66]


def answers(acc: float, offset: int) -> tuple[str, str]:
    """Predictions right on round(acc * N_TEST) images starting at `offset`: every label is 4."""
    right = round(acc * N_TEST)
    correct = {(offset + i) % N_TEST for i in range(right)}
    return "".join("4" if i in correct else "7" for i in range(N_TEST)), "4" * N_TEST


def fake_result(run, test_acc: float, val_acc: float, status="completed", offset=0) -> tuple[dict, list]:
    hist = [{"epoch": e, "lr": 1e-4, "train_loss": 1.0, "train_acc": test_acc + 0.05 * e / 3,
             "val_loss": 1.0, "val_acc": val_acc * e / 3, "test_loss": 1.0, "test_acc": test_acc * e / 3,
             "train_time_s": 1.0, "epoch_time_s": 1.5, "images_per_s": 300.0, "grad_norm_mean": 1.0,
             "grad_norm_max": 2.0, "mem_alloc_mib": None, "mem_reserved_mib": None, "micro_batch": 128}
            for e in (1, 2, 3)]
    preds, labels = answers(test_acc, offset)
    res = {"key": run.key, "spec": run.spec.to_dict(), "status": status, "epochs_run": 3,
           "diverged_at_epoch": 2 if status == "diverged" else None, "best_epoch": 3, "selected_by": "val_acc",
           "best_val_acc": val_acc, "test_acc_at_best": test_acc, "final_test_acc": test_acc,
           "final_train_acc": test_acc + 0.05, "final_val_acc": val_acc, "total_time_s": 4.5,
           "mean_epoch_time_s": 1.5, "peak_mem_alloc_mib": None, "peak_mem_reserved_mib": None,
           "params": 1000, "n_test": N_TEST, "test_predictions": preds, "test_labels": labels,
           "diverged_reason": "non-finite loss at epoch 2, step 7" if status == "diverged" else None,
           "provenance": {"device": "cpu", "torch": "2.x", "cuda": None, "precision": "fp32",
                          "data_fingerprint": "abcd", "data_official": False, "threads": 2}}
    return res, hist


def make_study(tmp_path: Path, fields=RU, skip=(), extra_toml="", accs=ACCS) -> tuple:
    cfg_path = tmp_path / "experiments.toml"
    cfg_path.write_text(TOML.format(**fields) + extra_toml, encoding="utf-8")
    config = load_config(cfg_path)
    store = RunStore(tmp_path / "runs")
    for i, (run, acc) in enumerate(zip(config.runs, list(accs) + [0.5] * len(config.runs))):
        if run.experiment in skip:
            continue
        store.write_spec(run.key, run.spec.to_dict(), 1)
        status = "diverged" if run.experiment == "r110-nobn" and run.spec.seed == 3 else "completed"
        res, hist = fake_result(run, acc, acc, status, offset=7 * i)
        store.write_history(run.key, hist)
        store.write_result(run.key, res)
    return config, store


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    config, store = make_study(tmp)
    out = tmp / "report.pdf"
    result = build(config, store, [out, tmp / "report.docx"], tmp / "report.html")
    return result, out, pdf_text(out), json.loads(result.summary.read_text())


@pytest.fixture(scope="module")
def built_en(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report_en")
    config, store = make_study(tmp, EN)
    out = tmp / "report.pdf"
    build(config, store, [out, tmp / "report.docx"])
    return out, pdf_text(out)


# --- content ----------------------------------------------------------------------------------
def test_pdf_has_the_labs_sections_in_gost_form(built):
    _, out, text, _ = built
    for title in ("СОДЕРЖАНИЕ", "1 Цель работы, постановка задачи исследования", "1.1 Остаточный блок",
                  "2 Описание методики исследования", "3 Результаты исследования в соответствии с заданием",
                  "4 Выводы по работе", "СПИСОК ИСПОЛЬЗОВАННЫХ ИСТОЧНИКОВ", "ПРИЛОЖЕНИЕ А",
                  "Сравнение с результатами He et al. 2015", "Дополнительные эксперименты",
                  "Лучший результат (задание 6)"):
        assert title in text, title
    reader = PdfReader(out)
    assert reader.metadata.title == RU["title"] and reader.metadata.author == "Ivanov I. I."
    assert len(reader.outline) >= 4  # bookmarks


def test_title_page(built):
    _, out, _, _ = built
    first = PdfReader(out).pages[0].extract_text()
    for line in ("Министерство науки и высшего образования Российской Федерации", "Университет", "Кафедра ИВТ",
                 "ОТЧЁТ", "по лабораторной работе № 7", "по дисциплине «Системы поддержки принятия решений»",
                 "«Исследование архитектуры ResNet на датасете CIFAR»", "Выполнил:", "студент группы IVT-21",
                 "Ivanov I. I.", "Проверил:", "доцент кафедры ИВТ", "Petrov P. P.", "подпись, дата", "Москва 2026"):
        assert line in first, line


def test_references_are_cited_and_listed_in_gost_form(built):
    _, _, text, _ = built
    refs = " ".join(text[text.rindex("СПИСОК ИСПОЛЬЗОВАННЫХ ИСТОЧНИКОВ"):].split())
    assert "[1]" in text and "He, K. Deep Residual Learning for Image Recognition / K. He" in refs
    assert "Krizhevsky, A. Learning Multiple Layers" in refs and "PyTorch" in refs and "TorchVision" in refs
    assert "McNemar, Q." in refs and "(дата обращения: 01.12.2026)" in refs and "Текст : электронный" in refs
    cited = {int(n) for group in re.findall(r"\[(\d+(?:, \d+)*)\]", text[:text.rindex("СПИСОК")])
             for n in group.split(", ")}
    assert cited == set(range(1, max(cited) + 1))  # every listed source is cited, numbered by first citation


def test_captions_and_references_to_every_figure_and_table(built):
    _, _, text, _ = built
    figs = set(re.findall(r"^Рисунок (\d+) – (.+)$", text, re.M))
    tabs = set(re.findall(r"^Таблица (\d+) – (.+)$", text, re.M))
    assert len(figs) >= 4 and len(tabs) >= 6 and re.search(r"^Таблица А\.1 – ", text, re.M)
    flat = " ".join(text.split())
    for n, caption in figs | tabs:
        assert not caption.rstrip().endswith("."), caption  # no final dot (ГОСТ 7.32 6.5.5, 6.6.3)
    for n, _ in figs:
        assert f"рисунок {n}" in flat, n
    for n, _ in tabs:
        assert f"таблица {n}" in flat, n
    assert re.search(r"\(1\)", text) and "(2)" in text  # numbered formulas


def test_russian_numbers_have_decimal_commas_and_labels_are_human(built):
    _, _, text, _ = built
    assert re.search(r"\d,\d{2}\s%", text)  # "81,50 %"
    assert not re.search(r"\d\.\d{2}\s?%", text)
    conclusions = text[text.index("4 Выводы по работе", text.index("СОДЕРЖАНИЕ") + 500):text.rindex("СПИСОК")]
    assert ("weight_decay=" not in conclusions and "dropout=" not in conclusions
            and "[" not in conclusions.split("[1]")[0])
    assert "ResNet-20, dropout 0,3, L2 1·10⁻⁴" in " ".join(text.split())


def test_pdf_numbers_are_the_summary_numbers(built):
    result, _, text, summary = built
    flat = " ".join(text.split())
    best = summary["best"]
    assert best["labels"] == ["r110-bn"] and best["mean_test_acc"] == pytest.approx(0.815)
    assert "81,50 ± 0,71 %" in flat  # mean ± std of its two seeds
    claim = summary["claim"]["arms"][0]
    assert (claim["k"], claim["n"]) == (1, 4) and summary["claim"]["control_trains"] is True
    assert "обучившихся запусков – 1 из 4" in flat
    t4 = next(t for t in summary["tasks"] if t["task"] == "4")
    assert t4["heatmap"] == ["dropout", "weight_decay"]
    assert t4["best"]["labels"] == ["r20[dropout=0.3, weight_decay=0.0001]"]
    resnet20 = next(p for p in summary["paper"] if p["model"] == "resnet20")
    assert f"{resnet20['ours_error']:.2f}".replace(".", ",") in flat and "8,75 %" in flat


def test_ties_and_noise_are_named(built):
    """r110-bn (81.5 %) against r20's best (82 %) on 200 images: a difference McNemar cannot tell from
    noise, so the report names the best and its ties, and says which test decided."""
    _, _, text, summary = built
    best = summary["best"]
    assert "r20[dropout=0.3, weight_decay=0.0001]" in best["ties"]
    flat = " ".join(text.split())
    assert "точный критерий Мак-Немара" in flat and "поправка Холма" in flat
    assert "Статистически неотличим" in flat


def test_figures_and_summary_written_next_to_the_report(built):
    result, _, _, _ = built
    files = {p.name for p in result.summary.parent.iterdir()}
    assert {"curves_4.svg", "curves_4.png", "heatmap_4.svg", "bn_seeds.svg", "resources.svg",
            "summary.json"} <= files


# --- layout, read from the PDF ---------------------------------------------------------------------
def test_pdf_layout_follows_gost_7_32(built):
    import pdfplumber

    _, out, _, _ = built
    mm = 72 / 25.4
    with pdfplumber.open(out) as pdf:
        page = pdf.pages[2]  # section 1: body text
        assert (round(page.width), round(page.height)) == (595, 842)  # A4
        body = [c for c in page.chars if c["text"].strip() and 13.5 < c["size"] < 14.5]
        assert len(body) > 500
        fonts = {c["fontname"].split("+")[-1].replace("-", "") for c in body}  # "ABCDEF+Liberation-Serif-Bold"
        assert fonts <= {"LiberationSerif", "LiberationSerifBold", "LiberationSerifItalic",
                         "LiberationSerifBoldItalic"} and "LiberationSerif" in fonts
        assert min(c["x0"] for c in body) >= 30 * mm - 1 and max(c["x1"] for c in body) <= (210 - 15) * mm + 1
        assert min(c["top"] for c in page.chars) >= 20 * mm - 1  # the text area; the page number sits below it
        assert max(c["bottom"] for c in body) <= (297 - 20) * mm + 1
        lines = sorted({round(c["top"], 1) for c in body})
        gaps = [b - a for a, b in zip(lines, lines[1:]) if b - a < 30]
        assert sorted(gaps)[len(gaps) // 2] == pytest.approx(1.5 * 14 * 1.15, rel=0.08)  # line spacing 1.5
        tables = [c for p in pdf.pages[4:8] for c in p.chars if c["text"].strip() and c["size"] < 13]
        assert tables and {round(c["size"]) for c in tables} <= {12, 10, 9}  # tables and captions: 12 pt
        # page numbers: bottom centre, Arabic; the title page counted but not numbered
        def footer(p):
            return "".join(c["text"] for c in p.chars if c["top"] > (297 - 20) * mm).strip()
        assert footer(pdf.pages[0]) == ""
        assert footer(pdf.pages[1]) == "2" and footer(pdf.pages[2]) == "3"


def test_a_table_continued_on_the_next_page_says_so(tmp_path):
    extra = "\n[[experiment]]\nname = \"many\"\ntask = 4\nmodel = \"resnet20\"\nlr = [1e-4, 2e-4, 3e-4, 4e-4, 5e-4, " \
            "6e-4, 7e-4, 8e-4, 9e-4, 1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3, 9e-3, 1e-2, 2e-2, 3e-2]\n"
    config, store = make_study(tmp_path, extra_toml=extra)
    out = tmp_path / "r.pdf"
    build(config, store, out)
    pages = [p.extract_text() for p in PdfReader(out).pages]
    cont = [i for i, t in enumerate(pages) if "Продолжение таблицы" in t]
    assert cont, "no continued table"
    for i in cont:
        n = re.search(r"Продолжение таблицы (\S+)", pages[i]).group(1)
        started = [j for j, t in enumerate(pages) if re.search(rf"^Таблица {re.escape(n)} – ", t, re.M)]
        assert started and started[0] < i  # it continues a table that started on an earlier page
    assert sum("Продолжение таблицы" in t for t in pages) < len(pages) // 2  # and only where one continues


def test_english_report_has_no_cyrillic_and_uses_decimal_points(built_en):
    _, text = built_en
    for title in ("CONTENTS", "1 Goal of the work", "2 Method of the study", "4 Conclusions", "REFERENCES",
                  "APPENDIX A", "Figure 1 –", "Table 1 –"):
        assert title in text, title
    assert not re.search(r"[А-Яа-яЁё]", text)
    assert re.search(r"\d\.\d{2}%", text) and not re.search(r"\d,\d{1,2}(?!\d)\s?%", text)


# --- the DOCX ------------------------------------------------------------------------------------------
def test_docx_is_the_same_report_with_word_structure(built):
    import docx

    result, out, _, _ = built
    html = out.with_suffix(".html").read_text()
    doc = docx.Document(out.with_suffix(".docx"))
    headings = [(p.style.name, p.text) for p in doc.paragraphs if p.style.name.startswith("Heading")]
    assert ("Heading 1", "1 Цель работы, постановка задачи исследования") in headings
    assert ("Heading 2", "1.1 Остаточный блок и блок «узкое место»") in headings
    assert ("Heading 1", "СПИСОК ИСПОЛЬЗОВАННЫХ ИСТОЧНИКОВ") in headings
    assert len(headings) == html.count("<h1") - 1 + html.count("<h2")  # every heading but СОДЕРЖАНИЕ's
    # the tables and figures of the PDF (the title page's signature table besides)
    assert len(doc.tables) == html.count("<table")
    assert len(doc.inline_shapes) == html.count("<figure")
    # page numbers in the footer, none on the title page
    footer = doc.sections[0].footer._element.xml
    assert "PAGE" in footer and doc.sections[0].different_first_page_header_footer
    assert "PAGE" not in doc.sections[0].first_page_footer._element.xml
    texts = [p.text for p in doc.paragraphs]
    assert "Министерство науки и высшего образования Российской Федерации" in texts[:3] and "ОТЧЁТ" in texts
    assert any("PAGEREF _Toc_goal" in p._p.xml for p in doc.paragraphs)  # the contents: page references
    body = doc.styles["Normal"]
    assert body.font.size.pt == 14 and body.paragraph_format.line_spacing == 1.5
    assert body.element.rPr.rFonts.get("{http://schemas.openxmlformats.org/wordprocessingml/2006/main}ascii") \
        == "Times New Roman"
    assert doc.sections[-1].orientation == 1  # appendix A in landscape


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) is not installed")
def test_libreoffice_converts_the_docx_without_error(built, tmp_path):
    _, out, _, _ = built
    res = subprocess.run(["soffice", "--headless", "--convert-to", "pdf", "--outdir", str(tmp_path),
                          str(out.with_suffix(".docx"))], capture_output=True, text=True, timeout=240)
    pdf = tmp_path / "report.pdf"
    assert res.returncode == 0 and pdf.is_file(), res.stderr
    text = pdf_text(pdf)
    assert "СПИСОК ИСПОЛЬЗОВАННЫХ ИСТОЧНИКОВ" in text and "Рисунок 1 –" in text
    toc = text[text.index("СОДЕРЖАНИЕ"):text.index("1 Цель работы", text.index("СОДЕРЖАНИЕ") + 20)]
    assert re.search(r"Цель работы, постановка задачи исследования\s*\.+\s*\d+", toc)  # page numbers computed


# --- safety and robustness ---------------------------------------------------------------------------
def test_hostile_title_is_escaped(tmp_path):
    title = "<script>alert(1)</script><img src=file:///etc/passwd>"
    config, store = make_study(tmp_path, {**RU, "title": title.replace('"', "'")}, skip=("r20", "r110-bn", "r110-nobn"))
    html = tmp_path / "r.html"
    build(config, store, [tmp_path / "r.pdf", tmp_path / "r.docx"], html)
    page = html.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img src=file:///etc/passwd>" not in page
    assert "<script>alert(1)</script>" in pdf_text(tmp_path / "r.pdf")  # shown as text


def test_fetcher_serves_only_allowed_folders(tmp_path):
    allowed = tmp_path / "ok"
    allowed.mkdir()
    (allowed / "a.svg").write_text("<svg/>")
    fetch = _LocalOnlyFetcher([allowed])
    assert fetch.fetch((allowed / "a.svg").as_uri()).read() == b"<svg/>"
    for url in ("file:///etc/passwd", "http://example.com/x.png", "https://example.com/",
                (allowed / ".." / "x").as_uri()):
        with pytest.raises(ValueError, match="blocked"):
            fetch.fetch(url)


def test_partial_and_empty_store(tmp_path):
    config, store = make_study(tmp_path, skip=("r110-nobn",))
    built = build(config, store, tmp_path / "partial.pdf")
    text = pdf_text(tmp_path / "partial.pdf")
    assert "не запускался" in text
    assert built.study.counts["missing"] == 4
    empty = build(config, RunStore(tmp_path / "nothing"), [tmp_path / "empty.pdf", tmp_path / "empty.docx"])
    assert empty.study.counts["missing"] == len(config.runs)
    assert "labreport run" in pdf_text(tmp_path / "empty.pdf")


def test_two_builds_same_bytes(tmp_path):
    config, store = make_study(tmp_path, skip=("r20",))
    a, b = tmp_path / "a" / "r.pdf", tmp_path / "b" / "r.pdf"
    build(config, store, a)
    build(config, store, b)
    assert pdf_text(a) == pdf_text(b)
    for name in ("curves_5.svg", "bn_seeds.svg", "resources.png"):
        assert (a.parent / "r_files" / name).read_bytes() == (b.parent / "r_files" / name).read_bytes()
    assert a.read_bytes() == b.read_bytes()


def test_failed_build_keeps_previous_pdf(tmp_path, monkeypatch):
    config, store = make_study(tmp_path, skip=("r20", "r110-bn", "r110-nobn"))
    out = tmp_path / "r.pdf"
    build(config, store, out)
    before = out.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr("weasyprint.HTML.write_pdf", boom)
    with pytest.raises(RuntimeError):
        build(config, store, out)
    assert out.read_bytes() == before


def with_user_template(tmp_path, name: str, text: str):
    """The study's config with [report] templates = "mytpl", holding one template `name`."""
    (tmp_path / "mytpl").mkdir()
    (tmp_path / "mytpl" / name).write_text(text)
    toml = tmp_path / "experiments.toml"
    toml.write_text(toml.read_text().replace('language = "ru"', 'language = "ru"\ntemplates = "mytpl"'))
    return load_config(toml)


def test_user_templates_override_file_by_file(tmp_path):
    config, store = make_study(tmp_path, skip=("r20", "r110-bn", "r110-nobn"))
    config = with_user_template(tmp_path, "title.html.j2",
                                "<section><p>МОЙ ТИТУЛЬНЫЙ ЛИСТ {{ title_page.title }}</p></section>")
    build(config, store, tmp_path / "r.pdf", tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert f"МОЙ ТИТУЛЬНЫЙ ЛИСТ {RU['title']}" in html  # the user's title page ...
    assert "Цель работы, постановка задачи исследования" in html  # ... and the shipped sections around it


def test_an_added_experiment_appears_without_template_changes(tmp_path):
    config, store = make_study(tmp_path, skip=("r20", "r110-bn", "r110-nobn"))
    text = ((tmp_path / "experiments.toml").read_text()
            + '\n[[experiment]]\nname = "my-new-one"\ntask = 7\nmodel = "resnet44"\n')
    (tmp_path / "experiments.toml").write_text(text)
    config = load_config(tmp_path / "experiments.toml")
    run = next(r for r in config.runs if r.experiment == "my-new-one")
    res, hist = fake_result(run, 0.93, 0.93)
    store.write_history(run.key, hist)
    store.write_result(run.key, res)
    built = build(config, store, tmp_path / "r.pdf")
    text = " ".join(pdf_text(tmp_path / "r.pdf").split())
    assert "Задание 7" in text and "ResNet-44" in text  # its own task section and the tables
    assert built.study.ranking.best.label == "my-new-one"  # and the best-model conclusion
    assert "curves_7.svg" in {p.name for p in built.summary.parent.iterdir()}


def test_a_missing_template_or_a_bad_suffix_is_a_one_line_error(tmp_path):
    from labreport.errors import LabreportError

    config, store = make_study(tmp_path, skip=("r20", "r110-bn", "r110-nobn"))
    with pytest.raises(LabreportError, match="template nowhere.html.j2 not found"):
        build(with_user_template(tmp_path, "report.html.j2", '{% include "nowhere.html.j2" %}'), store,
              tmp_path / "r.pdf")
    with pytest.raises(LabreportError, match="the suffix picks the format"):
        build(config, store, tmp_path / "r.odt")


def test_the_bn_claim_profile_shows_one_table_of_arms_per_init(tmp_path):
    """A hand-made store of the shipped bn-claim profile: the BN control trains; He 0/10, PyTorch 1/10,
    Fixup 8/10 without BN. The task-5 section has one table (arm, init, k/N, share, Wilson, p, verdict)
    and a sentence per arm that follows from its numbers."""
    shipped = (Path(__file__).resolve().parents[2] / "experiments.toml").read_text(encoding="utf-8")
    (tmp_path / "experiments.toml").write_text(shipped, encoding="utf-8")  # no gradflow measured: a hint instead
    config = load_config(tmp_path / "experiments.toml", "bn-claim")
    store = RunStore(tmp_path / "runs")
    trained_seeds = {"he": set(), "torch": {3}, "fixup": set(range(8))}
    for i, run in enumerate(config.runs):
        s = run.spec
        ok = s.norm == "batch" or s.seed in trained_seeds[s.init]
        acc = 0.7 if ok else 0.1
        res, hist = fake_result(run, acc, acc, offset=3 * i)
        store.write_history(run.key, hist)
        store.write_result(run.key, res)
    built = build(config, store, tmp_path / "r.pdf", tmp_path / "r.html")
    (claim,) = built.study.bn
    assert [(a.init, a.k, a.n, a.verdict) for a in claim.arms] == [
        ("he", 0, 10, "consistent"), ("torch", 1, 10, "consistent"), ("fixup", 8, 10, "contradicted")]
    assert claim.control.k == 3 and claim.control_trains
    text = " ".join(pdf_text(tmp_path / "r.pdf").split())
    assert "ResNet-110 с BatchNorm и без него: доля обучившихся запусков" in text
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    rows = [" ".join(unescape(re.sub(r"<[^>]+>", " ", tr)).split()) for tr in re.findall(r"<tr>(.*?)</tr>", html, re.S)]
    for row in ("с BN (контроль) He 3/3 100 % 44 %–100 % 0,001 обучается",
                "без BN He 0/10 0 % 0 %–28 % 1,000 согласуется",
                "без BN PyTorch по умолчанию 1/10 10 % 2 %–40 % 0,651 согласуется",
                "без BN Fixup 8/10 80 % 49 %–94 % < 0,001 опровергается"):
        assert row in [r.replace("\xa0", " ") for r in rows], row
    prose = " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split()).replace("\xa0", " ")
    assert "Без BatchNorm, инициализация Fixup: обучившихся запусков – 8 из 10 (80 %" in prose
    assert "Утверждение опровергается" in prose and "Результат согласуется" in prose
