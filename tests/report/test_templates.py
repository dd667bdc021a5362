"""Templates format, code computes (docs/architecture.md): every template of the report is parsed
with the report's own Jinja environment and its syntax tree read. No arithmetic, no comparison of
sizes, no sorting, picking or filtering of data: that is decided in labreport/report/context/, in
pure functions tested here on hand-made numbers. A template reads its section's context, formats
numbers with the registered filters and makes references with the registered globals, nothing else."""

from __future__ import annotations

import importlib
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
from jinja2 import meta, nodes

from labreport.report.build import TEMPLATES_DIR, _env
from labreport.report.context import ReportContext
from labreport.report.context.conclusions import overfitting
from labreport.report.context.paper import paper_of
from labreport.report.context.results import cost, ranking_text
from labreport.report.context.theory import Change, change, gain
from labreport.report.document import Numbering
from labreport.report.i18n import Lang
from labreport.report.labels import Labels
from labreport.report.references import Citations
from labreport.science.compare import rank
from labreport.science.conclusions import Resource, Study, group_runs
from views import view

ARITHMETIC = (nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow, nodes.Neg, nodes.Pos)
SIZES = {"gt", "gteq", "lt", "lteq"}  # a comparison of sizes chooses data; == with a decided word may pick a sentence
SELECTING = {"select", "reject", "selectattr", "rejectattr", "sort", "dictsort", "min", "max", "sum", "groupby",
             "unique", "first", "last", "random", "batch", "slice", "reverse"}
SELECTING_CALLS = {"min", "max", "sum", "sorted", "sort", "filter"}
TEMPLATES = sorted(p.name for p in TEMPLATES_DIR.iterdir() if p.suffix in (".j2", ".css"))


def environment(lang: str = "en"):
    L = Lang(lang)
    return _env(None, L, Numbering(L), Citations(L, "01.12.2026"))


def computations(source: str, env=None) -> list[str]:
    """What a template computes, one line per finding ("line 3: arithmetic (Sub)"); [] for none."""
    found = []
    for node in (env or environment()).parse(source).find_all(nodes.Node):
        what = None
        if isinstance(node, ARITHMETIC):
            what = f"arithmetic ({type(node).__name__})"
        elif isinstance(node, nodes.Compare) and any(op.op in SIZES for op in node.ops):
            what = "a comparison of sizes"
        elif isinstance(node, (nodes.Filter, nodes.Test)) and node.name in SELECTING:
            what = f"selection ({node.name})"
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name in SELECTING_CALLS:
            what = f"selection ({node.node.name}())"
        elif isinstance(node, nodes.Slice):
            what = "a slice"
        elif isinstance(node, nodes.For) and node.test is not None:
            what = "a loop that filters"
        elif isinstance(node, nodes.ExprStmt):
            what = "a statement ({% do %})"
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and node.node.attr in (
                "append", "update", "extend", "pop", "get", "items", "values", "keys"):
            what = f"building or reading a collection (.{node.node.attr}())"
        if what:
            found.append(f"line {node.lineno}: {what}")
    return found


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_template_computes(name):
    source = (TEMPLATES_DIR / name).read_text(encoding="utf-8")
    assert computations(source) == [], name


@pytest.mark.parametrize("snippet", [
    "{{ (a.ours - a.paper) / 100 }}", "{{ -o | dec(1) }}", "{% set total = c.values() | sum %}",
    "{% set p = e.tests | selectattr('p_adj', 'ne', none) | map(attribute='p_adj') | min %}",
    "{% if o >= 0.05 %}falls{% endif %}", "{{ (rows | sort(attribute='gap') | last).name }}",
    "{% for x in rows if x.n %}{{ x }}{% endfor %}", "{{ r.comparisons[:9] }}", "{{ max(a, b) }}",
    "{{ groups | rejectattr('own') | list }}", "{{ names | unique | join(', ') }}",
])
def test_the_rule_finds_what_a_template_would_compute(snippet):
    """The walk above sees each kind of computation a template once had (results.html.j2's minimum
    p-value, gradflow.html.j2's thresholds, the paper's error in percent, ...)."""
    assert computations(snippet), snippet


def test_a_template_reads_only_its_context_and_the_registered_names():
    """Every name a template reads and does not set itself is a section of ReportContext or a global
    of the environment (the references, gettext, Jinja's range)."""
    env = environment()
    known = {f.name for f in fields(ReportContext)} | set(env.globals)
    for name in TEMPLATES:
        ast = env.parse((TEMPLATES_DIR / name).read_text(encoding="utf-8"))
        own = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}  # set, loop, macro names
        read = meta.find_undeclared_variables(ast) - own
        assert read <= known, (name, read - known)


def test_filters_and_globals_are_registered_once_and_never_both():
    env = environment()
    ours = {"pct", "pct_pm", "dec", "grouped", "pts", "sci", "sig", "pval", "p_is", "signed", "signed_pts", "configs"}
    assert ours <= set(env.filters) and not set(env.filters) & set(env.globals)
    assert {"cite", "cited", "eq", "refs", "fig_label", "fig_ref", "tab_label", "tab_ref"} <= set(env.globals)
    assert environment("ru").filters["signed_pts"](-0.0123) == "−1,23\u00a0п.\u00a0п."
    assert env.filters["signed"](0.5) == "+0.50" and env.filters["signed"](None) == "—"


def test_every_section_context_is_frozen():
    modules = [importlib.import_module(f"labreport.report.context{m}") for m in
               ("", ".appendix", ".conclusions", ".method", ".paper", ".results", ".theory")]
    classes = [c for m in modules for c in vars(m).values()
               if isinstance(c, type) and is_dataclass(c) and c.__module__ == m.__name__]
    assert len(classes) > 15 and all(c.__dataclass_params__.frozen for c in classes)


# --- the computations the templates no longer do, on hand-made numbers ----------------------------------
def test_how_the_gradient_norm_changes_is_decided_from_its_orders_of_magnitude():
    row = {"orders_init": 2.04, "first_init": 1e-5, "orders_trained": None, "first_trained": 0.0}
    assert change(row, "init") == Change("falls", 2.04)
    assert change(row, "trained") == Change("zero")  # the first layer's gradient vanished in float32
    assert change({**row, "orders_init": -0.3}, "init") == Change("grows", 0.3)
    assert change({**row, "orders_init": 0.04}, "init") == Change("same")  # shows as 0.0: about the same
    assert change(None, "init").kind == "none"
    assert gain(None, {"first_init": 0.0}).kind == "finite" and gain(-1.5, None) == ("smaller", 1.5)


def test_the_ranking_says_which_sentence_names_the_worse_ones():
    en = Lang("en")
    # one seed each, every image told apart: the best beats both others beyond the noise
    groups = group_runs([view("a", None, correct="1" * 90 + "0" * 10), view("b", None, correct="1" * 40 + "0" * 60),
                         view("c", None, correct="1" * 20 + "0" * 80)])
    r = ranking_text(rank(groups), Labels(groups, en), en)
    assert r.worse == "all" and r.ties == () and r.detectable is None and r.tests == "McNemar's exact test"
    two = group_runs([view("a", None, correct="1" * 90 + "0" * 10), view("b", None, correct="1" * 40 + "0" * 60)])
    assert ranking_text(rank(two), Labels(two, en), en).worse == "one"
    tied = group_runs([view("a", None, correct="1" * 50 + "0" * 50), view("b", None, correct="1" * 49 + "0" * 51)])
    r = ranking_text(rank(tied), Labels(tied, en), en)
    assert r.worse is None and r.ties == ("ResNet-20 (b)",) and r.detectable is not None


def _study(resources=(), paper_rows=()) -> Study:
    return Study({}, (), (), None, (), None, tuple(paper_rows), tuple(resources), 0.2, 0.1, 0.95)


def test_the_cost_and_the_overfitting_name_their_extremes():
    res = [Resource("a", "resnet20", 1, 12.0, None, 600.0, 0.08, True), Resource("b", "resnet20", 1, 58.0, None, None,
                                                                                  0.01, False),
           Resource("c", "resnet20", 1, 31.0, None, 1450.0, 0.02, True), Resource("d", "resnet20", 1, None, None, None,
                                                                                  None, True)]
    names = Labels([], Lang("en"))  # raw labels: what is picked, not how it is named
    c = cost(_study(res), {"resources": object()}, names)
    assert c.figure and (c.longest, c.shortest, c.memory) == (("b", 58.0), ("a", 12.0), ("c", 1450.0))
    assert overfitting(_study(res), names) == (("a", 0.08), ("c", 0.02))  # b did not train: left out
    assert overfitting(_study(res[:1]), names) is None
    one = cost(_study(res[:1]), {}, names)
    assert one.longest is None and not one.figure


def test_the_paper_table_is_in_fractions_with_our_difference():
    from labreport.science.conclusions import PaperRow

    rows = [PaperRow("resnet110", 110, 6.43, 7.0, 0.2, 5, 183, 6.61, 0.16, 5, False, True, True),
            PaperRow("resnet20", 20, 8.75, None, None, 0, 183)]
    p = paper_of(_study(paper_rows=rows), Lang("en"))
    assert p.recipe is False  # the ResNet-20 row did not train with the paper's recipe
    assert [x.model for x in p.spread] == ["ResNet-110"] and p.yardstick == ()
    assert p.rows[0].error == pytest.approx(0.07) and p.rows[0].diff == pytest.approx(0.0057)
    assert p.rows[1].error is None and p.rows[1].diff is None and p.rows[1].paper == pytest.approx(0.0875)


def test_the_architecture_names_this_test():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "tests/report/test_templates.py" in doc
