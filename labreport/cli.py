"""The `labreport` command: thin click commands over the library.

Exit codes: 0 ok, 1 some runs failed, 2 usage, configuration or data error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from labreport.config import Config, load_config
from labreport.errors import LabreportError
from labreport.cluster.executors import CONFIRM_RUNS, Console
from labreport.store import RunStore

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Context:
    def __init__(self, config_path: Path, runs: str | None):
        self.config_path = config_path
        self.runs = runs

    def config(self, profile: str | None) -> Config:
        return load_config(self.config_path, profile)

    def store(self, config: Config) -> RunStore:
        """--runs, else LABREPORT_RUNS, else [store] root (relative to the TOML), else ./runs."""
        root = self.runs or os.environ.get("LABREPORT_RUNS")
        if root is None and config.store.root:
            root = config.base_dir / config.store.root
        return RunStore(root or "runs")


def _fail(e: LabreportError):
    click.echo("error: " + " ".join(str(e).splitlines()), err=True)  # one line, even if a cause had several
    sys.exit(e.exit_code)


class Group(click.Group):
    """Turns library errors into one-line messages with their exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LabreportError as e:
            _fail(e)


profile_option = click.option("--profile", "-p", metavar="NAME", help="apply [profile.NAME] of the TOML")


def _set_runs(ctx, _param, value):
    if value is not None:
        ctx.find_object(Context).runs = value
    return value


# --runs is accepted before or after the command name (labreport --runs D run / labreport run --runs D)
runs_option = click.option("--runs", metavar="DIR", expose_value=False, callback=_set_runs,
                           help="run store (default: [store] root, LABREPORT_RUNS, ./runs)")


@click.group(cls=Group, context_settings=CONTEXT)
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default="experiments.toml", show_default=True, help="the experiment matrix")
@click.option("--runs", metavar="DIR", help="run store (default: [store] root, LABREPORT_RUNS, ./runs)")
@click.version_option(package_name="labreport")
@click.pass_context
def main(ctx, config_path, runs):
    """Run a ResNet-on-CIFAR-10 lab study and turn it into a report (PDF and DOCX, ГОСТ 7.32).

    \b
    Example:
        labreport init                  # the lab's experiments.toml, here
        labreport plan                  # what the matrix expands to
        labreport run --profile quick   # a quick CPU preview of every run
        labreport status                # what is done
        labreport build --out report.pdf --out report.docx
    """
    ctx.obj = Context(config_path, runs)


def _state_rows(config: Config, store: RunStore) -> list[dict]:
    rows = []
    for run in config.runs:
        st = store.state(run.key)
        rows.append({"experiment": run.experiment, "task": run.task, "label": run.label, "key": run.key,
                     "status": st.status, "epochs_done": st.epochs_done, "epochs": run.spec.epochs,
                     "varying": dict(run.varying), "spec": run.spec.to_dict(),
                     "error": st.error, "leased_by": st.leased_by})
    return rows


def _status_text(row: dict) -> str:
    if row.get("queued_job"):
        return f"queued (job {row['queued_job']})"
    if row["status"] == "partial":
        return f"partial {row['epochs_done']}/{row['epochs']}"
    return row["status"]


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--templates", "with_templates", is_flag=True,
              help="also copy the report's templates and message catalogues into FOLDER/templates to edit")
@click.option("--force", is_flag=True, help="overwrite an experiments.toml (and templates/) already there")
def init(folder, with_templates, force):
    """Start a lab in FOLDER (default: here): write the lab's experiments.toml, and with
    --templates a copy of the templates to customise. Nothing is overwritten without --force.

    \b
    Example:
        labreport init                 # then edit [report] in experiments.toml
        labreport init my-lab --templates
    """
    from labreport.scaffold import init as scaffold

    made = scaffold(folder, templates=with_templates, force=force)
    extra = f" and {len(made.written) - 1} template files in {folder / 'templates'}" if with_templates else ""
    click.echo(f"wrote {made.written[0]}{extra}")
    click.echo("next: edit [report] (the title page) in it, then `labreport plan` and `labreport run`")


@main.command()
@profile_option
@runs_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def plan(obj: Context, profile, as_json):
    """List every run of the matrix: experiment, settings, key and status.

    \b
    Example:
        labreport plan
        labreport plan --profile quick --json
        labreport plan --profile paper     # He et al. 2015's recipe and depths
    """
    from labreport.engine.schedule import describe  # no torch: plan stays instant

    config = obj.config(profile)
    rows = _state_rows(config, obj.store(config))
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for exp in config.experiments:
        erows = [r for r in rows if r["experiment"] == exp.name]
        spec = config.runs[[r.experiment for r in config.runs].index(exp.name)].spec
        task = f" (task {exp.task})" if exp.task else ""
        schedule = describe(spec)
        click.echo(f"{exp.name}{task}: {spec.model}, {len(erows)} run(s), {spec.epochs} epochs, "
                   f"{spec.optimizer} lr={spec.lr:g}, batch {spec.batch_size}" + (f"; {schedule}" if schedule else ""))
        for r in erows:
            coords = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["varying"].items())
            click.echo(f"  {r['key']}  {_status_text(r):<14} {coords}")
    unique = len(config.unique_runs())
    click.echo(f"{len(rows)} runs ({unique} distinct)" + (f", profile '{profile}'" if profile else ""))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def models(as_json):
    """List the model registry with parameter counts (and the paper's, where it has one).

    \b
    Example:
        labreport models
    """
    # torch-free: the counts are exact (tests/engine/test_models.py builds each model)
    from labreport.catalog import CATALOG

    rows = []
    for name, info in CATALOG.items():
        rows.append({"name": name, "family": info.family, "params": info.params,
                     "paper_params_m": info.paper_params_m, "paper_error": info.paper_error,
                     "supports": sorted(info.supports), "description": info.description})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'model':<11} {'params':>12} {'paper':>7} {'paper err%':>10}  description")
    for r in rows:
        paper = f"{r['paper_params_m']}M" if r["paper_params_m"] else "-"
        err = f"{r['paper_error']}" if r["paper_error"] else "-"
        click.echo(f"{r['name']:<11} {r['params']:>12,} {paper:>7} {err:>10}  {r['description']}")


@main.command()
@profile_option
@runs_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def status(obj: Context, profile, as_json):
    """Show each run's state in the store: done, partial k/N, missing, diverged, failed, queued (job ID).

    \b
    Example:
        labreport status --profile quick
    """
    config = obj.config(profile)
    store = obj.store(config)
    rows = _state_rows(config, store)
    from labreport.cluster.slurm import queued_jobs

    queued = queued_jobs(config, store)
    for r in rows:  # submitted to a job array (run --executor), not claimed by a task yet
        if r["key"] in queued and r["status"] in ("missing", "partial") and not r["leased_by"]:
            r["queued_job"] = queued[r["key"]]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        extra = f"  ({r['error']})" if r["error"] else ""
        if r["leased_by"]:
            lb = r["leased_by"]
            extra += f"  [claimed by {lb.get('host')}:{lb.get('pid')} since {lb.get('since')}]"
        click.echo(f"{r['key']}  {_status_text(r):<14} {r['label']}{extra}")
    counts: dict[str, int] = {}
    for r in rows:
        s = "queued" if r.get("queued_job") else r["status"]
        counts[s] = counts.get(s, 0) + 1
    click.echo(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"  (store: {store.root})")


@main.command()
@profile_option
@runs_option
@click.option("--only", multiple=True, metavar="NAME", help="train only this experiment (repeatable)")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N")
@click.option("--dry-run", is_flag=True, help="list what would be trained, train nothing")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=1, show_default=True,
              help="worker processes training runs at once (they share GPUs or divide the CPU cores)")
@click.option("--gpus", metavar="0,1,...", help="with --jobs: GPUs to spread the workers over")
@click.option("--fail-fast", is_flag=True, help="with --jobs: stop every worker at the first failed run")
@click.option("--wait", is_flag=True,
              help="keep waiting for runs other workers are training, and take over those whose worker died; "
                   "with --executor: wait for the job array, showing progress")
@click.option("--executor", type=click.Choice(["local", "slurm", "submitit-local"]), default="local",
              show_default=True, help="local: train here; slurm: one job array task per run left "
                                      "([executor] in the TOML); submitit-local: that array, run here (tests)")
@click.option("--partition", metavar="NAME", help="with --executor slurm: override [executor] partition")
@click.option("--time-min", type=click.IntRange(1), metavar="MIN", help="with --executor: time limit per task")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, help="torch CPU threads (0: all cores)")
@click.option("--yes", "-y", is_flag=True, help=f"train even when more than {CONFIRM_RUNS:,} runs are left")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path), hidden=True)
@click.pass_obj
def run(obj: Context, profile, only, device, dry_run, jobs, gpus, fail_fast, wait, executor, partition,
        time_min, threads, yes, summary_json):
    """Train every run of the matrix that is not done yet (interrupted runs resume).

    Several `labreport run` processes, here or on other machines sharing the run store, never
    train the same run: each run is claimed with a lease first.

    \b
    Example:
        labreport run --profile quick
        labreport run --only resnet20-reg --device cuda:1
        labreport run --jobs 4 --gpus 0,1      # 4 workers, 2 per GPU
        labreport run --executor slurm --wait  # one Slurm array task per run left
    """
    from labreport.cluster import executors

    if executor != "local" and jobs > 1:
        raise click.UsageError("--jobs is for local workers: with --executor each run is its own task")
    config = obj.config(profile)
    store = obj.store(config)
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else []
    ex = executors.get("processes" if jobs > 1 else executor, jobs=jobs, gpus=gpu_list, fail_fast=fail_fast,
                       partition=partition, time_min=time_min, summary_json=summary_json)
    if dry_run:
        runs = config.select(tuple(only))
        for line in ex.describe(config, store, runs, threads):
            click.echo(line)
        # the device the runs would train on: here, unless a cluster's nodes train them
        here = device if device != "auto" else config.run.device
        _dry_run(store, runs, None if executor == "slurm" else here)
        return
    sys.exit(executors.run(ex, config, store, console=_console(), only=tuple(only), device=device, wait=wait,
                           threads=threads, yes=yes))


def _console() -> Console:
    return Console(out=click.echo, err=lambda text: click.echo(text, err=True), tty=sys.stderr.isatty())


def _dry_run(store: RunStore, runs, device: str | None = None) -> None:
    """What `run` would train, each with the time it should take at the speed of the store's
    finished runs on `device` (None: unknown, the most used device type; see eta.py), then the
    total, and what a T4/A100/H100 would take where measured."""
    from labreport.cluster.eta import Device, Left, dry_run_lines, speeds
    from labreport.store.records import FINAL_STATES

    states = {r.key: store.state(r.key) for r in runs}
    todo = [r for r in runs if states[r.key].status not in FINAL_STATES]
    final = [r for r in runs if states[r.key].status in FINAL_STATES]
    target = None
    if device == "cpu":
        target = Device("cpu")
    elif device is not None:  # asks torch (imported here, ~1.5 s) whether CUDA is there, and which GPU
        from labreport.engine.device import device_identity

        target = Device(*device_identity(device))
    sp = speeds([res for k in store.keys() if (res := store.read_result(k)) is not None], target)
    rows = [Left(r.key, r.label, r.spec, states[r.key].epochs_done,
                     _status_text({"status": states[r.key].status, "epochs_done": states[r.key].epochs_done,
                                   "epochs": r.spec.epochs})) for r in todo]
    for line in dry_run_lines(rows, sp):
        click.echo(line)
    click.echo(f"{len(todo)} to train, {len(final)} already done")


@main.command()
@profile_option
@runs_option
@click.option("--out", "-o", "outs", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="the report to write; the suffix picks the format: .pdf or .docx (editable in Word or "
                   "LibreOffice); repeat for both  [default: report.pdf]")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), help="also write the HTML")
@click.pass_obj
def build(obj: Context, profile, outs, html_out):
    """Build the report from the run store (no training, no data set needed): a PDF, an editable
    DOCX, or both, in the layout of ГОСТ 7.32 (language, title page and font: [report]).

    Missing or unfinished runs are marked as such. Figures (SVG, PNG) and summary.json,
    every number the conclusions use, are written to REPORT_files/ next to the report.

    \b
    Example:
        labreport build --out report.pdf
        labreport build --out report.pdf --out report.docx
        labreport build --profile quick --out preview.pdf --html preview.html
    """
    from labreport.report.build import build as build_report

    config = obj.config(profile)
    outs = outs or (Path("report.pdf"),)
    built = build_report(config, obj.store(config), list(outs), html_out)
    for p in built.problems:
        click.echo(f"warning: {p}", err=True)
    c = built.study.counts
    click.echo(f"wrote {', '.join(map(str, outs))} ({c['done']} done, {c['diverged']} diverged, "
               f"{c['partial'] + c['missing'] + c['failed']} not finished); figures and summary in {built.summary.parent}")


@main.command()
@profile_option
@runs_option
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N")
@click.pass_obj
def gradflow(obj: Context, profile, device):
    """Measure the gradient flow of task 1: per-layer ||dL/dW|| of ResNet and plain nets, with and
    without BatchNorm, at init and after a few Adam steps ([gradflow] in the TOML).

    Measurements are cached in the run store (gradflow-<key>/) and never recomputed; `build` puts
    the figure and the numbers into the report. The default set takes about 1.5 minutes on 2 CPU cores.

    \b
    Example:
        labreport gradflow
        labreport gradflow --device cuda
    """
    from labreport.cluster.local import measure_gradflow
    from labreport.engine.runner import loader_for
    from labreport.science.gradflow import table_lines

    config = obj.config(profile)
    console = _console()
    try:
        m = measure_gradflow(config, obj.store(config), loader_for(config, console.err), device, console)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: finished measurements are saved; run the same command again", err=True)
        sys.exit(130)
    for line in table_lines(m["cells"], config.gradflow.steps):
        click.echo(line)
