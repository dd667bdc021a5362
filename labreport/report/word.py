"""The report's HTML -> an editable Word document, with the PDF's ГОСТ 7.32 layout.

The templates render one HTML document, the report's content model (see templates/macros.html.j2
for its vocabulary); this module writes the same document with python-docx, element by element,
so the DOCX holds the PDF's sentences, tables and figures and no second copy of any of them:

    h1 / h2 / h3           Word's Heading 1-3 (navigation pane and table of contents work), each
                           with a bookmark; h1 starts a page, h1.structural is centred
    nav.toc                the contents (СОДЕРЖАНИЕ): links to the headings' bookmarks with PAGEREF page
                           numbers (LibreOffice computes them; Word on opening, updateFields)
    p, ol, ul, p.formula   paragraphs in the body style; a formula centred with its number at the
                           right margin (tab stops)
    table                  a real table, its header rows repeated on every page, a short one kept
                           on one page, its columns measured with the report's fonts
    figure                 the PNG of the figure and its caption
    section.title-page     the title page: counted, not numbered (a different first-page footer);
                           it and the contents are written by wordfront.py
    section.landscape      a landscape section (appendix A)

The body font is Times New Roman, as ГОСТ 7.32-2017 (6.1.1) names it (with the default [report]
font; another bundled font is named as itself). The PDF's fonts are embedded (wordfonts.py): Word
has Times New Roman, and where it is missing LibreOffice lays the text out with the embedded Liberation
Serif, its metric twin, so lines and pages break as in the PDF.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from docx import Document
from docx.enum.section import WD_SECTION
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_BREAK, WD_TAB_ALIGNMENT
from docx.shared import Cm, Mm, Pt

from labreport.report import ooxml as ox
from labreport.report.wordfonts import FONTS_DIR, embed_fonts, embedded
from labreport.report.wordfront import FrontMatter
from labreport.report.wordlayout import (INDENT, add_page_number, column_widths, docx_font, set_page, set_styles,
                                         text_extent)

MONO_FONT = "Courier New"
# A table of this many rows or fewer is kept on one page with its caption, so it is never continued
# (at most ~1.2 cm a row at 12 pt: ~10 cm, the most that moving it to the next page leaves blank).
# Word cannot write "Продолжение таблицы N" where it breaks a longer table; it repeats the header
# row there (docs/report.md).
KEEP_ROWS = 8
_SPACE = re.compile(r"[ \t\r\n]+")  # HTML white space (not the non-breaking space of "25,90 %")


def docx_bytes(html: str, font: dict, allowed: list[Path]) -> bytes:
    """The Word document of the report's HTML; figures are read only from the `allowed` folders."""
    import lxml.html

    root = lxml.html.document_fromstring(html)
    writer = _Writer(font, [p.resolve() for p in allowed])
    writer.write(root.find("body"))
    buf = io.BytesIO()
    writer.doc.save(buf)
    return embed_fonts(buf.getvalue(), embedded(font))


def _table_rows(el) -> tuple[list, set[int]]:
    """A table's tr elements in order (in thead, tbody, tfoot or bare), and the ids of the header's."""
    rows, header = [], set()
    for part in el:
        group = part if part.tag in ("thead", "tbody", "tfoot") else [part]
        for tr in group:
            if tr.tag == "tr":
                rows.append(tr)
                if part.tag == "thead":
                    header.add(id(tr))
    return rows, header


# --------------------------------------------------------------------------------------------
class _Writer(FrontMatter):
    def __init__(self, font: dict, allowed: list[Path]):
        self.size, self.size_table = Pt(font["size"]), Pt(font["size_table"])
        self.files = font  # the report's font files (settings.FontSet), for measuring table columns
        self.allowed = allowed
        self.doc = Document()
        self.bookmarks = 0
        self.section_fresh = True  # no page break before an h1 that opens a section
        set_styles(self.doc, self.size, self.size_table, docx_font(font["family"]))
        set_page(self.doc.sections[0], landscape=False)
        add_page_number(self.doc.sections[0])
        self.doc.sections[0].different_first_page_header_footer = True  # the title page has no number
        ox.update_fields_on_open(self.doc)  # Word refreshes the contents' page references on opening
        self.doc.core_properties.author = ""
        self.doc.core_properties.comments = ""

    # ---- the walk ----------------------------------------------------------------------------
    def write(self, body) -> None:
        for el in body:
            self.block(el)

    def block(self, el) -> None:
        tag, cls = el.tag, set((el.get("class") or "").split())
        if tag == "section" and "title-page" in cls:
            self.title_page(el)
        elif tag == "section" and "landscape" in cls:
            sec = self.doc.add_section(WD_SECTION.NEW_PAGE)
            set_page(sec, landscape=True)
            self.section_fresh = True
            for child in el:
                self.block(child)
        elif tag == "nav":
            self.toc(el)
        elif tag in ("h1", "h2", "h3"):
            self.heading(el, int(tag[1]), "structural" in cls)
        elif tag == "p":
            self.paragraph(el, cls)
        elif tag in ("ol", "ul"):
            self.listing(el, ordered=tag == "ol", refs="references" in cls)
        elif tag == "table":
            self.table(el, landscape="all-runs" in cls)
        elif tag == "figure":
            self.figure(el)
        elif tag in ("div", "section"):
            for child in el:
                self.block(child)
        # anything else (style, script, comments) carries no content

    # ---- inline text -------------------------------------------------------------------------
    def inline(self, paragraph, el, *, bold=False, italic=False, mono=False, sup=False, sub=False,
               size=None, skip_self_text=False, ident=False) -> None:
        """el's text and children as runs (b, strong, i, em, sup, sub, span.mono, a, br); the hyphens
        of a name or identifier (span.id) as Word's non-breaking hyphens."""
        def run(text, b=bold, i=italic, m=mono, up=sup, down=sub):
            text = _SPACE.sub(" ", text or "")  # white space collapses, as it does in HTML
            last = ox.last_text(paragraph)
            if last is None or last.endswith((" ", "\n", "\t")):
                text = text.lstrip(" ")
            if not text:
                return
            r = paragraph.add_run(text)
            r.bold, r.italic = b or None, i or None
            if up:
                r.font.superscript = True
            if down:
                r.font.subscript = True
            if size is not None:
                r.font.size = size
            if m:
                ox.set_fonts(r._r, MONO_FONT)
                r.font.size = Pt(max(8, (size or self.size).pt - 2))
            if ident:
                ox.no_break_hyphens(r)

        if not skip_self_text:
            run(el.text)
        for child in el:
            t = child.tag if isinstance(child.tag, str) else ""
            ccls = set((child.get("class") or "").split())
            if t == "br":
                paragraph.add_run().add_break(WD_BREAK.LINE)
            elif t in ("b", "strong", "i", "em", "sup", "sub", "span", "a", "code"):
                self.inline(paragraph, child, bold=bold or t in ("b", "strong"), italic=italic or t in ("i", "em"),
                            mono=mono or "mono" in ccls or t == "code", sup=sup or t == "sup", sub=sub or t == "sub",
                            size=size, ident=ident or "id" in ccls)
            elif t:
                self.inline(paragraph, child, bold=bold, italic=italic, mono=mono, size=size, ident=ident)
            run(child.tail)

    def fill(self, paragraph, el, **style) -> None:
        """A block's content as runs, without the white space at its edges (as HTML renders it)."""
        self.inline(paragraph, el, **style)
        for r in reversed(paragraph.runs):
            if r.text:
                if r.text.endswith(" "):  # setting the text anew would turn non-breaking hyphens into "-"
                    r.text = r.text.rstrip(" ")
                break

    @staticmethod
    def text(el) -> str:
        """The element's text with HTML's white space collapsed (no-break spaces kept: they bind)."""
        return _SPACE.sub(" ", "".join(el.itertext())).strip()

    # ---- blocks --------------------------------------------------------------------------------
    def heading(self, el, level: int, structural: bool) -> None:
        p = self.doc.add_heading("", level=level)
        self.fill(p, el)
        if structural:
            p.alignment = WD_ALIGN_PARAGRAPH.CENTER
            p.paragraph_format.first_line_indent = Cm(0)
        if level == 1 and not self.section_fresh:
            p.paragraph_format.page_break_before = True  # each main section on a new page
        self.section_fresh = False
        if el.get("id"):
            self.bookmarks += 1
            ox.bookmark(p, ox.bookmark_name(el.get("id")), self.bookmarks)

    def paragraph(self, el, cls: set) -> None:
        if "formula" in cls:
            return self.formula(el)
        p = self.doc.add_paragraph()
        if "table-caption" in cls:
            p.style = self.doc.styles["Caption"]
            p.alignment = WD_ALIGN_PARAGRAPH.LEFT
            p.paragraph_format.keep_with_next = True
        elif "appendix-title" in cls:
            p.alignment = WD_ALIGN_PARAGRAPH.CENTER
            p.paragraph_format.first_line_indent = Cm(0)
            self.fill(p, el, bold=True)
            return
        elif cls & {"note", "warn"}:
            p.paragraph_format.first_line_indent = Cm(0)
            p.paragraph_format.space_before = p.paragraph_format.space_after = Pt(4)
            p.paragraph_format.line_spacing = 1.15
            if "warn" in cls:
                ox.paragraph_border(p)
            self.fill(p, el, size=self.size_table)
            return
        elif "noindent" in cls:
            p.paragraph_format.first_line_indent = Cm(0)
        self.fill(p, el)

    def formula(self, el) -> None:
        p = self.doc.add_paragraph()
        pf = p.paragraph_format
        pf.first_line_indent, pf.alignment = Cm(0), WD_ALIGN_PARAGRAPH.LEFT
        pf.space_before = pf.space_after = Pt(6)
        width = self._text_width()
        pf.tab_stops.add_tab_stop(int(width / 2), WD_TAB_ALIGNMENT.CENTER)
        pf.tab_stops.add_tab_stop(width, WD_TAB_ALIGNMENT.RIGHT)
        p.add_run("\t")
        for span in el:
            scls = set((span.get("class") or "").split())
            if "expr" in scls:
                self.fill(p, span, italic=True)
            elif "eqno" in scls:
                p.add_run("\t")
                self.fill(p, span)
            p.add_run(span.tail or "")

    def listing(self, el, ordered: bool, refs: bool) -> None:
        for i, li in enumerate(e for e in el if e.tag == "li"):
            p = self.doc.add_paragraph()
            marker = f"{i + 1}." if refs else (f"{i + 1})" if ordered else "–")
            p.add_run(marker + " ")
            self.fill(p, li)
            if refs:  # ГОСТ 7.32 6.8.7: numbered with a dot, from the paragraph indent
                p.paragraph_format.first_line_indent = INDENT

    def _text_width(self):
        sec = self.doc.sections[-1]
        return sec.page_width - sec.left_margin - sec.right_margin

    def table(self, el, landscape: bool) -> None:
        rows, header = _table_rows(el)
        if not rows:
            return
        grid = ox.grid(rows)
        n_cols = max(len(r) for r in grid)
        table = self.doc.add_table(rows=len(grid), cols=n_cols)
        table.style = self.doc.styles["Table Grid"]
        table.alignment = WD_TABLE_ALIGNMENT.CENTER
        ox.cell_margins(table)
        size = Pt(self.size_table.pt - (2 if landscape else 0))
        done: set[int] = set()
        for ri, (tr, cells) in enumerate(zip(rows, grid)):
            if id(tr) in header:
                ox.repeat_header(table.rows[ri])
            ox.cant_split(table.rows[ri])
            bold = "best" in (tr.get("class") or "").split()
            for ci, slot in enumerate(cells):
                if slot is not None and id(slot[0]) not in done:
                    done.add(id(slot[0]))
                    self._cell(table, ri, ci, slot, size, bold)
        self._widths(table, grid, n_cols, size)
        if len(rows) <= KEEP_ROWS:  # never continued: a continued table would need "Продолжение таблицы N"
            ox.keep_together(table)
        self.doc.add_paragraph().paragraph_format.line_spacing = 1.0  # the gap after a table

    def _cell(self, table, ri: int, ci: int, slot: tuple, size, bold: bool) -> None:
        """One td or th where it starts, merged over its spans."""
        td, rs, cs = slot
        cell = table.cell(ri, ci)
        if rs > 1 or cs > 1:
            cell = cell.merge(table.cell(ri + rs - 1, ci + cs - 1))
        p = cell.paragraphs[0]
        pf = p.paragraph_format
        pf.first_line_indent, pf.line_spacing = Cm(0), 1.0
        tcls = set((td.get("class") or "").split())
        pf.alignment = (WD_ALIGN_PARAGRAPH.CENTER if td.tag == "th" else
                        WD_ALIGN_PARAGRAPH.RIGHT if "n" in tcls else WD_ALIGN_PARAGRAPH.LEFT)
        self.fill(p, td, size=size, bold=bold, mono="mono" in tcls)

    def _widths(self, table, grid, n_cols: int, size) -> None:
        """Each column as wide as the PDF's: measured with the report's fonts (bold in bold rows, the
        monospaced font, 2 pt smaller, in mono cells)."""
        def extent(slot, bold: bool):
            if slot is None or slot[2] > 1:
                return None
            if "mono" in (slot[0].get("class") or "").split():
                return text_extent(self.text(slot[0]), FONTS_DIR / self.files["mono"], size.pt - 2)
            return text_extent(self.text(slot[0]), FONTS_DIR / self.files["bold" if bold else "regular"], size.pt)

        rows = [[extent(slot, "best" in (slot[0].getparent().get("class") or "").split() if slot else False)
                 for slot in cells] for cells in grid]
        mm = column_widths(rows, n_cols, self._text_width() / Mm(1))
        table.autofit = False
        for ci, col in enumerate(table.columns):
            col.width = Mm(mm[ci])
            for cell in col.cells:
                cell.width = Mm(mm[ci])

    def figure(self, el) -> None:
        img = next((e for e in el.iter("img")), None)
        cap = next((e for e in el.iter("figcaption")), None)
        if img is None:
            return
        path = self._local(img.get("data-png") or img.get("src"))
        p = self.doc.add_paragraph()
        p.alignment = WD_ALIGN_PARAGRAPH.CENTER
        p.paragraph_format.first_line_indent = Cm(0)
        p.paragraph_format.keep_with_next = True
        p.paragraph_format.line_spacing = 1.0
        p.add_run().add_picture(str(path), width=min(self._text_width(), Cm(16.5)))
        if cap is not None:
            c = self.doc.add_paragraph(style=self.doc.styles["Caption"])
            c.alignment = WD_ALIGN_PARAGRAPH.CENTER
            self.fill(c, cap)

    def _local(self, uri: str) -> Path:
        parsed = urlparse(uri)
        path = Path(unquote(parsed.path)).resolve()
        if parsed.scheme != "file" or not any(path.is_relative_to(a) for a in self.allowed):
            raise ValueError(f"blocked: {uri[:80]!r} is not one of the report's figures")
        return path
