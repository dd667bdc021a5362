"""The report's language: catalogues complete and consistent, a missing message falls back to
English, a new language is a new catalogue, and numbers follow the language (Babel)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labreport.errors import CatalogueError
from labreport.report.i18n import Lang, available_languages

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "labreport" / "report" / "locale" / "ru" / "LC_MESSAGES" / "labreport.po"
FIELD = re.compile(r"%\((\w+)\)[sd]")


def extracted() -> dict:
    """Every message of the templates and the code, as `make messages` extracts them (babel.cfg)."""
    from babel.messages.frontend import CommandLineInterface

    out = ROOT / ".pytest_cache" / f"messages-{id(object())}.pot"
    out.parent.mkdir(exist_ok=True)
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_", "-k", "n_:1,2",
                                "--no-location", "-o", str(out), str(ROOT)])
    from babel.messages.pofile import read_po

    with out.open("rb") as f:
        cat = read_po(f)
    out.unlink()
    return {m.id: m for m in cat if m.id}


def test_every_message_has_a_russian_translation_with_the_same_placeholders():
    from babel.messages.pofile import read_po

    with PO.open("rb") as f:
        ru = {m.id: m for m in read_po(f) if m.id}
    messages = extracted()
    assert len(messages) > 200  # the whole report, not a sample
    missing = [m for m in messages if m not in ru or not ru[m].string or ru[m].fuzzy]
    assert not missing, f"untranslated (run `make messages`, then translate): {missing[:5]}"
    for mid, m in ru.items():
        if mid not in messages:
            continue
        src = " ".join(mid) if isinstance(mid, tuple) else mid
        src_fields = set(FIELD.findall(src))
        for text in (m.string if isinstance(m.string, tuple) else (m.string,)):
            fields = set(FIELD.findall(text))  # a plural form may name the count the English one leaves out
            assert fields - {"count", "num"} <= src_fields and src_fields - {"count", "num"} <= fields, (mid, text)
        if isinstance(m.string, tuple):
            assert len(m.string) == 3 and all(m.string)  # Russian: one, few, many


def test_no_template_names_a_language():
    for tpl in (ROOT / "labreport" / "report" / "templates").glob("*.j2"):
        text = tpl.read_text(encoding="utf-8")
        assert not re.search(r"""lang\s*==|['"](ru|en)['"]|\bif ru\b""", text), tpl.name
        # words live in catalogues
        assert not re.search(r"[А-Яа-яЁё]", re.sub(r"\{#.*?#\}", "", text, flags=re.S)), tpl.name


def test_russian_plurals_and_numbers():
    L = Lang("ru")
    forms = [L.n_("%(num)d epoch", "%(num)d epochs", n) for n in (1, 2, 5, 11, 21, 22, 25)]
    assert forms == ["1 эпоха", "2 эпохи", "5 эпох", "11 эпох", "21 эпоха", "22 эпохи", "25 эпох"]
    nb = "\xa0"
    assert L.pct(0.259) == f"25,90{nb}%" and L.pct(0.2, 0) == f"20{nb}%"
    assert L.pct_pm(0.81, 0.0123) == f"81,00 ± 1,23{nb}%"
    assert L.dec(0.15) == "0,15" and L.int(10000) == f"10{nb}000"
    assert L.sci(1e-5) == "1·10⁻⁵" and L.sci(0.15) == "0,15" and L.sci(0.0) == "0" and L.sci(64) == "64"
    assert L.sig(1.6e8, 2) == "1,6·10⁸" and L.p(0.0004) == "< 0,001" and L.p(0.0351) == "0,035"
    assert L.pts(0.0063) == "0,63\xa0п.\xa0п." and L.dec(None) == "—"


def test_english_numbers_use_points():
    L = Lang("en")
    assert L.pct(0.259) == "25.90%" and L.int(10000) == "10,000" and L.sci(1e-5) == "1·10⁻⁵"
    assert L.pct_pm(0.81, 0.0123) == "81.00 ± 1.23%" and L.pts(0.0063) == "0.63\xa0points"
    assert L.n_("%(num)d epoch", "%(num)d epochs", 1) == "1 epoch"


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_negative_numbers_take_the_minus_sign_and_p_values_read_as_text(lang):
    """Babel writes a hyphen-minus; a report writes the minus sign (U+2212). A p-value in a sentence
    is "p = 0,035" or "p < 0,001", never "p = < 0,001"."""
    L, nb = Lang(lang), "\xa0"
    assert L.pts(-0.044, 1).startswith("−4") and L.dec(-0.15).startswith("−0") and L.pct(-0.1, 0).startswith("−10")
    assert L.int(-3) == "−3" and L.sig(-2.5e-4, 2).startswith("−2") and L.sci(-1e-5) == "−1·10⁻⁵"
    assert not any("-" in s for s in (L.pts(-0.044), L.dec(-1.5), L.pct(-0.5)))
    assert L.p_is(0.0004) == f"p{nb}<{nb}" + L.dec(0.001, 3) and L.p_is(0.0351) == f"p{nb}={nb}" + L.dec(0.0351, 3)


def write_catalogue(root: Path, lang: str, messages: dict) -> Path:
    """root/<lang>/LC_MESSAGES/labreport.po holding `messages` (msgid -> translation)."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    cat = Catalog(locale=lang, domain="labreport")
    for msgid, text in messages.items():
        cat.add(msgid, text)
    po = root / lang / "LC_MESSAGES" / "labreport.po"
    po.parent.mkdir(parents=True)
    with po.open("wb") as f:
        write_po(f, cat)
    return po


def test_a_new_language_is_a_catalogue_and_missing_messages_fall_back_to_english(tmp_path):
    """A German catalogue with one message: that one is German, every other is the English source."""
    write_catalogue(tmp_path, "de", {"CONTENTS": "INHALTSVERZEICHNIS"})
    assert "de" in available_languages((tmp_path,))
    L = Lang("de", (tmp_path,))
    assert L._("CONTENTS") == "INHALTSVERZEICHNIS"
    assert L._("REFERENCES") == "REFERENCES"  # not in the catalogue: English
    assert L.pct(0.259) == "25,90\xa0%"  # and the numbers are German (Babel knows de)


def test_a_user_catalogue_overrides_a_shipped_sentence(tmp_path):
    write_catalogue(tmp_path, "ru", {"Done by:": "Выполнила:"})
    L = Lang("ru", (tmp_path,))
    assert L._("Done by:") == "Выполнила:"  # the user's
    assert L._("Checked by:") == "Проверил:"  # the shipped one, for everything else


def test_unknown_language_and_broken_catalogue_are_one_line_errors(tmp_path):
    with pytest.raises(CatalogueError, match="no message catalogue for language 'xx'"):
        Lang("xx")
    po = tmp_path / "ru" / "LC_MESSAGES" / "labreport.po"
    po.parent.mkdir(parents=True)
    po.write_bytes(b'msgid "a\nmsgstr \xff\xfe')
    with pytest.raises(CatalogueError, match="cannot be read"):
        Lang("ru", (tmp_path,))
