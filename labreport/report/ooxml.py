"""What python-docx has no API for: fields (PAGE, PAGEREF), bookmarks, links, repeated header rows,
borders and margins as raw OOXML, and the geometry of an HTML table with row and column spans.
Used by word.py only; each function changes the python-docx object it is given.
"""

from __future__ import annotations

from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Pt


def field(paragraph, instruction: str, cached: str = "") -> None:
    """A complex field (PAGE, PAGEREF, TOC ...) with its cached result."""
    def fld(kind):
        el = OxmlElement("w:fldChar")
        el.set(qn("w:fldCharType"), kind)
        return el

    run = paragraph.add_run()
    run._r.append(fld("begin"))
    run = paragraph.add_run()
    instr = OxmlElement("w:instrText")
    instr.set(qn("xml:space"), "preserve")
    instr.text = f" {instruction} "
    run._r.append(instr)
    paragraph.add_run()._r.append(fld("separate"))
    paragraph.add_run(cached)
    paragraph.add_run()._r.append(fld("end"))


def bookmark(paragraph, name: str, bid: int) -> None:
    start = OxmlElement("w:bookmarkStart")
    start.set(qn("w:id"), str(bid))
    start.set(qn("w:name"), name)
    end = OxmlElement("w:bookmarkEnd")
    end.set(qn("w:id"), str(bid))
    paragraph._p.insert(1 if paragraph._p.pPr is not None else 0, start)
    paragraph._p.append(end)


def bookmark_name(html_id: str) -> str:
    """Word bookmark names: letters, digits, underscores, at most 40 characters, a letter first."""
    return ("_Toc_" + "".join(c if c.isalnum() else "_" for c in html_id))[:40]


def repeat_header(row) -> None:
    tr_pr = row._tr.get_or_add_trPr()
    el = OxmlElement("w:tblHeader")
    el.set(qn("w:val"), "true")
    tr_pr.append(el)


def cant_split(row) -> None:
    el = OxmlElement("w:cantSplit")
    el.set(qn("w:val"), "true")
    row._tr.get_or_add_trPr().append(el)


def no_break_hyphens(run) -> None:
    """Every "-" of the run as Word's non-breaking hyphen (w:noBreakHyphen): no line break after it."""
    r = run._r
    for t in [t for t in r.findall(qn("w:t")) if "-" in (t.text or "")]:
        at = r.index(t)
        r.remove(t)
        for i, piece in enumerate(t.text.split("-")):
            if i:
                r.insert(at, OxmlElement("w:noBreakHyphen"))
                at += 1
            if piece:
                el = OxmlElement("w:t")
                el.set(qn("xml:space"), "preserve")
                el.text = piece
                r.insert(at, el)
                at += 1


def keep_together(table) -> None:
    """The table on one page: every paragraph of every row but the last kept with the next (Word's
    and LibreOffice's way of saying that a table must not break across pages)."""
    for row in table.rows[:-1]:
        for cell in row.cells:
            for p in cell.paragraphs:
                p.paragraph_format.keep_with_next = True


def set_fonts(rpr_owner, name: str) -> None:
    rpr = rpr_owner.get_or_add_rPr()
    fonts = rpr.find(qn("w:rFonts"))
    if fonts is None:
        fonts = OxmlElement("w:rFonts")
        rpr.insert(0, fonts)
    for attr in ("w:ascii", "w:hAnsi", "w:cs", "w:eastAsia"):
        fonts.set(qn(attr), name)
    for attr in ("w:asciiTheme", "w:hAnsiTheme", "w:cstheme", "w:eastAsiaTheme"):
        fonts.attrib.pop(qn(attr), None)


def paragraph_border(paragraph, colour: str = "990000") -> None:
    ppr = paragraph._p.get_or_add_pPr()
    bdr = OxmlElement("w:pBdr")
    for side in ("top", "left", "bottom", "right"):
        el = OxmlElement(f"w:{side}")
        for k, v in (("w:val", "single"), ("w:sz", "6"), ("w:space", "4"), ("w:color", colour)):
            el.set(qn(k), v)
        bdr.append(el)
    ppr.append(bdr)


def cell_margins(table, top=Pt(1.5), side=Pt(4)) -> None:
    tbl_pr = table._tbl.tblPr
    mar = OxmlElement("w:tblCellMar")
    for name, value in (("top", top), ("left", side), ("bottom", top), ("right", side)):
        el = OxmlElement(f"w:{name}")
        el.set(qn("w:w"), str(int(value.twips if hasattr(value, "twips") else value)))
        el.set(qn("w:type"), "dxa")
        mar.append(el)
    tbl_pr.append(mar)


def no_borders(table) -> None:
    tbl_pr = table._tbl.tblPr
    borders = OxmlElement("w:tblBorders")
    for side in ("top", "left", "bottom", "right", "insideH", "insideV"):
        el = OxmlElement(f"w:{side}")
        el.set(qn("w:val"), "nil")
        borders.append(el)
    tbl_pr.append(borders)


def link(paragraph, text: str, bookmark: str) -> None:
    """A run that jumps to a bookmark (w:hyperlink w:anchor)."""
    link = OxmlElement("w:hyperlink")
    link.set(qn("w:anchor"), bookmark)
    link.set(qn("w:history"), "1")
    r = OxmlElement("w:r")
    t = OxmlElement("w:t")
    t.set(qn("xml:space"), "preserve")
    t.text = text
    r.append(t)
    link.append(r)
    paragraph._p.append(link)


def last_text(paragraph) -> str | None:
    for r in reversed(paragraph.runs):
        if r.text:
            return r.text
    return None


def grid(rows) -> list[list]:
    """Place each td/th of the rows on a grid, honouring colspan and rowspan: a slot holds
    (cell, rowspan, colspan) where a cell starts, None where a span covers it or nothing is."""
    taken: set[tuple[int, int]] = set()
    starts: dict[tuple[int, int], tuple] = {}
    for ri, tr in enumerate(rows):
        ci = 0
        for td in (c for c in tr if c.tag in ("td", "th")):
            while (ri, ci) in taken:
                ci += 1
            rs, cs = int(td.get("rowspan", 1)), int(td.get("colspan", 1))
            taken |= {(r, c) for r in range(ri, min(ri + rs, len(rows))) for c in range(ci, ci + cs)}
            starts[ri, ci] = (td, rs, cs)
            ci += cs
    width = max(c for _, c in taken) + 1
    return [[starts.get((r, c)) for c in range(width)] for r in range(len(rows))]


# w:settings children that come after w:updateFields in the schema's sequence (ECMA-376 Part 1, 17.15.1.78)
AFTER_UPDATE_FIELDS = {"hdrShapeDefaults", "footnotePr", "endnotePr", "compat", "docVars", "rsids", "mathPr",
                       "attachedSchema", "themeFontLang", "clrSchemeMapping", "doNotIncludeSubdocsInStats",
                       "doNotAutoCompressPictures", "forceUpgrade", "captions", "readModeInkLockDown", "smartTagType",
                       "schemaLibrary", "shapeDefaults", "doNotEmbedSmartTags", "decimalSymbol", "listSeparator"}


def update_fields_on_open(doc) -> None:
    """settings.xml w:updateFields: Word asks once, on opening, to update every field (PAGEREF). In
    the schema's place: Word checks the order of the settings."""
    el = OxmlElement("w:updateFields")
    el.set(qn("w:val"), "true")
    settings = doc.settings.element
    after = next((c for c in settings if c.tag.split("}")[-1] in AFTER_UPDATE_FIELDS), None)
    if after is None:
        settings.append(el)
    else:
        after.addprevious(el)
