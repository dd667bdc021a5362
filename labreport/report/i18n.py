"""The report's language: gettext catalogues for its words, Babel for its numbers.

Every sentence of the report is written once, in English, in the templates (`{% trans %}`) and
in the few Python modules that draw words (figures, labels); a language is a message catalogue,

    labreport/locale/<lang>/LC_MESSAGES/labreport.po     shipped (ru, en)
    <[report] templates>/locale/<lang>/LC_MESSAGES/labreport.po   the user's, looked up first

compiled in memory when a report is built (Babel's .po reader and .mo writer: no build step, no
compiled files to keep in step). A message a catalogue lacks falls back to the next catalogue and
finally to the English text of the template. Numbers follow the language's conventions through
Babel (CLDR): "25,90 %" and "10 000" in Russian, "25.90%" and "10,000" in English.

`make messages` (pybabel extract + update, see babel.cfg) refreshes the catalogues after a
template changes; tests/report/test_i18n.py fails when a message has no Russian translation.
"""

from __future__ import annotations

import gettext
import io
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from labreport.errors import CatalogueError

DOMAIN = "labreport"
SOURCE_LANGUAGE = "en"  # the templates' own language: needs no catalogue
DASH = "—"  # a missing number
MINUS = "\u2212"  # a negative number's sign: the minus sign, never the hyphen-minus Babel writes
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _package_locale():
    return resources.files("labreport.report") / "locale"


def catalogue_paths(lang: str, user_dirs: tuple[Path, ...] = ()) -> list:
    """The .po files for `lang`, the user's first; only those that exist."""
    rel = (lang, "LC_MESSAGES", f"{DOMAIN}.po")
    found = [d.joinpath(*rel) for d in user_dirs if d.joinpath(*rel).is_file()]
    pkg = _package_locale().joinpath(*rel)
    return found + ([pkg] if pkg.is_file() else [])


def available_languages(user_dirs: tuple[Path, ...] = ()) -> list[str]:
    """Languages a report can be written in: the source language and every catalogue found."""
    langs = {SOURCE_LANGUAGE}
    for root in (*user_dirs, _package_locale()):
        if root.is_dir():
            langs |= {p.name for p in root.iterdir() if p.joinpath("LC_MESSAGES", f"{DOMAIN}.po").is_file()}
    return sorted(langs)


def _compile(po_path) -> gettext.GNUTranslations:
    """Read a .po file and compile it in memory (fuzzy entries are left out, as msgfmt does)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    try:
        with po_path.open("rb") as f:
            catalog = read_po(f, domain=DOMAIN)
        buf = io.BytesIO()
        write_mo(buf, catalog, use_fuzzy=False)
        buf.seek(0)
        return gettext.GNUTranslations(buf)
    except (OSError, ValueError, SyntaxError, UnicodeDecodeError, KeyError) as e:
        raise CatalogueError(f"message catalogue {po_path} cannot be read: {type(e).__name__}: {e}") from None


def translations(lang: str, user_dirs: tuple[Path, ...] = ()) -> gettext.NullTranslations:
    """The catalogues of `lang` chained (the user's first), falling back to the English source."""
    chain: gettext.NullTranslations = gettext.NullTranslations()
    for po in reversed(catalogue_paths(lang, user_dirs)):
        t = _compile(po)
        t.add_fallback(chain)
        chain = t
    return chain


def check_language(code: str, user_dirs: tuple[Path, ...] = ()) -> None:
    """A CatalogueError unless a report can be written in `code` (what `plan` checks before any `build`)."""
    if code not in (known := available_languages(user_dirs)):
        raise CatalogueError(f"no message catalogue for language '{code}' (known: {', '.join(known)}); add "
                             f"locale/{code}/LC_MESSAGES/{DOMAIN}.po to the templates folder")


@dataclass
class Lang:
    """The words and the number formats of one report language."""

    code: str
    user_dirs: tuple[Path, ...] = ()
    t: gettext.NullTranslations = field(init=False, repr=False)

    def __post_init__(self):
        from babel import Locale, UnknownLocaleError

        check_language(self.code, self.user_dirs)
        self.t = translations(self.code, self.user_dirs)
        try:
            self.locale = Locale.parse(self.code)
        except (UnknownLocaleError, ValueError):
            self.locale = Locale.parse(SOURCE_LANGUAGE)  # numbers as in English, words translated
        self._percent = self.locale.percent_formats[None].pattern  # e.g. "#,##0\xa0%" in Russian

    # ---- words --------------------------------------------------------------------------------
    def _(self, message: str, **values) -> str:
        text = self.t.gettext(message)
        return text % values if values else text

    def n_(self, singular: str, plural: str, n: int, **values) -> str:
        text = self.t.ngettext(singular, plural, n)
        return text % {"num": n, **values}

    def join_and(self, parts: list[str]) -> str:
        """"a, b and c" / "a, b и c" (CLDR's list pattern)."""
        from babel.lists import format_list

        return format_list(list(parts), locale=self.locale) if parts else ""

    # ---- numbers ------------------------------------------------------------------------------
    def dec(self, v, digits: int = 2) -> str:
        """A decimal number: 0,15 / 0.15."""
        if not _finite(v):
            return DASH
        from babel.numbers import format_decimal

        return _minus(format_decimal(v, format="#,##0" + ("." + "0" * digits if digits else ""), locale=self.locale))

    def int(self, v) -> str:
        """A whole number with the language's grouping: 10 000 / 10,000."""
        if not _finite(v):
            return DASH
        from babel.numbers import format_decimal

        return _minus(format_decimal(round(v), format="#,##0", locale=self.locale))

    def pct(self, v, digits: int = 2) -> str:
        """A fraction as a percentage: 0.259 -> 25,90 % / 25.90%."""
        if not _finite(v):
            return DASH
        from babel.numbers import format_percent

        pattern = self._percent.replace("#,##0", "#,##0" + ("." + "0" * digits if digits else ""), 1)
        return _minus(format_percent(v, format=pattern, locale=self.locale))

    def pct_pm(self, mean, std, digits: int = 2) -> str:
        """mean ± std of fractions, in percent: 81,00 ± 1,23 % / 81.00 ± 1.23%; no std: the mean alone."""
        if not _finite(std):
            return self.pct(mean, digits)
        both = f"{self.dec(100 * mean, digits)} ± {self.dec(100 * std, digits)}"
        return self.pct(1, 0).replace(self.dec(100, 0), both, 1)

    def pts(self, v, digits: int = 2) -> str:
        """A difference of two percentages, in percentage points: 0.0063 -> 0,63 п. п. / 0.63 points."""
        if not _finite(v):
            return DASH
        # non-breaking: "1,01 п. п." never splits across lines
        return self._("%(value)s points", value=self.dec(100 * v, digits)).replace(" ", "\u00a0")

    def sci(self, v) -> str:
        """A setting as a reader writes it: 0.15 -> 0,15; 1e-05 -> 1·10⁻⁵; 0 -> 0."""
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, int):
            return self.int(v)
        if not math.isfinite(v):
            return str(v)
        if v == 0 or 1e-2 <= abs(v) < 1e4:
            return self.dec(v, _decimals(v))
        exp = math.floor(math.log10(abs(v)))
        mant = v / 10 ** exp
        if abs(mant - round(mant)) < 1e-9:
            mant = round(mant)
        m = self.dec(mant, 0 if isinstance(mant, int) else _decimals(mant))
        return f"{m}·10{str(exp).translate(SUPERSCRIPT)}"

    def sig(self, v, digits: int = 3) -> str:
        """A measured magnitude to `digits` significant digits: 1.6e8 -> 1,6·10⁸."""
        if not _finite(v):
            return DASH
        if v == 0:
            return self.dec(0, 0)
        exp = math.floor(math.log10(abs(v)))
        if -3 <= exp < 4:
            return self.dec(v, max(0, digits - 1 - exp))
        mant = round(v / 10 ** exp, digits - 1)
        return f"{self.dec(mant, digits - 1).rstrip('0').rstrip(',.') or '0'}·10{str(exp).translate(SUPERSCRIPT)}"

    def p(self, p) -> str:
        """A p-value: 0,003 / < 0,001 (three decimals: finer differences carry no meaning here)."""
        if not _finite(p):
            return DASH
        return f"< {self.dec(0.001, 3)}" if p < 0.001 else self.dec(p, 3)

    def p_is(self, p) -> str:
        """A p-value in running text: "p = 0,003", "p < 0,001" (never "p = < 0,001")."""
        if not _finite(p):
            return f"p = {DASH}"
        return f"p\u00a0<\u00a0{self.dec(0.001, 3)}" if p < 0.001 else f"p\u00a0=\u00a0{self.dec(p, 3)}"


def _minus(text: str) -> str:
    return MINUS + text[1:] if text.startswith("-") else text


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _decimals(v: float) -> int:
    """Decimals a setting is written with: as many as its shortest repr needs (0.15 -> 2)."""
    text = f"{v:.10g}"
    if "e" in text:
        return 2
    return len(text.split(".")[1]) if "." in text else 0
