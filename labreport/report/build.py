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
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import jinja2

from labreport.version import __version__
from labreport.report import labels as lb
from labreport.report import coverage, provenance as prov
from labreport.science.conclusions import Study
from labreport.report.document import Numbering, outline, task_title, tidy_punctuation, unquoted
from labreport.report.preview import preview_texts
from labreport.report.summary import summary
from labreport.models import MODELS
from labreport.config import Config
from labreport.ownmodels import model_id
from labreport.spec import CIFAR10_TEST, DATASET_TITLES, NUM_CLASSES, train_images
from labreport.config.sections import FONTS
from labreport.errors import LabreportError
from labreport.report.i18n import Lang
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


class PackageDataError(LabreportError):
    """A template, catalogue or font of the installation is missing or unreadable (exit code 2)."""


@dataclass(frozen=True)
class FigureRef:
    name: str
    caption: str
    svg: Path
    png: Path


class _NoResult(dict):
    """What the templates see for a run without a result: every field is None."""

    def __missing__(self, key):
        return None


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


def _env(config: Config, L: Lang) -> jinja2.Environment:
    loaders = []
    if (user := user_templates(config)) is not None:
        loaders.append(jinja2.FileSystemLoader(str(user)))
    loaders.append(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                             extensions=["jinja2.ext.do", "jinja2.ext.i18n"],
                             undefined=jinja2.StrictUndefined, lstrip_blocks=True)  # no trim_blocks: a line
    # break after a tag stays white space, so sentences on consecutive template lines keep their space
    env.policies["ext.i18n.trimmed"] = True  # a message is one line, whatever the template's line breaks
    env.install_gettext_translations(L.t, newstyle=True)
    env.filters.update(
        pct=L.pct, pct_pm=L.pct_pm, dec=L.dec, grouped=L.int, pts=L.pts, sci=L.sci, sig=L.sig, pval=L.p, p_is=L.p_is,
        signed=lambda v, d=2: "—" if v is None else ("+" if v > 0 else "−" if v < 0 else "") + L.dec(abs(v), d),
        signed_pts=lambda v, d=2: "—" if v is None else ("+" if v > 0 else "−" if v < 0 else "") + L.pts(abs(v), d),
        model_name=lambda m: lb.model_name(m, L), optimizer_name=lb.optimizer_name,
        test_word=lambda t: _test_word(t, L),
        test_short=lambda t: {"mcnemar": L._("McNemar"), "welch": L._("Welch")}.get(t, "—"))
    return env


def _test_word(t: str, L: Lang) -> str:
    return {"mcnemar": L._("McNemar's exact test"), "welch": L._("Welch's t-test")}.get(t, "—")


METHOD_KEYS = ("model", "norm", "init", "dropout", "optimizer", "lr", "weight_decay", "batch_size", "epochs",
               "schedule", "augment", "precision", "dataset")


def experiment_rows(config: Config) -> list[dict]:
    """Per experiment: every setting the method table shows, grids as their list of values (a model
    as its model_id: one's own with its model_args)."""
    rows = []
    for exp in config.experiments:
        specs = [r.spec.to_dict() for r in config.runs if r.experiment == exp.name]
        row = {"name": exp.name, "task": exp.task, "runs": len(specs), "seeds": list(exp.seeds)}
        for k in METHOD_KEYS:
            vals: list = []
            for sp in specs:
                v = model_id(sp) if k == "model" else sp[k]
                if v not in vals:
                    vals.append(v)
            row[k] = vals
        s0 = specs[0]
        row["split"] = (train_images(s0["val_size"], s0["train_subset"]), s0["val_size"],
                        min(s0["test_subset"] or CIFAR10_TEST, CIFAR10_TEST))
        rows.append(row)
    return rows


def model_rows(config: Config, views: list[RunView], L: Lang, own: dict | None = None) -> list[dict]:
    """The models table: every model the matrix uses (per data set, where it uses several; one's own
    per model_args), in its order, with its parameter count (the BatchNorm variant's) and the paper's;
    the catalogue's count is for 10 classes, so a model of one's own or one on CIFAR-100 is counted
    by its runs. `own`: Study.own, what the student calls each own model and what it implements."""
    used = list(dict.fromkeys((model_id(r.spec.to_dict()), r.spec.dataset) for r in config.runs))
    several = len({d for _, d in used}) > 1
    rows = []
    for m, d in used:
        info, twin = MODELS.get(m), own[m].implements if own and m in own else None
        name = lb.model_name(m, L, own) + (f" ({DATASET_TITLES[d]})" if several else "")
        rows.append({"model": m, "name": name, "description": lb.model_description(m, L, own), "own": not info,
                     "implements": twin,
                     "params": info.params if info and d == "cifar10" else _counted_params(m, d, views),
                     "paper_params_m": _paper_params(info or MODELS.get(twin or ""), d)})
    return rows


def _paper_params(info, dataset: str) -> float | None:
    """The paper's count (millions) of a catalogue model (the one an own model implements), on CIFAR-10."""
    return info.paper_params_m if info and dataset == "cifar10" else None


def _counted_params(model: str, dataset: str, views: list[RunView]) -> int | None:
    """The parameters the model's runs counted (a BatchNorm run's where there is one)."""
    counted = [(v.spec.get("norm") != "batch", v.result["params"]) for v in views
               if model_id(v.spec) == model and v.spec.get("dataset", "cifar10") == dataset
               and v.result and v.result.get("params")]
    return min(counted)[1] if counted else None


def report_fields(config: Config, L: Lang) -> dict:
    """[report] with its defaults: the ministry line of a Russian university's title page unless
    set (an empty string leaves it out), the font and its sizes (ГОСТ: 12 pt in tables and captions)."""
    r = asdict(config.report)
    if r["ministry"] is None:
        r["ministry"] = L._("Ministry of Science and Higher Education of the Russian Federation")
    r["title"], r["discipline"] = unquoted(r["title"]), unquoted(r["discipline"])  # the title page quotes them
    return r


def font_context(config: Config) -> dict:
    name, size = config.report.font, config.report.font_size
    return {**asdict(FONTS[name]), "family": name, "size": size, "size_table": min(size, 12), "size_small": 12}


def render_html(config: Config, study: Study, views: list[RunView], figures: dict[str, FigureRef],
                L: Lang, gradflow: dict | None = None) -> str:
    env = _env(config, L)
    env.filters["model_name"] = lambda m: lb.model_name(m, L, study.own)
    names = lb.Labels(study.groups, L, study.own)
    num = Numbering(L)
    citations = Citations(L, access_date(config.report.accessed))
    context = dict(
        r=report_fields(config, L), lang=L.code, outline=outline(study, L), study=study, views=views,
        preview=preview_texts(config, L), not_run=coverage.texts(config, L, study.own),
        figures=figures, provenance=prov.facts(views), devices=[prov.device_phrase(d, L) for d in prov.devices(views)],
        config=config, version=__version__,
        experiments=experiment_rows(config), models=model_rows(config, views, L, study.own), no_result=_NoResult(),
        datasets=list(dict.fromkeys(r.spec.dataset for r in config.runs)), dataset_title=DATASET_TITLES.get,
        num_classes=NUM_CLASSES.get, per_dataset=lambda values: lb.per_dataset(values, L),
        chances=[(d, 1 / NUM_CLASSES[d]) for d in study.datasets],
        on_dataset=lambda d: list(dict.fromkeys(r.experiment for r in config.runs if r.spec.dataset == d)),
        fonts_dir=FONTS_DIR.as_uri(),
        font=font_context(config),
        gradflow=gradflow or {"enabled": False, "facts": None, "lab_inits": [], "nobn_inits": []},
        cite=citations.cite, cited=citations.cited,
        fig_label=num.fig_label, fig_ref=num.fig_ref, tab_label=num.tab_label, tab_ref=num.tab_ref,
        tab_continued=num.tab_continued, eq=num.eq,
        lbl=names, lbl_of=names.of, fval=lambda f, v: lb.factor_value(f, v, L), fname=lambda f: lb.factor_name(f, L),
        aname=lambda f: lb.axis_name(f, L),
        init_name=lambda i: lb.init_name(i, L), init_short=lambda i: lb.init_short(i, L),
        model_name=lambda m: lb.model_name(m, L, study.own), model_phrase=lambda m: lb.model_phrase(m, L, study.own),
        test_word=lambda t: _test_word(t, L),
        configs=lambda groups, ref: lb.configurations(groups, ref, names, L), join_and=L.join_and,
    )
    env.filters["lbl"] = names
    env.filters["why"] = lambda reason: lb.divergence(reason, L)
    try:
        return tidy_punctuation(env.get_template("report.html.j2").render(**context))
    except jinja2.TemplateNotFound as e:
        raise PackageDataError(f"template {e.name} not found in {TEMPLATES_DIR}"
                               + (f" or {user_templates(config)}" if user_templates(config) else "")
                               + ": reinstall labreport, or restore the file") from None
    except jinja2.TemplateSyntaxError as e:
        raise PackageDataError(f"template {e.filename or e.name}, line {e.lineno}: {e.message}") from None


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


def build(config: Config, store: RunStore, out: Path | tuple | list | None = Path("report.pdf"),
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
