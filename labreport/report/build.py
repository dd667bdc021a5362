"""Conclusions + figures + templates -> HTML -> PDF and DOCX.

`build` reads only experiments.toml and the run store: no training, no data set, no torch. The
templates (Jinja, one per section, every word in the message catalogues) render one HTML
document: the report's content model. The PDF is that HTML laid out by WeasyPrint (pdf.py), the
DOCX the same HTML written by word.py, so both carry the same sentences, tables and figures.
Every user string reaches the HTML through Jinja's autoescaping.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from functools import partial
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import jinja2

from labreport.report import DEFAULT_OUT
from labreport.report import labels as lb
from labreport.report.context import report_context
from labreport.science.conclusions import Study
from labreport.report.document import Numbering, task_title, tidy_punctuation
from labreport.report.summary import summary
from labreport.config import Config
from labreport.config.sections import FONTS
from labreport.errors import LabreportError, PackageDataError
from labreport.report.i18n import DASH, MINUS, Lang
from labreport.report.references import Citations, access_date
from labreport.report.study import gradflow_context, language, study_of
from labreport.science.runs import RunView
from labreport.store import RunStore, atomic_write_bytes, atomic_write_json

FORMATS = (".pdf", ".docx")


def package_dir(*parts: str) -> Path:
    """A folder of labreport's package data (templates, fonts, catalogues), in a checkout or a wheel."""
    return Path(str(resources.files("labreport.report").joinpath(*parts)))


TEMPLATES_DIR = package_dir("templates")
FONTS_DIR = package_dir("fonts")


@dataclass(frozen=True)
class FigureRef:
    name: str
    caption: str
    svg: Path
    png: Path


# --------------------------------------------------------------------------------------------
def make_figures(study: Study, out_dir: Path, L: Lang, names: lb.Labels,
                 gradflow: dict | None = None) -> dict[str, FigureRef]:
    """Render every figure the study (and the gradient-flow measurement, if any) has data for."""
    from labreport.report import diagrams, drawings, figures
    from labreport.report.style import save_figure

    refs: dict[str, FigureRef] = {}

    def add(name, fig, caption):
        if fig is not None:
            paths = save_figure(fig, out_dir, name)
            refs[name] = FigureRef(name, caption, paths["svg"], paths["png"])

    add("residual_block", drawings.residual_block(L),
        L._("The residual block: two weight layers compute F(x), the identity shortcut adds the input x"))
    add("blocks", drawings.basic_and_bottleneck(L),
        L._("The basic block and the bottleneck block (after He et al. 2015, figure 5) with the weights of their "
            "convolutions"))
    add("cifar_resnet", drawings.cifar_resnet(L),
        L._("The CIFAR ResNet of depth 6n + 2 (He et al. 2015, section 4.2): its layers, feature maps and filters"))
    for t in study.tasks:
        title = task_title(t.task, L)
        add(f"curves_{t.task or 'extra'}", figures.curves(t.groups, L, names),
            L._("Validation and test accuracy per epoch: %(title)s", title=title))
        if t.heatmap:
            row, col = t.heatmap
            add(f"heatmap_{t.task or 'extra'}", figures.heatmap(t.groups, row, col, L),
                L._("Test accuracy (epoch chosen on validation) by %(row)s and %(col)s",
                    row=lb.factor_name(row, L), col=lb.factor_name(col, L)))
    arms = [a for c in study.bn for a in (c.control, *c.arms) if a is not None]
    if arms:
        add("bn_seeds", figures.seeds_strip([(_arm_label(a, L), a.per_run) for a in arms], study.bn[-1].threshold, L),
            L._("Best validation accuracy of every seed, with and without BatchNorm; dashed: the threshold of "
                "“trained”"))
    add("resources", figures.resources_chart(study.resources, L, names),
        L._("Time per epoch and peak device memory per configuration"))
    if gradflow and gradflow["cells"]:
        add("gradflow", diagrams.gradient_flow(gradflow, L),
            L._("Gradient norm ‖∂L/∂W‖ per layer (log scale) at initialisation and after %(k)s Adam steps; "
                "colour: the network, line style: the initialisation; a gap: a gradient of 0 in float32",
                k=gradflow["settings"]["steps"]))
    return refs


def _arm_label(a, L: Lang) -> str:
    return ("BN" if a.norm == "batch" else L._("no BN")) + ", " + lb.init_name(a.init, L)


# --------------------------------------------------------------------------------------------
def user_templates(config: Config) -> Path | None:
    return config.templates_dir


def _signed(number):
    """`number` (a Lang format: dec, pts) with an explicit sign: "+0,63", "−1,20 п. п."; "—" for none."""

    def with_sign(v, digits: int = 2) -> str:
        return DASH if v is None else ("+" if v > 0 else MINUS if v < 0 else "") + number(abs(v), digits)

    return with_sign


def _env(user: Path | None, L: Lang, num: Numbering, citations: Citations) -> jinja2.Environment:
    """The templates' environment: the user's templates (`user`, [report] templates) before the
    shipped ones, the report's catalogues for {% trans %}, and every filter and global a template may
    use, each registered here once. The filters format numbers in the report's language; the globals
    make references, numbered in the order the text first names them (`num`, `citations`: this render's)."""
    loaders = []
    if user is not None:
        loaders.append(jinja2.FileSystemLoader(str(user)))
    loaders.append(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                             extensions=["jinja2.ext.i18n"],
                             undefined=jinja2.StrictUndefined, lstrip_blocks=True)  # no trim_blocks: a line
    # break after a tag stays white space, so sentences on consecutive template lines keep their space
    env.policies["ext.i18n.trimmed"] = True  # a message is one line, whatever the template's line breaks
    env.install_gettext_translations(L.t, newstyle=True)
    env.filters.update(
        pct=L.pct, pct_pm=L.pct_pm, dec=L.dec, grouped=L.int, pts=L.pts, sci=L.sci, sig=L.sig, pval=L.p, p_is=L.p_is,
        signed=_signed(L.dec), signed_pts=_signed(L.pts),
        configs=partial(lb.configurations, L=L))  # names in a sentence: "A; B", "11 other configurations (table 6)"
    env.globals.update(
        cite=citations.cite, cited=citations.cited, eq=num.eq, refs=num.refs, fig_label=num.fig_label,
        fig_ref=num.fig_ref, tab_label=num.tab_label, tab_ref=num.tab_ref, tab_continued=num.tab_continued)
    return env


def font_context(config: Config) -> dict:
    """The font's family, files and sizes (pt): the body's from [report]; ГОСТ: 12 in tables, captions
    and the running header; monospaced names 2 smaller than the text around them."""
    name, size = config.report.font, config.report.font_size
    table = min(size, 12)
    return {**asdict(FONTS[name]), "family": name, "size": size, "size_table": table, "size_small": 12,
            "size_mono": table - 2}


def render_html(config: Config, study: Study, views: list[RunView], figures: dict[str, FigureRef],
                L: Lang, gradflow: dict | None = None) -> str:
    """The report as one HTML document: each section's context (report/context/) rendered by its
    template. `gradflow`: study.gradflow_context's (None: not measured, not enabled)."""
    num, citations = Numbering(L), Citations(L, access_date(config.report.accessed))
    env = _env(user_templates(config), L, num, citations)
    flow = gradflow or {"enabled": False, "facts": None, "lab_inits": [], "nobn_inits": []}
    context = report_context(config, study, views, figures, L, flow, font_context(config),
                             FONTS_DIR.as_uri())
    try:
        return tidy_punctuation(env.get_template("report.html.j2").render(context.names()))
    except jinja2.TemplateNotFound as e:
        raise PackageDataError(f"template {e.name} not found in {TEMPLATES_DIR}"
                               + (f" or {user_templates(config)}" if user_templates(config) else "")
                               + ": reinstall labreport, or restore the file") from None
    except jinja2.TemplateSyntaxError as e:
        raise PackageDataError(f"template {e.filename or e.name}, line {e.lineno}: {e.message}") from None
    except jinja2.UndefinedError as e:  # a name the context does not hold: a template copied from another version
        frames = reversed(traceback.extract_tb(e.__traceback__))
        where = next((f"{Path(f.filename).name}, line {f.lineno}" for f in frames if f.filename.endswith(".j2")),
                     "a template")
        copied = f" (copied into {user_templates(config)} from another version of labreport? compare it with " \
                 "today's: `labreport init NEW --templates`)" if user_templates(config) else ""
        raise PackageDataError(f"{where}: {e.message}{copied}") from None


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Built:
    outputs: tuple[Path, ...]
    html: Path | None
    summary: Path
    figures: dict[str, FigureRef]
    study: Study
    problems: tuple[str, ...]

    @property
    def pdf(self) -> Path | None:
        return next((p for p in self.outputs if p.suffix.lower() == ".pdf"), None)


def check_outputs(outputs) -> tuple[Path, ...]:
    outs = tuple(Path(o) for o in outputs)
    for o in outs:
        if o.suffix.lower() not in FORMATS:
            raise LabreportError(f"--out {o}: the suffix picks the format: .pdf or .docx")
    return outs


def build(config: Config, store: RunStore, out: Path | tuple | list | None = DEFAULT_OUT,
          html_out: Path | None = None) -> Built:
    """The report from the store, as every file of `out` (.pdf and/or .docx) and, with html_out,
    its HTML. A build that fails on the way changes nothing: the figures are drawn into a staging
    folder, every document is rendered in memory, and only then are the documents written, the
    figures moved into <report>_files/, the HTML written (pointing at them), and summary.json last."""
    outputs = check_outputs([out] if isinstance(out, (str, Path)) else (out or ()))
    L = language(config)
    views, study = study_of(config, store)
    names = lb.Labels(study.groups, L, study.own)
    anchor = outputs[0] if outputs else html_out
    assets = anchor.resolve().parent / f"{anchor.stem}_files"  # figures and the summary, next to the report
    assets.parent.mkdir(parents=True, exist_ok=True)
    measurement, flow = gradflow_context(config, store)
    staging = Path(tempfile.mkdtemp(dir=assets.parent, prefix=f".{assets.name}."))  # same file system: renames
    try:
        staged = make_figures(study, staging, L, names, measurement)
        rendered: dict[Path, bytes] = {}
        if outputs:
            html = render_html(config, study, views, staged, L, flow)
            for o in outputs:
                rendered[o] = _render(o, html, config, staging)
        for o, data in rendered.items():
            atomic_write_bytes(o, data)
        figures = _publish(staged, assets)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if html_out is not None:
        atomic_write_bytes(html_out, render_html(config, study, views, figures, L, flow).encode())
    # last: a build that fails on the way leaves the previous summary with the previous report
    summary_path = assets / "summary.json"
    atomic_write_json(summary_path, summary(study, flow["facts"], names))
    problems = tuple(f"{v.label}: {p}" for v in views for p in v.problems)
    return Built(outputs, html_out, summary_path, figures, study, problems)


def _render(out: Path, html: str, config: Config, staging: Path) -> bytes:
    if out.suffix.lower() == ".docx":
        from labreport.report.word import docx_bytes

        return docx_bytes(html, font_context(config), allowed=[staging])
    from labreport.report.pdf import pdf_bytes

    roots = [staging, TEMPLATES_DIR, FONTS_DIR]
    if (user := user_templates(config)) is not None:
        roots.append(user)
    missing = [f for f in asdict(FONTS[font_context(config)["family"]]).values() if not (FONTS_DIR / f).is_file()]
    if missing:
        raise PackageDataError(f"font file {FONTS_DIR / missing[0]} is missing: reinstall labreport")
    return pdf_bytes(html, roots, staging)


def _publish(staged: dict[str, FigureRef], assets: Path) -> dict[str, FigureRef]:
    """Move the staged figures into assets/ (a rename each) and drop figures the new report no
    longer has, so the folder holds exactly this build's figures."""
    assets.mkdir(parents=True, exist_ok=True)
    final: dict[str, FigureRef] = {}
    for name, ref in staged.items():
        svg, png = assets / ref.svg.name, assets / ref.png.name
        os.replace(ref.svg, svg)
        os.replace(ref.png, png)
        final[name] = replace(ref, svg=svg, png=png)
    keep = {p.name for ref in final.values() for p in (ref.svg, ref.png)}
    for old in assets.iterdir():
        if old.suffix in (".svg", ".png") and old.name not in keep:
            old.unlink(missing_ok=True)
    return final
