"""The report's bundled fonts embedded in the Word document, so that it is laid out with the PDF's
metrics where they are not installed (LibreOffice on a machine with DejaVu alone; docs/report.md).

ECMA-376 Part 1, 17.8.1: each font file is stored as word/fonts/fontN.odttf, its first 32 bytes
XORed with a key (a GUID, `w:fontKey`), named from word/fontTable.xml (`w:embedRegular`,
`w:embedBold`, ...) through word/_rels/fontTable.xml.rels, and word/settings.xml says
`w:embedTrueTypeFonts`. Word and LibreOffice read such fonts when the document is opened. The key
is derived from the file's content, so equal documents stay byte-identical.
"""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from importlib import resources
from pathlib import Path

from lxml import etree

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
CONTENT_TYPES = "http://schemas.openxmlformats.org/package/2006/content-types"
FONT_REL = R + "/font"
OBFUSCATED = "application/vnd.openxmlformats-officedocument.obfuscatedFont"
FONTS_DIR = Path(str(resources.files("labreport.report") / "fonts"))  # the bundled fonts, as build.FONTS_DIR
STYLES = ("regular", "bold", "italic", "bold_italic")  # FontSet's fields, in fontTable's order
EMBED = {"regular": "embedRegular", "bold": "embedBold", "italic": "embedItalic", "bold_italic": "embedBoldItalic"}
# w:settings children that come before w:embedTrueTypeFonts in the schema's sequence
SETTINGS_BEFORE = ("writeProtection", "view", "zoom", "removePersonalInformation", "removeDateAndTime",
                   "doNotDisplayPageBoundaries", "displayBackgroundShape", "printPostScriptOverText",
                   "printFractionalCharacterWidth", "printFormsData")


def _w(tag: str) -> str:
    return f"{{{W}}}{tag}"


def font_key(data: bytes) -> str:
    """The GUID that obfuscates a font file, "{XXXXXXXX-XXXX-...}", from its content (reproducible)."""
    return "{" + str(uuid.UUID(bytes=hashlib.sha256(data).digest()[:16])).upper() + "}"


def obfuscate(data: bytes, key: str) -> bytes:
    """ECMA-376 17.8.1: the first 32 bytes XORed with the key's 16 bytes, read from the GUID's last
    hex pair to its first; the same operation reads the font back."""
    k = bytes.fromhex(key.strip("{}").replace("-", ""))[::-1]
    head = bytes(b ^ k[i % 16] for i, b in enumerate(data[:32]))
    return head + data[32:]


def embed_fonts(docx: bytes, families: dict[str, dict[str, Path]]) -> bytes:
    """The document with each family ({name: {"regular": path, "bold": ...}}) embedded under its name."""
    src = zipfile.ZipFile(io.BytesIO(docx))
    parts = {i.filename: src.read(i) for i in src.infolist()}
    stamp = src.infolist()[0].date_time
    fonts = etree.fromstring(parts["word/fontTable.xml"])
    rels = etree.Element(f"{{{PKG_RELS}}}Relationships", nsmap={None: PKG_RELS})
    n = 0
    for name, files in families.items():
        entry = _font_entry(fonts, name)
        for style in STYLES:
            if style not in files or not Path(files[style]).is_file():  # the PDF's build names a missing font
                continue
            n += 1
            data = Path(files[style]).read_bytes()
            key = font_key(data)
            parts[f"word/fonts/font{n}.odttf"] = obfuscate(data, key)
            etree.SubElement(rels, f"{{{PKG_RELS}}}Relationship", Id=f"rId{n}", Type=FONT_REL,
                             Target=f"fonts/font{n}.odttf")
            etree.SubElement(entry, _w(EMBED[style]), {f"{{{R}}}id": f"rId{n}", _w("fontKey"): key})
    parts["word/fontTable.xml"] = _xml(fonts)
    parts["word/_rels/fontTable.xml.rels"] = _xml(rels)
    parts["[Content_Types].xml"] = _content_types(parts["[Content_Types].xml"])
    parts["word/settings.xml"] = _settings(parts["word/settings.xml"])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(zipfile.ZipInfo(name, date_time=stamp), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _xml(el) -> bytes:
    return etree.tostring(el, xml_declaration=True, encoding="UTF-8", standalone=True)


def _font_entry(fonts, name: str):
    """The fontTable's w:font of `name` (a new one if the table has none), without earlier embeddings."""
    entry = next((f for f in fonts.findall(_w("font")) if f.get(_w("name")) == name), None)
    if entry is None:
        entry = etree.SubElement(fonts, _w("font"), {_w("name"): name})
    for old in [c for c in entry if etree.QName(c).localname in EMBED.values()]:
        entry.remove(old)
    return entry


def _content_types(xml: bytes) -> bytes:
    types = etree.fromstring(xml)
    if not any(d.get("Extension") == "odttf" for d in types.findall(f"{{{CONTENT_TYPES}}}Default")):
        types.insert(0, etree.Element(f"{{{CONTENT_TYPES}}}Default", Extension="odttf", ContentType=OBFUSCATED))
    return _xml(types)


def _settings(xml: bytes) -> bytes:
    """w:embedTrueTypeFonts, where the schema's order puts it (Word checks the order of settings)."""
    settings = etree.fromstring(xml)
    if settings.find(_w("embedTrueTypeFonts")) is None:
        before = [i for i, c in enumerate(settings) if etree.QName(c).localname in SETTINGS_BEFORE]
        settings.insert(before[-1] + 1 if before else 0, etree.Element(_w("embedTrueTypeFonts")))
    return _xml(settings)


def embedded(font: dict) -> dict[str, dict[str, Path]]:
    """The font files the document embeds: the report's family (each file once: a set without a bold
    italic names its bold twice) and, with Liberation Serif, Liberation Mono for the monospaced text."""
    family: dict[str, Path] = {}
    for style in STYLES:
        if font[style] not in [p.name for p in family.values()]:
            family[style] = FONTS_DIR / font[style]
    out = {font["family"]: family}
    if font["mono"].startswith("LiberationMono"):
        out["Liberation Mono"] = {"regular": FONTS_DIR / font["mono"]}
    return out
