"""The Word document read back: tables continued as ГОСТ 7.32 asks (the header row repeated, short
tables kept on one page), names and the group never broken at their hyphen, one pair of quotes
around the title, the bundled fonts embedded (ECMA-376 17.8.1) and read by LibreOffice: on a machine
with DejaVu alone the DOCX has the PDF's page count."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import docx
import pytest
from docx.oxml.ns import qn
from lxml import etree
from pypdf import PdfReader

from labreport.config import load_config
from labreport.report.build import FONTS_DIR, build
from labreport.report.word import KEEP_ROWS
from labreport.report.wordfonts import font_key, obfuscate
from labreport.report.wordlayout import column_widths, text_extent
from labreport.store import RunStore
from labreport.testing import write_study_store

ROOT = Path(__file__).resolve().parents[2]
TITLE_PAGE = {"title": "«Исследование ResNet»", "group": "АВТ-213",
              "university": "Новосибирский государственный технический университет"}


def lab_toml(folder: Path, lang: str) -> Path:
    """The lab's experiments.toml in `lang`, its title already in quotes and the group with a hyphen."""
    text = (ROOT / "experiments.toml").read_text(encoding="utf-8").replace('language = "ru"', f'language = "{lang}"')
    for key, value in TITLE_PAGE.items():
        text = re.sub(rf'(?m)^{key} = ".*"', f'{key} = "{value}"', text)
    path = folder / f"{lang}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """The smoke profile's report of a made-up smoke store (the store `run --profile smoke` leaves),
    per language: (PDF, DOCX)."""
    tmp = tmp_path_factory.mktemp("word")
    write_study_store(tmp / "runs", lab_toml(tmp, "ru"), ("smoke",), n_test=256)
    out = {}
    for lang in ("ru", "en"):
        pdf, docx_path = tmp / f"{lang}.pdf", tmp / f"{lang}.docx"
        build(load_config(lab_toml(tmp, lang), "smoke"), RunStore(tmp / "runs"), [pdf, docx_path])
        out[lang] = pdf, docx_path
    return out


def data_tables(doc) -> list:
    return [t for t in doc.tables if t._tbl.tblPr.find(qn("w:tblBorders")) is None]  # not the signatures'


def test_every_table_repeats_its_header_row_and_a_short_one_stays_on_one_page(smoke):
    doc = docx.Document(smoke["ru"][1])
    tables = data_tables(doc)
    assert len(tables) >= 8
    for t in tables:
        rows = t._tbl.tr_lst
        assert rows[0].trPr.find(qn("w:tblHeader")) is not None  # Word repeats it on every page
        assert all(tr.trPr.find(qn("w:cantSplit")) is not None for tr in rows)  # no row broken across pages
        kept = [all(p.paragraph_format.keep_with_next for c in r.cells for p in c.paragraphs) for r in t.rows]
        if len(rows) <= KEEP_ROWS:
            assert all(kept[:-1]) and not any(kept[-1:])  # the whole table with the paragraph after it
        else:
            assert not any(kept[1:])  # a long table breaks where it must, its header row repeated
    captions = [p for p in doc.paragraphs if p.text.startswith("Таблица ")]
    assert captions and all(p.paragraph_format.keep_with_next for p in captions)


def test_a_long_table_repeats_its_header_and_breaks(tmp_path):
    """Appendix A of the full matrix: 27 runs, more than a page; every row may start a page but the header."""
    config = load_config(lab_toml(tmp_path, "ru"))
    build(config, RunStore(tmp_path / "runs"), tmp_path / "r.docx")
    appendix = data_tables(docx.Document(tmp_path / "r.docx"))[-1]
    assert len(appendix.rows) == len(config.runs) + 1 > KEEP_ROWS
    header = [tr.trPr.find(qn("w:tblHeader")) is not None for tr in appendix._tbl.tr_lst]
    assert header[0] and not any(header[1:])


def test_names_and_the_group_keep_their_hyphen_and_the_title_its_one_pair_of_quotes(smoke):
    doc = docx.Document(smoke["ru"][1])
    body = doc.element.body
    group = next(r for r in body.iter(qn("w:r")) if "АВТ" in "".join(t.text or "" for t in r.iter(qn("w:t"))))
    assert group.find(qn("w:noBreakHyphen")) is not None  # Word's non-breaking hyphen: no "АВТ-" / "213"
    runs = [r for r in body.iter(qn("w:r")) if r.find(qn("w:noBreakHyphen")) is not None]
    texts = {"".join("-" if c.tag == qn("w:noBreakHyphen") else c.text or "" for c in r) for r in runs}
    assert {"ResNet-110", "ResNet-20"} <= {t.strip() for t in texts}  # model names too
    assert not any("-" in (t.text or "") for r in runs for t in r.iter(qn("w:t")))  # every hyphen of them
    for lang, title in (("ru", "«Исследование ResNet»"), ("en", "“Исследование ResNet”")):
        paragraphs = [p.text for p in docx.Document(smoke[lang][1]).paragraphs]
        assert title in paragraphs
        assert not [t for t in paragraphs if re.search(r"««|»»|““|””", t)]


def test_the_bundled_fonts_are_embedded_obfuscated(smoke):
    """ECMA-376 17.8.1: each file under word/fonts as .odttf, its first 32 bytes XORed with its key;
    fontTable names it, settings say embedTrueTypeFonts, before the settings the schema puts after it."""
    w = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    with zipfile.ZipFile(smoke["ru"][1]) as z:
        fonts = etree.fromstring(z.read("word/fontTable.xml"))
        rels = {r.get("Id"): r.get("Target") for r in etree.fromstring(z.read("word/_rels/fontTable.xml.rels"))}
        settings = [etree.QName(c).localname for c in etree.fromstring(z.read("word/settings.xml"))]
        content_types = z.read("[Content_Types].xml").decode()
        entry = next(f for f in fonts if f.get(w + "name") == "Liberation Serif")
        embedded = {etree.QName(e).localname: e for e in entry if etree.QName(e).localname.startswith("embed")}
        assert set(embedded) == {"embedRegular", "embedBold", "embedItalic", "embedBoldItalic"}
        regular = embedded["embedRegular"]
        stored = z.read("word/" + rels[regular.get("{http://schemas.openxmlformats.org/officeDocument/2006/"
                                                    "relationships}id")])
    original = (FONTS_DIR / "LiberationSerif-Regular.ttf").read_bytes()
    key = regular.get(w + "fontKey")
    assert re.fullmatch(r"\{[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}\}", key) and key == font_key(original)
    assert stored != original and stored[32:] == original[32:] and obfuscate(stored, key) == original
    assert "embedTrueTypeFonts" in settings and settings.index("embedTrueTypeFonts") < settings.index("defaultTabStop")
    assert settings.index("updateFields") < settings.index("compat")  # each where the schema puts it
    assert "application/vnd.openxmlformats-officedocument.obfuscatedFont" in content_types
    body = docx.Document(smoke["ru"][1]).styles["Normal"].element.rPr.rFonts
    assert body.get(qn("w:ascii")) == "Times New Roman"  # as ГОСТ names it; Liberation Serif stands in


def test_columns_are_as_wide_as_their_texts_need():
    """Measured with the font: every word fits its column, and a table whose texts fit on one line
    each spans the text width in proportion to them."""
    font = FONTS_DIR / "LiberationSerif-Regular.ttf"
    rows = [["Конфигурация", "Запусков", "Точность"],
            ["ResNet-20, dropout 0,15, L2 1·10⁻⁴", "3/3", "86,48\u00a0±\u00a00,42\u00a0%"]]
    cells = [[text_extent(t, font, 12) for t in row] for row in rows]
    words = [max(row[i][0] for row in cells) for i in range(3)]
    lines = [max(row[i][1] for row in cells) for i in range(3)]
    wide = column_widths(cells, 3, 165.0)  # room for every text on one line: in proportion to them
    assert sum(wide) == pytest.approx(165)
    assert [w / wide[0] for w in wide] == pytest.approx([t / lines[0] for t in lines])
    narrow = column_widths(cells, 3, 95.0)  # less room: every column its widest word at least, the name wraps
    assert sum(narrow) == pytest.approx(95) and all(n >= w for n, w in zip(narrow, words)) and narrow[0] < lines[0]
    assert cells[1][2][0] == cells[1][2][1]  # "86,48 ± 0,42 %" holds no-break spaces: one word


# --- LibreOffice with DejaVu alone ------------------------------------------------------------------------
def dejavu_only(tmp: Path) -> dict[str, str]:
    """The environment of a machine whose only fonts are DejaVu: a fontconfig of one folder, a fresh
    HOME and LibreOffice profile."""
    fonts = tmp / "fonts"
    fonts.mkdir()
    listed = subprocess.run(["fc-list", "--format", "%{file}|%{family}\n"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        file, _, family = line.partition("|")
        if family.startswith("DejaVu"):
            shutil.copy(file, fonts)
    if not any(fonts.iterdir()):
        pytest.skip("no DejaVu font installed to keep")
    conf = tmp / "fonts.conf"
    conf.write_text(f'<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig><dir>{fonts}</dir>'
                    f"<cachedir>{tmp / 'cache'}</cachedir></fontconfig>", encoding="utf-8")
    (tmp / "home").mkdir()
    return {**os.environ, "FONTCONFIG_FILE": str(conf), "HOME": str(tmp / "home")}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None or shutil.which("fc-list") is None,
                    reason="LibreOffice (soffice) or fontconfig is not installed")
def test_libreoffice_with_dejavu_alone_lays_the_docx_out_as_the_pdf(smoke, tmp_path):
    """Without Times New Roman or Liberation installed, LibreOffice reads the embedded Liberation
    Serif: the DOCX has the PDF's page count ±1 (without the fonts embedded: 27 pages against 21)."""
    env = dejavu_only(tmp_path)
    for lang, (pdf, docx_path) in smoke.items():
        # a profile of its own: LibreOffice keeps a document's embedded fonts in its profile
        profile = (tmp_path / f"profile-{lang}").as_uri()
        res = subprocess.run(["soffice", f"-env:UserInstallation={profile}", "--headless", "--convert-to", "pdf",
                              "--outdir", str(tmp_path / lang), str(docx_path)],
                             capture_output=True, text=True, timeout=300, env=env)
        converted = tmp_path / lang / f"{lang}.pdf"
        assert res.returncode == 0 and converted.is_file(), res.stderr
        fonts = subprocess.run(["pdffonts", str(converted)], capture_output=True, text=True).stdout \
            if shutil.which("pdffonts") else "LiberationSerif"
        assert "LiberationSerif" in fonts  # the embedded font, not DejaVu in its place
        pages, want = len(PdfReader(converted).pages), len(PdfReader(pdf).pages)
        assert abs(pages - want) <= 1, (lang, pages, want)
