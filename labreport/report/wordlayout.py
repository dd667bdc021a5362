"""The Word document's page and styles in the form of ГОСТ 7.32-2017 (6.1.1): A4, margins
30/15/20/20 mm, Times New Roman, 1.5 lines, a 1.25 cm paragraph indent, bold headings, 12 pt
captions, page numbers centred at the bottom; and the widths of a table's columns, measured
from their texts as a browser would (Word lays out what it is given)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from docx.enum.section import WD_ORIENT
from docx.enum.style import WD_STYLE_TYPE
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING, WD_TAB_ALIGNMENT
from docx.shared import Cm, Mm, Pt, RGBColor

from labreport.report import ooxml as ox

DOCX_FONT = "Times New Roman"  # what ГОСТ names; the PDF uses its metric twin, Liberation Serif
METRIC_TWINS = {"Liberation Serif": DOCX_FONT, "Liberation Mono": "Courier New"}  # same widths, glyph by glyph
INDENT = Cm(1.25)  # paragraph indent, ГОСТ 7.32 6.1.1
TEXT_WIDTH = Mm(210 - 30 - 15)  # A4 portrait less the left and right margins: the contents' page numbers


def docx_font(family: str) -> str:
    """The name the Word document gives the report's font: Times New Roman for Liberation Serif (its
    metric twin; the embedded Liberation Serif stands in for it where it is not installed)."""
    return METRIC_TWINS.get(family, family)


def set_styles(doc, size, size_table, font: str = DOCX_FONT) -> None:
    """Normal, Heading 1-3, Caption and the contents' styles (toc 1, toc 2), in `font`."""
    st = doc.styles
    normal = st["Normal"]
    normal.font.size = size
    normal.font.color.rgb = RGBColor(0, 0, 0)
    ox.set_fonts(normal.element, font)
    pf = normal.paragraph_format
    pf.line_spacing_rule, pf.line_spacing = WD_LINE_SPACING.MULTIPLE, 1.5
    pf.space_before = pf.space_after = Pt(0)
    pf.first_line_indent = INDENT
    pf.alignment = WD_ALIGN_PARAGRAPH.JUSTIFY
    pf.widow_control = True
    for level in (1, 2, 3):
        _heading(st[f"Heading {level}"], level, size, font)
    caption = st["Caption"]
    caption.font.size, caption.font.bold, caption.font.italic = size_table, False, False
    caption.font.color.rgb = RGBColor(0, 0, 0)
    ox.set_fonts(caption.element, font)
    cf = caption.paragraph_format
    cf.first_line_indent, cf.space_before, cf.space_after = Cm(0), Pt(4), Pt(8)
    cf.line_spacing = 1.0  # single, as the PDF's captions (line-height 1.2 em), not the body's 1.5
    for name, indent in (("toc 1", Cm(0)), ("toc 2", Cm(1.25))):
        s = st.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
        s.base_style = normal
        s.paragraph_format.first_line_indent, s.paragraph_format.left_indent = Cm(0), indent
        s.paragraph_format.alignment = WD_ALIGN_PARAGRAPH.LEFT
        s.paragraph_format.tab_stops.add_tab_stop(TEXT_WIDTH, WD_TAB_ALIGNMENT.RIGHT, 1)  # dot leader


def _heading(h, level: int, size, font: str) -> None:
    h.font.size, h.font.bold, h.font.italic = size, True, level == 3
    h.font.color.rgb = RGBColor(0, 0, 0)
    ox.set_fonts(h.element, font)
    hf = h.paragraph_format
    hf.first_line_indent, hf.left_indent = INDENT, Cm(0)
    hf.alignment = WD_ALIGN_PARAGRAPH.LEFT
    hf.space_before, hf.space_after = Pt(0 if level == 1 else 12), Pt(12)
    hf.keep_with_next = True
    hf.line_spacing_rule, hf.line_spacing = WD_LINE_SPACING.MULTIPLE, 1.5


def set_page(section, landscape: bool) -> None:
    if landscape:
        section.orientation = WD_ORIENT.LANDSCAPE
        section.page_width, section.page_height = Mm(297), Mm(210)
        section.top_margin, section.bottom_margin = Mm(30), Mm(15)  # the binding edge is on top
        section.left_margin = section.right_margin = Mm(20)
    else:
        section.orientation = WD_ORIENT.PORTRAIT
        section.page_width, section.page_height = Mm(210), Mm(297)
        section.top_margin = section.bottom_margin = Mm(20)  # ГОСТ 7.32 6.1.1
        section.left_margin, section.right_margin = Mm(30), Mm(15)
    section.footer_distance = Mm(10)


def add_page_number(section) -> None:
    p = section.footer.paragraphs[0]
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    p.paragraph_format.first_line_indent = Cm(0)
    ox.field(p, "PAGE", "1")
    for r in p.runs:
        r.font.size = Pt(12)


def column_widths(cells: list[list[tuple[float, float] | None]], n_cols: int, width_mm: float) -> list[float]:
    """Column widths in mm, as a browser lays out a table 100 % wide (CSS 2.1, 17.5.2.2): each column
    gets at least its widest word (no word is broken), the room left goes in proportion to what its
    texts need beyond that on one line, and the room left then in proportion to the widths.
    `cells`: each row's (widest word, whole text) in mm, padding included (None where a span covers
    the slot or starts a multi-column cell); see text_extent."""
    lo, hi = [1.0] * n_cols, [1.0] * n_cols
    for row in cells:
        for ci, extent in enumerate(row):
            if extent is not None:
                lo[ci], hi[ci] = max(lo[ci], extent[0]), max(hi[ci], extent[1])
    if sum(lo) >= width_mm:
        return [width_mm * w / sum(lo) for w in lo]
    if sum(hi) <= width_mm:  # every text on one line: the table spans the text width, as in the PDF
        return [width_mm * w / sum(hi) for w in hi]
    share = (width_mm - sum(lo)) / (sum(hi) - sum(lo))
    return [a + (b - a) * share for a, b in zip(lo, hi)]


# a cell's left and right padding (ox.cell_margins: 4 pt each), and 1 mm more: Word and LibreOffice
# round widths to twips and draw the borders inside the cell, and then break a word that just fits
PADDING_MM = 8 / 72 * 25.4 + 1.0


def text_extent(text: str, font_file: Path, size_pt: float) -> tuple[float, float]:
    """(widest word, whole text) in mm at size_pt, padding included, from the font's own advance
    widths: the PDF's table was laid out with the same font, so the columns come out alike. A word
    runs to the next breakable space ("86,48 ± 0,42 %" holds no-break spaces)."""
    advances, units, fallback = _advances(str(font_file))
    scale = size_pt / units * 25.4 / 72

    def mm(t: str) -> float:
        return sum(advances.get(ord(c), fallback) for c in t) * scale

    words = [w for w in re.split(r"[ \t\r\n]+", text) if w]
    return max((mm(w) for w in words), default=0.0) + PADDING_MM, mm(" ".join(words)) + PADDING_MM


@functools.lru_cache(maxsize=8)
def _advances(font_file: str) -> tuple[dict[int, int], int, int]:
    """The font's advance width of each character, its units per em, and the width of a character it lacks."""
    from fontTools.ttLib import TTFont

    font = TTFont(font_file, lazy=True)
    hmtx = font["hmtx"]
    advances = {cp: hmtx[glyph][0] for cp, glyph in font.getBestCmap().items()}
    units = font["head"].unitsPerEm
    return advances, units, units // 2
