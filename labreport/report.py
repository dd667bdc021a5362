"""Conclusions + figures + templates -> HTML -> PDF.

`build` reads only experiments.toml and the run store: no training, no data set, no torch.
Every user string reaches the HTML through Jinja's autoescaping, and WeasyPrint fetches only
files under the report's own folders (its figures, the templates, the bundled fonts): no network,
no other `file://` path.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

import jinja2

from . import __version__
from .analysis import Study, conclude
from .catalog import CATALOG
from .config import Config
from .results import RunView, collect
from .store import RunStore, atomic_write_bytes, atomic_write_json

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR.parent / "templates"  # the shipped templates, top level of the checkout
FONTS_DIR = PACKAGE_DIR / "assets" / "fonts"

TASK_TITLES = {
    "ru": {"3": "ResNet-18 против базовой CNN (задание 3)", "4": "ResNet-20: dropout и L2-регуляризация (задание 4)",
           "5": "ResNet-110 с BatchNorm и без него (задание 5)", "": "Дополнительные эксперименты",
           "paper": "Рецепт статьи: ResNet-20…110 (He et al. 2015, раздел 4.2)"},
    "en": {"3": "ResNet-18 against the CNN baseline (task 3)", "4": "ResNet-20: dropout and L2 regularization (task 4)",
           "5": "ResNet-110 with and without BatchNorm (task 5)", "": "Additional experiments",
           "paper": "The paper's recipe: ResNet-20…110 (He et al. 2015, section 4.2)"},
}


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


class Numbering:
    """Figures and tables numbered in order of first appearance ("Рисунок 3 – ...")."""

    def __init__(self):
        self.counts: dict[str, dict[str, int]] = {"figure": {}, "table": {}}

    def __call__(self, kind: str, name: str) -> int:
        seen = self.counts[kind]
        return seen.setdefault(name, len(seen) + 1)


# --------------------------------------------------------------------------------------------
def make_figures(study: Study, out_dir: Path, lang: str, gradflow: dict | None = None) -> dict[str, FigureRef]:
    """Render every figure the study (and the gradient-flow measurement, if any) has data for."""
    from . import figures as F

    ru = lang == "ru"
    refs: dict[str, FigureRef] = {}

    def add(name, fig, caption):
        if fig is not None:
            paths = F.save_figure(fig, out_dir, name)
            refs[name] = FigureRef(name, caption, paths["svg"], paths["png"])

    for t in study.tasks:
        title = TASK_TITLES[lang].get(t.task, (f"задание {t.task}" if ru else f"task {t.task}"))
        add(f"curves_{t.task or 'extra'}", F.curves(t.groups, lang=lang),
            (f"Точность на валидации и тесте по эпохам: {title}" if ru
             else f"Validation and test accuracy per epoch: {title}"))
        if t.heatmap:
            row, col = t.heatmap
            add(f"heatmap_{t.task or 'extra'}", F.heatmap(t.groups, row, col, lang=lang),
                (f"Точность на тесте (эпоха выбрана по валидации) в зависимости от {row} и {col}" if ru
                 else f"Test accuracy (epoch chosen on validation) over {row} x {col}"))
    arms = [a for c in study.bn for a in (c.control, *c.arms) if a is not None]
    if arms:
        add("bn_seeds", F.seeds_strip([(a.label, a.per_run) for a in arms], study.threshold, lang=lang),
            ("Лучшая точность на валидации по зёрнам, с BatchNorm и без; пунктир – порог «обучилась»" if ru
             else "Best validation accuracy per seed, with and without BatchNorm; dashed: the 'trained' threshold"))
    add("resources", F.resources_chart(study.resources, lang=lang),
        "Время эпохи и пиковая память по моделям" if ru else "Time per epoch and peak memory per model")
    if gradflow and gradflow["cells"]:
        k = gradflow["settings"]["steps"]
        add("gradflow", F.gradient_flow(gradflow, lang=lang),
            (f"Норма градиента ‖∂L/∂W‖ по слоям (логарифмическая шкала) при инициализации и после {k} шагов Adam; "
             "цвет – сеть, тип линии – инициализация; разрыв линии – градиент 0 в float32" if ru else
             f"Gradient norm ‖∂L/∂W‖ per layer (log scale) at initialisation and after {k} Adam steps; "
             "colour: the network, line style: the init; a gap: a gradient of 0 in float32"))
    return refs


# --------------------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj):
        return {k: _jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def summary(study: Study, gradflow: dict | None = None) -> dict:
    """Every number the conclusions use, machine-readable (no per-epoch histories)."""

    def group(g):
        return {"label": g.label, "experiment": g.experiment, "task": g.task, "model": g.model,
                "coords": dict(g.coords), "runs": g.n_total, "finished": len(g.finished),
                "mean_test_acc": g.mean, "std_test_acc": g.std, "values": list(g.values),
                "keys": [r.key for r in g.runs]}

    def best(r):
        return None if r is None else {
            "labels": [r.best.label], "mean_test_acc": r.best.mean, "considered": r.considered,
            "ties": [g.label for g in r.ties], "untested": [g.label for g in r.untested], "alpha": r.alpha,
            "comparisons": [{"label": c.other.label, "diff": c.diff, "test": c.test, "p": c.p, "p_holm": c.p_adj,
                             "detectable": c.detectable} for c in r.comparisons]}

    def effect(e):
        return {"factor": e.factor, "levels": e.levels, "best_level": e.best_level, "worst_level": e.worst_level,
                "spread": e.spread, "detected": e.detected, "detectable": e.detectable,
                "tests": [{"level": t.level, "diff": t.diff, "test": t.test, "p": t.p, "p_holm": t.p_adj}
                          for t in e.tests]}

    def claim(c):
        return {"model": c.model, "control": c.control, "control_trains": c.control_trains, "arms": c.arms,
                "mixed_precision": c.mixed_precision}

    return _jsonable({
        "labreport": __version__, "counts": study.counts,
        "metric": "test accuracy at the epoch of best validation accuracy",
        "best": best(study.ranking),
        "tasks": [{"task": t.task, "best": best(t.ranking), "factors": [effect(e) for e in t.factors],
                   "heatmap": t.heatmap, "groups": [group(g) for g in t.groups]} for t in study.tasks],
        "bn": [claim(c) for c in study.bn], "claim": None if study.claim is None else claim(study.claim),
        "paper": study.paper, "resources": study.resources,
        "threshold": study.threshold, "claim_rate": study.claim_rate, "confidence": study.confidence,
        "gradflow": None if not gradflow else [{k: v for k, v in r.items() if k != "time_s"} for r in gradflow["rows"]],
    })


# --------------------------------------------------------------------------------------------
def _env(config: Config) -> jinja2.Environment:
    loaders = []
    user = config.report.get("templates")
    if user:
        loaders.append(jinja2.FileSystemLoader(str(config.base_dir / user)))
    loaders.append(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True, extensions=["jinja2.ext.do"],
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, d=1: "—" if v is None else f"{100 * v:.{d}f}"
    env.filters["num"] = lambda v, d=2: "—" if v is None else f"{v:.{d}f}"
    env.filters["sci"] = lambda v: "—" if v is None else (f"{v:g}")
    env.filters["sig"] = lambda v, d=3: "—" if v is None else f"{v:.{d}g}"  # significant digits
    return env


def _provenance(views: list[RunView]) -> dict:
    """Hardware/software/data facts from the finished runs (the set of distinct values each)."""
    keys = ("device", "torch", "cuda", "precision", "data_fingerprint", "data_official", "threads")
    seen: dict[str, list] = {k: [] for k in keys}
    for v in views:
        prov = (v.result or {}).get("provenance", {})
        for k in keys:
            if k in prov and prov[k] not in seen[k]:
                seen[k].append(prov[k])
    return seen


METHOD_KEYS = ("model", "norm", "init", "dropout", "optimizer", "lr", "weight_decay", "batch_size", "epochs",
               "schedule", "augment", "precision")


def experiment_rows(config: Config) -> list[dict]:
    """Per experiment: every setting the method table shows, grids as their list of values."""
    rows = []
    for exp in config.experiments:
        specs = [r.spec.to_dict() for r in config.runs if r.experiment == exp.name]
        row = {"name": exp.name, "task": exp.task, "runs": len(specs), "seeds": list(exp.seeds)}
        for k in METHOD_KEYS:
            vals: list = []
            for sp in specs:
                if sp[k] not in vals:
                    vals.append(sp[k])
            row[k] = vals
        s0 = specs[0]
        row["split"] = (s0["train_subset"] or 50000 - s0["val_size"], s0["val_size"], s0["test_subset"] or 10000)
        rows.append(row)
    return rows


def gradflow_context(config: Config, store: RunStore) -> tuple[dict | None, dict]:
    """The cached gradient-flow measurement (JSON only: `build` never trains or loads data) and what
    the theory section needs: {"enabled", "facts" (None: nothing measured yet), "lab_inits", "nobn_inits"}."""
    from .gradflow import cached, facts

    def inits(runs):
        return list(dict.fromkeys(r.spec.init for r in runs))

    ctx = {"enabled": config.gradflow["enabled"], "facts": None, "lab_inits": inits(config.runs),
           "nobn_inits": inits(r for r in config.runs if r.spec.norm == "none")}
    if not ctx["enabled"]:
        return None, ctx
    measurement = cached(store.root, config.gradflow)
    if measurement["cells"]:
        ctx["facts"] = facts(measurement, ctx["lab_inits"])
    return measurement, ctx


def render_html(config: Config, study: Study, views: list[RunView], figures: dict[str, FigureRef],
                lang: str, gradflow: dict | None = None) -> str:
    env = _env(config)
    report = {"language": lang, **config.report}
    return env.get_template("report.html.j2").render(
        r=report, lang=lang, study=study, views=views, figures=figures, num=Numbering(),
        task_titles=TASK_TITLES[lang], catalog=CATALOG, provenance=_provenance(views),
        config=config, fonts_dir=FONTS_DIR.as_uri(), version=__version__,
        experiments=experiment_rows(config), no_result=_NoResult(),
        gradflow=gradflow or {"enabled": False, "facts": None, "lab_inits": [], "nobn_inits": []},
    )


# --------------------------------------------------------------------------------------------
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
            raise ValueError(f"blocked: {parsed.scheme or 'relative'} URL {url[:80]!r} (the report loads only its own files)")
        path = Path(unquote(parsed.path)).resolve()
        if not any(path.is_relative_to(r) for r in self.roots):
            raise ValueError(f"blocked: {path} is outside the report's folders")
        return URLFetcherResponse(url, body=path.read_bytes(), headers={"Content-Type": _mime(path)})


def _mime(path: Path) -> str:
    return {".svg": "image/svg+xml", ".png": "image/png", ".ttf": "font/ttf", ".css": "text/css"}.get(
        path.suffix.lower(), "application/octet-stream")


def write_pdf(html: str, out: Path, allowed: list[Path], base_url: Path) -> None:
    """Render to a temporary file and rename: a failed build leaves the previous PDF intact."""
    import weasyprint

    doc = weasyprint.HTML(string=html, base_url=base_url.as_uri() + "/", url_fetcher=_LocalOnlyFetcher(allowed))
    # fontTools stamps the embedded font subsets with the current time unless SOURCE_DATE_EPOCH is
    # set; a fixed stamp (and a fixed PDF id) makes two builds of the same results byte-identical.
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = old or "0"
    try:
        pdf = doc.write_pdf(pdf_identifier=b"labreport")
    finally:
        if old is None:
            del os.environ["SOURCE_DATE_EPOCH"]
    atomic_write_bytes(out, pdf)


@dataclass(frozen=True)
class Built:
    pdf: Path | None
    html: Path | None
    summary: Path
    figures: dict[str, FigureRef]
    study: Study
    problems: tuple[str, ...]


def build(config: Config, store: RunStore, out: Path | None = Path("report.pdf"), html_out: Path | None = None) -> Built:
    """Figures, HTML and PDF from the store. A build that fails on the way changes nothing: the
    figures are drawn into a staging folder and the PDF is rendered from there; only then are the
    figures moved into <report>_files/, the HTML written (pointing at them), and summary.json last."""
    lang = config.report.get("language", "ru")
    views = collect(config, store)
    study = conclude(views, config.analysis["trained_threshold"], config.analysis["claim_rate"],
                     config.analysis["confidence"], config.analysis["alpha"])
    anchor = out if out is not None else html_out
    assets = anchor.resolve().parent / f"{anchor.stem}_files"  # figures and the summary, next to the report
    assets.parent.mkdir(parents=True, exist_ok=True)
    measurement, flow = gradflow_context(config, store)
    staging = Path(tempfile.mkdtemp(dir=assets.parent, prefix=f".{assets.name}."))  # same file system: renames
    try:
        staged = make_figures(study, staging, lang, measurement)
        if out is not None:
            roots = [staging, TEMPLATES_DIR, FONTS_DIR]
            if config.report.get("templates"):
                roots.append(config.base_dir / config.report["templates"])
            write_pdf(render_html(config, study, views, staged, lang, flow), out, roots, staging)
        figures = _publish(staged, assets)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if html_out is not None:
        atomic_write_bytes(html_out, render_html(config, study, views, figures, lang, flow).encode())
    # last: a build that fails on the way leaves the previous summary with the previous PDF
    summary_path = assets / "summary.json"
    atomic_write_json(summary_path, summary(study, flow["facts"]))
    problems = tuple(f"{v.label}: {p}" for v in views for p in v.problems)
    return Built(out, html_out, summary_path, figures, study, problems)


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
