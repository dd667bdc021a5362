"""What each section of the report shows, decided in code; the templates only format it.

One frozen dataclass per section, made by a pure function from the Study (science/conclusions.py),
the config and the labels, holding exactly what its template shows: selected, ordered and computed
(minima, differences, which sentence applies), with the human names already given.

    report_context(...)         the whole: one name per section, what render_html passes to the templates
    Document, TitlePage         the HTML's head and the style sheet; the title page (here)
    theory.Theory               subsection 1.1, measured: the gradient flow
    method.Method               section 2: data, models, hyperparameters, statistics, hardware
    results.Results             section 3: per task, the BatchNorm claim, the best result, the cost
    paper.Paper                 section 3's comparison with He et al. 2015 (and the conclusions')
    conclusions.Conclusions     section 4
    appendix.RunRow             appendix A: every run of the matrix

Each module's `<section>_of` makes its section's context.

A template formats numbers with the filters of build._env (the language's pct, dec, pts, sci, ...),
loops over prepared rows and picks among sentences already decided (`{% if e.agree %}`); it never
computes, sorts or selects: tests/report/test_templates.py reads every template and fails if one
does. Only the references are made while rendering (cite, fig_ref, tab_ref: build._env), because
sources, figures and tables are numbered in the order the text first names them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

from labreport.config import Config
from labreport.report import labels as lb
from labreport.report.context.appendix import RunRow, appendix_of
from labreport.report.context.conclusions import Conclusions, conclusions_of
from labreport.report.context.method import Method, method_of
from labreport.report.context.results import Results, results_of
from labreport.report.context.theory import Theory, theory_of
from labreport.report.coverage import texts as not_run_texts
from labreport.report.document import Section, outline, unquoted
from labreport.report.i18n import Lang
from labreport.report.preview import preview_texts
from labreport.science.conclusions import Study
from labreport.science.runs import RunView
from labreport.version import __version__


@dataclass(frozen=True)
class Document:
    """The HTML's head and the style sheet."""

    lang: str
    title: str
    author: str  # the student, else [report] author
    description: str  # the discipline
    version: str  # labreport's: the generator tag and section 2.5
    font: Mapping[str, Any]  # build.font_context: the family, its files and its sizes (pt)
    fonts_dir: str  # the bundled fonts' folder, as a URI


@dataclass(frozen=True)
class TitlePage:
    """The title page (ГОСТ 7.32-2017, 5.1): [report] with its defaults."""

    ministry: str | None
    university: str
    faculty: str
    department: str
    discipline: str
    lab_number: int | str
    title: str
    group: str
    student: str
    teacher: str
    teacher_position: str
    city: str
    year: int | str
    preview: str | None  # a preview says so under the topic (preview.py) ...
    preview_header: str | None  # ... and in the running header of every page


def report_fields(config: Config, L: Lang) -> dict:
    """[report] with its defaults: the ministry line of a Russian university's title page unless
    set (an empty string leaves it out); the title and the discipline without the quotes that
    enclose them (the title page puts the language's own around them)."""
    r = asdict(config.report)
    if r["ministry"] is None:
        r["ministry"] = L._("Ministry of Science and Higher Education of the Russian Federation")
    r["title"], r["discipline"] = unquoted(r["title"]), unquoted(r["discipline"])
    return r


def title_page(config: Config, L: Lang) -> TitlePage:
    r = report_fields(config, L)
    preview = preview_texts(config, L) or {}
    own = {f.name: r[f.name] for f in fields(TitlePage) if f.name in r}
    return TitlePage(**own, preview=preview.get("title"), preview_header=preview.get("header"))


def document(config: Config, L: Lang, font: Mapping[str, Any], fonts_dir: str) -> Document:
    r = report_fields(config, L)
    return Document(L.code, r["title"], r["student"] or r["author"], r["discipline"], __version__, font, fonts_dir)


@dataclass(frozen=True)
class ReportContext:
    """Everything the templates receive: one name per section, the outline (every heading,
    numbered) and the figures drawn (build.FigureRef by name)."""

    doc: Document
    title_page: TitlePage
    contents: tuple[tuple[str, Section], ...]  # the headings the contents list: (id, heading)
    outline: Mapping[str, Section]
    figures: Mapping[str, Any]
    theory: Theory
    method: Method
    results: Results
    conclusions: Conclusions
    appendix: tuple[RunRow, ...]

    def names(self) -> dict[str, Any]:
        """The template context: each field by its name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


CONTENTS_LEVELS = 2  # the contents list sections and subsections (ГОСТ 7.32-2017, 5.4)


def report_context(config: Config, study: Study, views: Sequence[RunView], figures: Mapping[str, Any], L: Lang,
                   flow: Mapping[str, Any], font: Mapping[str, Any], fonts_dir: str) -> ReportContext:
    """What every section shows. `flow`: study.gradflow_context's (enabled, facts, lab_inits,
    nobn_inits)."""
    names = lb.Labels(study.groups, L, study.own)
    heads = outline(study, L)
    not_run = not_run_texts(config, L, study.own)
    return ReportContext(
        document(config, L, font, fonts_dir), title_page(config, L),
        tuple((k, s) for k, s in heads.items() if s.level <= CONTENTS_LEVELS), heads, figures,
        theory_of(flow, study, figures, L), method_of(config, study, views, L),
        results_of(study, figures, not_run, flow.get("facts"), names, L),
        conclusions_of(study, heads, flow.get("facts"), names, L), appendix_of(views))
