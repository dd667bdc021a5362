"""The report's HTML -> PDF, through WeasyPrint, fetching nothing but the report's own files.

WeasyPrint loads every image, style sheet and font through `_LocalOnlyFetcher`: files under the
allowed folders (the staged figures, the templates, the bundled fonts) and `data:` URIs, nothing
else: no network, no other `file://` path, whatever a template or a title says.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_IDENTIFIER = re.compile(r'(<span class="id">)([^<]*)(</span>)')
WORD_JOINER = "\u2060"  # invisible; no line break on either side of it (Unicode line breaking, UAX #14)


def bind_identifiers(html: str) -> str:
    """A word joiner after every hyphen of a name or identifier (<span class="id">, see
    document.mark_identifiers): "resnet110-nobn" never breaks as "resnet110-" / "nobn". The PDF's
    text still reads "resnet110-nobn": the joiner has no glyph."""
    return _IDENTIFIER.sub(lambda m: m.group(1) + m.group(2).replace("-", "-" + WORD_JOINER) + m.group(3), html)


class _LocalOnlyFetcher:
    """WeasyPrint URL fetcher that serves files under the allowed folders and nothing else."""

    def __init__(self, roots: list[Path]):
        self.roots = [r.resolve() for r in roots]

    def __call__(self, url: str, *args, **kwargs):
        return self.fetch(url)

    def fetch(self, url: str, headers=None):
        from urllib.parse import unquote, urlparse

        from weasyprint.urls import URLFetcherResponse

        parsed = urlparse(url)
        if parsed.scheme == "data":  # inline bytes (matplotlib embeds heatmap pixels this way): no I/O
            from weasyprint.urls import URLFetcher

            return URLFetcher(allowed_protocols={"data"}).fetch(url, headers)
        if parsed.scheme != "file":
            raise ValueError(f"blocked: {parsed.scheme or 'relative'} URL {url[:80]!r} "
                             "(the report loads only its own files)")
        path = Path(unquote(parsed.path)).resolve()
        if not any(path.is_relative_to(r) for r in self.roots):
            raise ValueError(f"blocked: {path} is outside the report's folders")
        return URLFetcherResponse(url, body=path.read_bytes(), headers={"Content-Type": _mime(path)})


def _mime(path: Path) -> str:
    return {".svg": "image/svg+xml", ".png": "image/png", ".ttf": "font/ttf", ".css": "text/css"}.get(
        path.suffix.lower(), "application/octet-stream")


def pdf_bytes(html: str, allowed: list[Path], base_url: Path) -> bytes:
    """The PDF of `html`. Byte-identical for equal input: fontTools stamps the embedded font subsets
    with the current time unless SOURCE_DATE_EPOCH is set, so it is pinned (and the PDF id fixed)."""
    import weasyprint

    doc = weasyprint.HTML(string=bind_identifiers(html), base_url=base_url.as_uri() + "/",
                          url_fetcher=_LocalOnlyFetcher(allowed))
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = old or "0"
    try:
        return doc.write_pdf(pdf_identifier=b"labreport")
    finally:
        if old is None:
            del os.environ["SOURCE_DATE_EPOCH"]
