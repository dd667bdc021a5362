"""The study: the matrix's runs as the store has them and what they conclude, for the report and
for Lab.conclusions() alike (no templates, no jinja2, no drawing).

    collect(config, store)       one RunView per run (science/runs.py): the only I/O before rendering
    study_of(config, store)      the views and their conclusions (science/conclusions.py)
    gradflow_context(...)        the cached gradient-flow measurement and its facts (science/gradflow.py)
    summary_of(config, store)    every number the conclusions use: summary.json
"""

from __future__ import annotations

from labreport.config import Config, load_config
from labreport.errors import ConfigError
from labreport.report import labels as lb
from labreport.report.i18n import Lang
from labreport.report.summary import summary
from labreport.science.conclusions import Study, conclude
from labreport.science.gradflow import facts
from labreport.science.runs import RunView
from labreport.spec import SETTINGS
from labreport.store import RunStore
from labreport.store.gradflow import cached

PAPER_PROFILE = "paper"  # the profile of experiments.toml that holds He et al.'s training recipe


def collect(config: Config, store: RunStore) -> list[RunView]:
    """Each run of the matrix as the store has it (result.json and history.json only), with every
    problem met on the way: the report is built from what is valid."""
    views = []
    for run in config.runs:
        st = store.state(run.key)
        problems: list[str] = []
        history = tuple(store.read_history(run.key)) if st.status != "missing" else ()
        if st.final:
            res = st.result
            if res.get("spec") != run.spec.to_dict():
                problems.append("result.json holds another spec than its key says: ignored")
                st_status, res = "failed", None
            else:
                st_status = st.status
                if not history:
                    problems.append(f"{store.run_dir(run.key) / 'history.json'} is missing or unreadable: no curves")
        else:
            st_status, res = st.status, None
            if st.status == "failed":
                problems.append(f"failed: {st.error}")
        if (run_dir := store.run_dir(run.key)).is_dir() and st.status == "partial" and not history:
            problems.append(f"{run_dir}: no readable history yet")
        views.append(RunView(run.experiment, run.task, run.label, run.key, run.spec.to_dict(),
                             dict(run.varying), st_status, res, history, tuple(problems)))
    return views


def paper_recipe(config: Config) -> dict:
    """The training settings [profile.paper] sets for every experiment it runs (experiments.toml,
    the one place the paper's recipe is written): a run trained with all of them is the paper's
    recipe in the report. {} when the file has no such profile."""
    if PAPER_PROFILE not in config.profiles:
        return {}
    try:
        specs = [r.spec.to_dict() for r in load_config(config.path, PAPER_PROFILE).runs]
    except ConfigError:
        return {}
    table = config.profile_tables.get(PAPER_PROFILE, {})
    return {k: specs[0].get(k) for k in table if k in SETTINGS and all(s.get(k) == specs[0].get(k) for s in specs)}


def study_of(config: Config, store: RunStore) -> tuple[list[RunView], Study]:
    """The runs of the matrix as the store has them, and what they conclude."""
    views = collect(config, store)
    a = config.analysis
    declared = {e.name: e.declared for e in config.experiments}
    return views, conclude(views, a.trained_threshold, a.claim_rate, a.confidence, a.alpha, declared,
                           paper_recipe(config))


def language(config: Config) -> Lang:
    """The report's language, with the user's catalogues (<templates>/locale) looked up first."""
    user = config.templates_dir
    return Lang(config.report.language, (user / "locale",) if user else ())


def gradflow_context(config: Config, store: RunStore) -> tuple[dict | None, dict]:
    """The cached gradient-flow measurement (JSON only: `build` never trains or loads data) and what
    the theory section needs: {"enabled", "facts" (None: nothing measured yet), "lab_inits", "nobn_inits"}."""

    def inits(runs):
        return list(dict.fromkeys(r.spec.init for r in runs))

    ctx = {"enabled": config.gradflow.enabled, "facts": None, "lab_inits": inits(config.runs),
           "nobn_inits": inits(r for r in config.runs if r.spec.norm == "none")}
    if not ctx["enabled"]:
        return None, ctx
    measurement = cached(store.root, config.gradflow)
    if measurement["cells"]:
        ctx["facts"] = facts(measurement, ctx["lab_inits"])
    return measurement, ctx


def summary_of(config: Config, store: RunStore) -> dict:
    """Every number the report's conclusions use (summary.json), without drawing or writing anything."""
    _, study = study_of(config, store)
    _, flow = gradflow_context(config, store)
    return summary(study, flow["facts"], lb.Labels(study.groups, language(config), study.own))
