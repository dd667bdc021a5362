"""The Word document's page and styles in the form of ГОСТ 7.32-2017 (6.1.1): A4, margins
30/15/20/20 mm, Times New Roman, 1.5 lines, a 1.25 cm paragraph indent, bold headings, 12 pt
captions, page numbers centred at the bottom; and the widths of a table's columns, measured
from their texts as a browser would (Word lays out what it is given)."""

from __future__ import annotations

import re

from docx.enum.section import WD_ORIENT
from docx.enum.style import WD_STYLE_TYPE
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING, WD_TAB_ALIGNMENT
from docx.shared import Cm, Mm, Pt, RGBColor

from labreport.report import ooxml as ox

DOCX_FONT = "Times New Roman"  # what ГОСТ names; the PDF uses its metric twin, Liberation Serif
INDENT = Cm(1.25)  # paragraph indent, ГОСТ 7.32 6.1.1
TEXT_WIDTH = Mm(210 - 30 - 15)  # A4 portrait less the left and right margins: the contents' page numbers


def set_styles(doc, size, size_table) -> None:
    """Normal, Heading 1-3, Caption and the contents' styles (toc 1, toc 2)."""
    st = doc.styles
    normal = st["Normal"]
    normal.font.size = size
    normal.font.color.rgb = RGBColor(0, 0, 0)
    ox.set_fonts(normal.element, DOCX_FONT)
    pf = normal.paragraph_format
    pf.line_spacing_rule, pf.line_spacing = WD_LINE_SPACING.MULTIPLE, 1.5
    pf.space_before = pf.space_after = Pt(0)
    pf.first_line_indent = INDENT
    pf.alignment = WD_ALIGN_PARAGRAPH.JUSTIFY
    pf.widow_control = True
    for level in (1, 2, 3):
        _heading(st[f"Heading {level}"], level, size)
    caption = st["Caption"]
    caption.font.size, caption.font.bold, caption.font.italic = size_table, False, False
    caption.font.color.rgb = RGBColor(0, 0, 0)
    ox.set_fonts(caption.element, DOCX_FONT)
    cf = caption.paragraph_format
    cf.first_line_indent, cf.space_before, cf.space_after = Cm(0), Pt(4), Pt(8)
    cf.line_spacing_rule, cf.line_spacing = WD_LINE_SPACING.SINGLE, None
    for name, indent in (("toc 1", Cm(0)), ("toc 2", Cm(1.25))):
        s = st.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
        s.base_style = normal
        s.paragraph_format.first_line_indent, s.paragraph_format.left_indent = Cm(0), indent
        s.paragraph_format.alignment = WD_ALIGN_PARAGRAPH.LEFT
        s.paragraph_format.tab_stops.add_tab_stop(TEXT_WIDTH, WD_TAB_ALIGNMENT.RIGHT, 1)  # dot leader


def _heading(h, level: int, size) -> None:
    h.font.size, h.font.bold, h.font.italic = size, True, level == 3
    h.font.color.rgb = RGBColor(0, 0, 0)
    ox.set_fonts(h.element, DOCX_FONT)
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


def column_widths(texts: list[list[str | None]], n_cols: int, size_pt: float, width_mm: float) -> list[float]:
    """Column widths in mm by content, as a browser lays a table out: every column first gets its
    longest word (so no word is broken), the room left goes to the columns with longer texts.
    `texts`: each row's cell texts (None where a span covers the slot or starts a multi-column cell)."""
    char = size_pt * 0.56 / 72 * 25.4  # mm per character of a serif font (Cyrillic is wide), roughly
    pad = 8 / 72 * 25.4  # mm: the cell's left and right padding
    longest, desired = [1.0] * n_cols, [1.0] * n_cols
    for row in texts:
        for ci, text in enumerate(row):
            if text is not None:
                # a word runs to the next breakable space: "86,48 ± 0,42 %" holds no-break spaces
                longest[ci] = max(longest[ci], 1 + max((len(w) for w in re.split(r"[ \t\r\n]+", text) if w), default=1))
                desired[ci] = max(desired[ci], min(len(text), 45))
    base = [w * char + pad for w in longest]
    if sum(base) >= width_mm:
        return [width_mm * b / sum(base) for b in base]
    extra = [max(0.0, d - w) * char for d, w in zip(desired, longest)]
    share = min(1.0, (width_mm - sum(base)) / sum(extra)) if sum(extra) else 0.0
    mm = [b + e * share for b, e in zip(base, extra)]
    spare = width_mm - sum(mm)  # the table spans the text width, as in the PDF
    return [m + spare * m / sum(mm) for m in mm]
