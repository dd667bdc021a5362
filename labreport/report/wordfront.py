"""The Word document's front matter, written from the report's HTML as the PDF lays it out: the
title page (ГОСТ 7.32 5.1), a preview's running header, and СОДЕРЖАНИЕ. A part of word._Writer.
"""

from __future__ import annotations

from docx.enum.table import WD_CELL_VERTICAL_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_BREAK
from docx.shared import Cm, Mm, Pt

from labreport.report import ooxml as ox


class FrontMatter:
    """Methods of word._Writer (they use its doc, fill, text and _text_width)."""

    def title_page(self, el) -> None:
        """ГОСТ 7.32 5.1: the organisation at the top, the kind of work and the topic in the middle,
        who did and who checked it with signature lines, the town and the year at the bottom. Word
        lays pages out itself, so the gaps are fixed heights that leave room on an A4 page."""
        gaps = {"kind": Mm(45), "signatures": Mm(30), "city": Mm(35)}

        def centred(child, bold=False, space=None, **style):
            p = self.doc.add_paragraph()
            p.alignment = WD_ALIGN_PARAGRAPH.CENTER
            pf = p.paragraph_format
            pf.first_line_indent, pf.line_spacing = Cm(0), 1.15
            if space is not None:
                pf.space_before = space
            self.fill(p, child, bold=bold, **style)
            return p

        for child in el:
            cls = set((child.get("class") or "").split())
            if child.tag == "p" and "kind" in cls:
                centred(child, bold=True, space=gaps["kind"])
            elif child.tag == "p" and "topic" in cls:
                centred(child, bold=True, space=Pt(6))
            elif child.tag == "p" and "preview" in cls:
                centred(child, space=Pt(12), italic=True, size=self.size_table)
                self.running_header(child.get("data-header") or "")
            elif child.tag == "p" and "city" in cls:
                centred(child, space=gaps["city"])
            elif child.tag == "p":
                centred(child)
            elif child.tag == "table":
                self.doc.add_paragraph().paragraph_format.space_before = gaps["signatures"]
                self.signatures(child)
        self.section_fresh = False

    def running_header(self, text: str) -> None:
        """A preview's line at the top of every page but the title page (every section inherits it)."""
        p = self.doc.sections[0].header.paragraphs[0]
        p.alignment = WD_ALIGN_PARAGRAPH.RIGHT
        p.paragraph_format.first_line_indent = Cm(0)
        r = p.add_run(text)
        r.italic, r.font.size = True, Pt(10)

    def signatures(self, el) -> None:
        """Who did and who checked the work: role, signature line, name, in the PDF's 45/25/30 % columns,
        each cell's text at its bottom, level with the signature line."""
        rows = [tr for tr in el.iter("tr")]
        table = self.doc.add_table(rows=len(rows), cols=3)
        ox.no_borders(table)
        table.autofit = False
        for col, share in zip(table.columns, (0.45, 0.25, 0.30)):
            col.width = int(self._text_width() * share)
            for cell in col.cells:
                cell.width = col.width
                cell.vertical_alignment = WD_CELL_VERTICAL_ALIGNMENT.BOTTOM
        for ri, tr in enumerate(rows):
            tds = [td for td in tr if td.tag == "td"]
            for ci, td in enumerate(tds[:3]):
                p = table.cell(ri, ci).paragraphs[0]
                pf = p.paragraph_format
                pf.first_line_indent, pf.line_spacing, pf.space_after = Cm(0), 1.15, Pt(18)
                if "sign" in (td.get("class") or ""):
                    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
                    p.add_run("_" * 15)  # 15 x 0.5 em at 14 pt: 37 mm, within the 41 mm column
                    hint = next((s for s in td.iter("span") if "hint" in (s.get("class") or "")), None)
                    if hint is not None:
                        p.add_run().add_break(WD_BREAK.LINE)
                        p.add_run(self.text(hint)).font.size = Pt(9)
                else:
                    p.alignment = WD_ALIGN_PARAGRAPH.RIGHT if ci == 2 else WD_ALIGN_PARAGRAPH.LEFT
                    self.fill(p, td)

    def toc(self, el) -> None:
        """СОДЕРЖАНИЕ: one entry per heading, a link to its bookmark and its page number as a PAGEREF
        field. Not a TOC field: LibreOffice shows a TOC field's stored text, while it computes page
        references itself; Word updates them on opening (updateFields) or with F9."""
        h = next((e for e in el if e.tag == "h1"), None)
        p = self.doc.add_paragraph()
        p.alignment = WD_ALIGN_PARAGRAPH.CENTER
        p.paragraph_format.first_line_indent = Cm(0)
        p.paragraph_format.page_break_before = True
        p.paragraph_format.space_after = Pt(12)
        p.add_run(self.text(h) if h is not None else "").bold = True
        for li in el.iter("li"):
            a = li.find("a")
            if a is None:
                continue
            q = self.doc.add_paragraph(style=self.doc.styles["toc 2" if "l2" in (li.get("class") or "") else "toc 1"])
            target = ox.bookmark_name(a.get("href", "#").lstrip("#"))
            ox.link(q, self.text(a), target)
            q.add_run("\t")
            ox.field(q, f"PAGEREF {target} \\h", "")
        self.section_fresh = False
