"""The report's structure: its numbered headings, and the numbering of figures, tables and formulas.

Pure (no I/O): the templates read the outline for every heading and the contents, and call the
Numbering to caption and to refer ("Рисунок 3 –", "таблица 2"), so numbers and references agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markupsafe import Markup, escape

from labreport.science.conclusions import Study
from labreport.report.i18n import Lang


@dataclass(frozen=True)
class Section:
    level: int
    number: str  # "3.2"; "" for the structural elements (CONTENTS, REFERENCES, APPENDIX A)
    title: str
    structural: bool = False


def task_title(task: str, L: Lang) -> str:
    titles = {"3": L._("ResNet-18 against the baseline CNN (task 3)"),
              "4": L._("ResNet-20: dropout and L2 regularisation (task 4)"),
              "5": L._("ResNet-110 with and without BatchNorm (task 5)"),
              "": L._("Additional experiments"),
              "paper": L._("The paper's recipe: ResNet-20…110 (He et al. 2015, section 4.2)")}
    return titles.get(task, L._("Task %(task)s", task=task))


def outline(study: Study, L: Lang) -> dict[str, Section]:
    """Every heading of the report, numbered: the contents and the section templates both read it.
    The main sections follow the lab's own list of contents."""
    s: dict[str, Section] = {
        "goal": Section(1, "1", L._("Goal of the work and statement of the problem")),
        "theory": Section(2, "1.1", L._("The residual block and the bottleneck")),
        "method": Section(1, "2", L._("Method of the study")),
        "data": Section(2, "2.1", L._("Data")),
        "models": Section(2, "2.2", L._("Architectures")),
        "training": Section(2, "2.3", L._("Training and hyperparameters")),
        "statistics": Section(2, "2.4", L._("Telling effects from noise")),
        "hardware": Section(2, "2.5", L._("Hardware and software")),
        "results": Section(1, "3", L._("Results of the study, task by task")),
    }
    n = 0
    for t in study.tasks:
        n += 1
        s[f"task-{t.task or 'extra'}"] = Section(2, f"3.{n}", task_title(t.task, L))
    if study.paper:
        n += 1
        s["paper"] = Section(2, f"3.{n}", L._("Comparison with He et al. 2015"))
    if study.ranking:
        n += 1
        s["best"] = Section(2, f"3.{n}", L._("The best result (task 6)"))
    s["cost"] = Section(2, f"3.{n + 1}", L._("The cost of training"))
    s["conclusions"] = Section(1, "4", L._("Conclusions"))
    s["references"] = Section(1, "", L._("REFERENCES"), structural=True)
    s["appendix-a"] = Section(1, "", L._("APPENDIX %(letter)s", letter=L._("A")), structural=True)
    return s


class Numbering:
    """Figures, tables and formulas numbered in the order of their first mention ("Рисунок 3 –",
    "таблица 2", "(1)"); tables of appendix A as "А.1" (ГОСТ 7.32-2017, 6.5-6.7)."""

    APPENDIX = ("all-runs",)  # tables that live in appendix A

    def __init__(self, L: Lang):
        self.L = L
        self.seen: dict[str, dict[str, int]] = {"figure": {}, "table": {}, "appendix": {}, "eq": {}}

    def number(self, kind: str, name: str) -> str:
        if kind == "table" and name in self.APPENDIX:
            seen = self.seen["appendix"]
            letter = self.L._("A")  # appendix A's letter: А in Russian (ГОСТ 7.32 6.14)
            return f"{letter}.{seen.setdefault(name, len(seen) + 1)}"
        seen = self.seen[kind]
        return str(seen.setdefault(name, len(seen) + 1))

    def fig_label(self, name): return self.L._("Figure %(n)s", n=self.number("figure", name))
    def fig_ref(self, name): return _ref(self.L._("figure %(n)s", n=self.number("figure", name)))
    def tab_label(self, name): return self.L._("Table %(n)s", n=self.number("table", name))
    def tab_ref(self, name): return _ref(self.L._("table %(n)s", n=self.number("table", name)))
    def tab_continued(self, name): return self.L._("Continuation of table %(n)s", n=self.number("table", name))
    def eq(self, name): return self.number("eq", name)

    def refs(self, items) -> Markup:
        """References in the text's order: "таблица 3, рисунок 2"; `items`: ("figure" | "table", name) pairs."""
        return Markup(", ").join(self.fig_ref(name) if kind == "figure" else self.tab_ref(name) for kind, name in items)


def _ref(text: str):
    """A reference in the text ("рисунок 3"): never hyphenated, never broken between the word and its number."""
    return Markup('<span class="ref">{}</span>').format(escape(text).replace(" ", "\u00a0"))


_TAG = re.compile(r"(<[^>]*>)")
# WeasyPrint (70.0) breaks a line badly where a text ends in a collapsible space that fits only
# without it: Pango's line holds the space, is wider than the room, and WeasyPrint then keeps only
# the first word ("is                CIFARNet:" on a justified line). So no text of a block ends in
# a space: the whitespace before a block's end goes, and the space between a word and an inline
# element ("is <b>CIFARNet</b>", "dropout <a>[4]</a>") moves into the element ("is<b> CIFARNet</b>").
_SPACE_BEFORE_INLINE = re.compile(r"(?<=[^\s>]) <(a|b|i|em|strong|span)\b([^>]*)>")
_SPACE_BEFORE_BLOCK_END = re.compile(r"\s+(</(?:p|li|td|th|h[1-6]|div|caption)>)")


def tidy_punctuation(html: str) -> str:
    """One period where an abbreviation ends a sentence: "на 0,60 п. п." and "60 p.", never "п. п.." or
    "p.."; "6,61 ± 0,16 %" and "п. п." never broken across lines. Rules of Russian and English
    typography, applied to the text of the report (never to tags or attributes), so that no template
    has to know whether a number's unit ends in a period. And no text of a block ends in a space
    (_SPACE_BEFORE_BLOCK_END, _SPACE_BEFORE_INLINE). Names and identifiers are marked (mark_identifiers)."""
    parts, last = _TAG.split(html), ""
    for i, part in enumerate(parts):
        if i % 2 or (i and parts[i - 1].lower().startswith(("<style", "<script", "<title"))):  # a tag, or no text
            continue
        part = _tidy_text(part, last)
        if part.strip():
            last = part.rstrip()
        parts[i] = mark_identifiers(part)
    html = _SPACE_BEFORE_BLOCK_END.sub(r"\1", "".join(parts))
    return _SPACE_BEFORE_INLINE.sub(r"<\1\2> ", html)


def _tidy_text(part: str, last: str) -> str:
    """tidy_punctuation on one text between tags; `last`: the text before it."""
    if part.startswith(".") and not part.startswith("..") and re.search(r"[^\W\d_]\.$", last):
        part = part[1:]
    part = re.sub(r"(?<=[^\W\d_]\.)\.(?!\.)", "", part)
    part = part.replace(" ± ", "\u00a0±\u00a0").replace("п. п.", "п.\u00a0п.")  # never broken across lines
    # a dash never starts a line (a caption's "Рисунок 1 – ...", after a number, keeps its plain space)
    part = re.sub(r"(?:(?<=[^\W\d_])|(?<=[)»”%.])) – ", "\u00a0– ", part)
    # nor a formula at its slash, "√(2/fan_in)": a word joiner (U+2060, invisible) after it
    part = re.sub(r"√\([^()\s]*\)", lambda m: m.group(0).replace("/", "/\u2060"), part)
    return re.sub(r"(?<=[\w′)]) ([+−]) (?=[\w(])", "\u00a0\\1\u00a0", part)  # nor at "F′ + 1", "6n + 2"


# Names and identifiers ("ResNet-110", "resnet110-nobn", "CIFARNet", "weight_decay=1e-05", a group
# "АВТ-213") are never hyphenated nor broken at their hyphen: the HTML marks each as <span class="id">,
# and each writer binds it its own way (the PDF: `hyphens: manual` and a word joiner after each
# hyphen, pdf.py; the DOCX: Word's non-breaking hyphen, word.py). An English compound with a hyphen
# ("non-finite") is bound too (it moves to the next line whole); a Russian one ("из-за") is not, nor
# a word with a "/" in it. An address ("https://...") is marked <span class="url">: never hyphenated.
_ENTITY = re.compile(r"(&#?\w+;)")
_SEPARATOR = r"\s«»“”„\"'()\[\]{}&<>"  # what ends a token: "resnet20-reg[dropout=0.15, ...]" holds two
_TOKEN = re.compile(rf"(?<![^{_SEPARATOR}])[^{_SEPARATOR}]+")
_HYPHENATED = re.compile(r"\w-\w")
_CODE_LIKE = re.compile(r"(?<=\w)[A-Z]|\d|_")  # CamelCase, letters and digits, snake_case
HYPHENATED_FROM = 7  # letters: the style sheet's hyphenate-limit-chars; a shorter word is never hyphenated
_TRAILING = ".,;:!?…"


def is_identifier(token: str) -> bool:
    """A name or identifier: a Latin letter or a digit in it, and a hyphen inside it ("ResNet-110",
    "АВТ-213", "1e-05") or, in a word long enough to be hyphenated, CamelCase, digits or "_"."""
    if not re.search(r"[A-Za-z0-9]", token):
        return False
    if _HYPHENATED.search(token):
        return True
    return len(token) >= HYPHENATED_FROM and re.search(r"[A-Za-z]", token) is not None \
        and _CODE_LIKE.search(token) is not None


def _mark_token(m: re.Match) -> str:
    token = m.group(0)
    core = token.rstrip(_TRAILING)
    if "://" in core:  # an address: never hyphenated (a hyphen would change it), broken anywhere if it must
        return f'<span class="url">{core}</span>{token[len(core):]}'
    if "/" in core or not is_identifier(core):
        return token
    return f'<span class="id">{core}</span>{token[len(core):]}'


def mark_identifiers(text: str) -> str:
    """A text (no tags in it) with every name or identifier in <span class="id">, every address in
    <span class="url">; entities kept whole."""
    parts = _ENTITY.split(text)
    return "".join(p if i % 2 else _TOKEN.sub(_mark_token, p) for i, p in enumerate(parts))


_QUOTES = {"«": "»", "“": "”", "„": "“", '"': '"', "'": "'"}


def unquoted(text: str) -> str:
    """A title without the quotes that enclose all of it ("«Исследование ResNet»" -> "Исследование
    ResNet"): the title page puts the language's own around it, and must not double them. Quotes
    that enclose only a part ("«A» и «B»", "Исследование «ResNet»") stay."""
    t = (text or "").strip()
    if len(t) < 2 or _QUOTES.get(t[0]) != t[-1]:
        return text
    opening, closing, inner = t[0], t[-1], t[1:-1]
    if opening == closing:  # "A" and "B": which quote closes which cannot be told
        return text if opening in inner else inner.strip()
    depth = 0
    for c in inner:
        depth += (c == opening) - (c == closing)
        if depth < 0:  # «A» и «B»: the first quote closes before the end
            return text
    return inner.strip() if depth == 0 else text
