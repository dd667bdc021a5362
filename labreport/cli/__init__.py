"""The `labreport` command: thin click commands over the Python API (api.Lab), which notebooks use
too. Each command opens the lab, calls one method and prints what it returns.

Exit codes: 0 ok, 1 some runs failed, 2 usage, configuration or data error, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click

from labreport.api import Lab
from labreport.cluster.executors import CONFIRM_RUNS, Console
from labreport.errors import LabreportError
from labreport.logs import configure as configure_logging
from labreport.report import DEFAULT_OUT
from labreport.spec import coords_text

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
LONG_RUN_S = 3600  # `run` in a terminal asks before training longer than this on a CPU
PREVIEWS = ("quick", "smoke")  # profiles that preview the lab, the first one the TOML has is suggested
RUNS_HELP = "run store (default: LABREPORT_RUNS, else [store] root of the TOML, else ./runs)"


class Context:
    def __init__(self, config_path: Path, runs: str | None):
        self.config_path, self.runs = config_path, runs

    def lab(self, profile: str | None, overrides: tuple[str, ...] = ()) -> Lab:
        return Lab(self.config_path, runs=self.runs, profile=profile, overrides=overrides, overrides_from="--set")


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


def _set_runs(ctx, _param, value):
    if value is not None:
        ctx.find_object(Context).runs = value
    return value


def lab_options(fn):
    """--profile, --set and --runs: what every command that reads the matrix and the store takes
    (--runs before or after the command name: labreport --runs D plan / labreport plan --runs D)."""
    for option in reversed((
            click.option("--profile", "-p", metavar="NAME", help="apply [profile.NAME] of the TOML"),
            click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                         help="override a setting after the profile, checked as the TOML: epochs=10, "
                              "experiment.NAME.dropout=[0,0.1], report.language=en (repeatable)"),
            click.option("--runs", metavar="DIR", expose_value=False, callback=_set_runs, help=RUNS_HELP))):
        fn = option(fn)
    return fn


json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def _console() -> Console:
    quiet = click.get_current_context().find_root().params.get("quiet", False)
    return Console(out=click.echo, err=lambda text: click.echo(text, err=True), tty=sys.stderr.isatty(), quiet=quiet)


@click.group(cls=Group, context_settings=CONTEXT)
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default="experiments.toml", show_default=True, help="the experiment matrix")
@click.option("--runs", metavar="DIR", help=RUNS_HELP)
@click.option("--verbose", "-v", count=True, help="more messages (-vv: debugging)")
@click.option("--quiet", "-q", is_flag=True, help="warnings, errors and results only")
@click.version_option(package_name="labreport")
@click.pass_context
def main(ctx, config_path, runs, verbose, quiet):
    """Run a ResNet-on-CIFAR lab study and turn it into a report (PDF and DOCX, ГОСТ 7.32).

    \b
    Example:
        labreport init                  # the lab's experiments.toml, here
        labreport plan                  # what the matrix expands to
        labreport run --profile quick   # a quick CPU preview of every run
        labreport status                # what is done
        labreport build --out report.pdf --out report.docx
    """
    configure_logging(-1 if quiet else verbose, lambda text: click.echo(text, err=True))
    ctx.obj = Context(config_path, runs)


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
    from labreport.api.scaffold import init as scaffold

    made = scaffold(folder, templates=with_templates, force=force)
    extra = f" and {len(made.written) - 1} template files in {folder / 'templates'}" if with_templates else ""
    click.echo(f"wrote {made.written[0]}{extra}")
    click.echo("next: edit [report] (the title page) in it, then `labreport plan` and `labreport run`")


@main.command()
@click.pass_obj
def doctor(obj: Context):
    """Check this machine for the lab (Python, torch and its device, the PDF and DOCX writers,
    LibreOffice, the data set, the run store's disk): ok, note or missing, with the fix; exit 0
    when `run` and `build` can work, 2 when something is missing.

    \b
    Example:
        labreport doctor
        labreport --config lab/experiments.toml --runs /data/runs doctor
    """
    from labreport.doctor import diagnose_at

    found = diagnose_at(obj.config_path, obj.runs)
    for line in found.lines():
        click.echo(line)
    sys.exit(found.exit_code)


@main.command()
@lab_options
@json_option
@click.pass_obj
def plan(obj: Context, profile, overrides, as_json):
    """List every run of the matrix: experiment, settings, key and status.

    \b
    Example:
        labreport plan
        labreport plan --profile quick --json
        labreport plan --profile paper     # He et al. 2015's recipe and depths
        labreport plan --set epochs=10     # what the matrix becomes with 10 epochs
    """
    from labreport.engine.schedule import describe  # no torch: plan stays instant

    lab = obj.lab(profile, overrides)
    rows = lab.state_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    config = lab.config
    for exp in config.experiments:
        erows = [r for r in rows if r["experiment"] == exp.name]
        spec = next(r.spec for r in config.runs if r.experiment == exp.name)
        task, schedule = f" (task {exp.task})" if exp.task else "", describe(spec)
        click.echo(f"{exp.name}{task}: {spec.model}, {len(erows)} run(s), {spec.epochs} epochs, "
                   f"{spec.optimizer} lr={spec.lr:g}, batch {spec.batch_size}" + (f"; {schedule}" if schedule else ""))
        for r in erows:
            click.echo(f"  {r['key']}  {r['state']:<14} {coords_text(r['varying'].items(), ' ')}")
    click.echo(f"{len(rows)} runs ({len(config.unique_runs())} distinct)"
               + (f", profile '{profile}'" if profile else ""))


@main.command()
@lab_options
@json_option
@click.pass_obj
def models(obj: Context, profile, overrides, as_json):
    """List the model registry with parameter counts (and the paper's, where it has one), then the
    models of your own that experiments.toml names (model = "nets.py:Net"), if there is one.

    \b
    Example:
        labreport models
        labreport --config lab/experiments.toml models --json
    """
    from labreport.api import registry_rows

    # the catalogue's counts are exact without torch (tests/engine/test_models.py builds each model)
    rows = registry_rows()
    if obj.config_path.exists():
        rows += obj.lab(profile, overrides).own_model_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    width = max(11, *(len(r["name"]) for r in rows))
    click.echo(f"{'model':<{width}} {'params':>12} {'paper':>7} {'paper err%':>10}  description")
    for r in rows:
        paper = f"{r['paper_params_m']}M" if r["paper_params_m"] else "-"
        err = f"{r['paper_error']}" if r["paper_error"] else "-"
        click.echo(f"{r['name']:<{width}} {r['params']:>12,} {paper:>7} {err:>10}  {r['description']}")


@main.command()
@lab_options
@json_option
@click.pass_obj
def status(obj: Context, profile, overrides, as_json):
    """Show each run's state in the store: done, partial k/N, missing, diverged, failed, queued (job ID).

    \b
    Example:
        labreport status --profile quick
    """
    lab = obj.lab(profile, overrides)
    rows = lab.status(as_frame=False)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        extra = f"  ({r['error']})" if r["error"] else ""
        if holder := r["leased_by"]:
            extra += f"  [claimed by {holder.get('host')}:{holder.get('pid')} since {holder.get('since')}]"
        click.echo(f"{r['key']}  {r['state']:<14} {r['label']}{extra}")
    counts = Counter("queued" if r.get("queued_job") else r["status"] for r in rows)
    click.echo(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"  (store: {lab.store.root})")


@main.command()
@lab_options
@click.option("--only", multiple=True, metavar="NAME", help="train only this experiment (repeatable)")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N")
@click.option("--dry-run", is_flag=True, help="list what would be trained and how long it should take (timed on this "
              "device first), train nothing")
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
@click.option("--threads", type=click.IntRange(0, 1024), default=0,
              help="torch CPU threads per training process (0: all cores, shared among --jobs workers)")
@click.option("--tensorboard", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="write TensorBoard event files of every run trained here into DIR (also: [run] tensorboard)")
@click.option("--yes", "-y", is_flag=True,
              help=f"do not ask: train even when more than {CONFIRM_RUNS:,} runs are left, or (in a terminal) "
                   "when the estimate on a CPU is over an hour")
@click.pass_obj
def run(obj: Context, profile, overrides, only, device, dry_run, jobs, gpus, fail_fast, wait, executor, partition,
        time_min, threads, tensorboard, yes):
    """Train every run of the matrix that is not done yet (interrupted runs resume).

    Several `labreport run` processes, here or on other machines sharing the run store, never
    train the same run: each run is claimed with a lease first.

    \b
    Example:
        labreport run --profile quick
        labreport run --only resnet20-reg --device cuda:1
        labreport run --jobs 4 --gpus 0,1      # 4 workers, 2 per GPU
        labreport run --executor slurm --wait  # one Slurm array task per run left
        labreport run --set epochs=10 --tensorboard runs/tb
    """
    if tensorboard is not None:
        overrides = (*overrides, "run.tensorboard=true",
                     f"run.tensorboard_dir={json.dumps(str(tensorboard.resolve()))}")
    lab = obj.lab(profile, overrides)
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else []
    options = dict(only=tuple(only), jobs=jobs, executor=executor, device=device, threads=threads, gpus=gpu_list,
                   partition=partition, time_min=time_min)
    if dry_run:
        for line in lab.dry_run(**options):
            click.echo(line)
        return
    if not yes and executor == "local" and _interactive():
        _confirm_a_long_run(lab, profile, only, device, threads, jobs)
    out = lab.run(**options, wait=wait, fail_fast=fail_fast, yes=yes, console=_console())
    sys.exit(out.exit_code)


def _interactive() -> bool:
    """Someone at a terminal can answer a question (not a script, a notebook or a batch job)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def _confirm_a_long_run(lab: Lab, profile: str | None, only, device: str, threads: int, jobs: int) -> None:
    """In a terminal, training that would take over LONG_RUN_S on a CPU is said, with the preview
    that shows the whole lab sooner, and starts only when the user says so."""
    from labreport.cluster.eta import duration
    from labreport.engine.device import device_identity

    if device_identity(device if device != "auto" else lab.config.run.device)[0] != "cpu":
        return  # a GPU: nothing to time before a question that is never asked
    est = lab.estimate(only=only, device=device, threads=threads, jobs=jobs)
    if est.device_type != "cpu" or (est.total_s or 0) <= LONG_RUN_S:
        return
    click.echo(f"this trains {len(est.per_run)} run(s) on this CPU for about {duration(est.total_s)} "
               "(`labreport run --dry-run` shows how that was measured)", err=True)
    if preview := next((p for p in PREVIEWS if p in lab.config.profiles and p != profile), None):
        quick = Lab(lab.config.path, runs=lab.store.root, profile=preview).estimate(device=device, threads=threads)
        click.echo(f"`labreport run --profile {preview}` previews the whole lab"
                   + (f" in about {duration(quick.total_s)}" if quick.total_s else ""), err=True)
    if not click.confirm("train now?", default=False, err=True):
        click.echo("nothing trained", err=True)
        sys.exit(0)


@main.command()
@lab_options
@click.option("--out", "-o", "outs", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="the report to write; the suffix picks the format: .pdf or .docx (editable in Word or "
                   f"LibreOffice); repeat for both  [default: {DEFAULT_OUT}]")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), help="also write the HTML")
@click.pass_obj
def build(obj: Context, profile, overrides, outs, html_out):
    """Build the report from the run store (no training, no data set needed): a PDF, an editable
    DOCX, or both, in the layout of ГОСТ 7.32 (language, title page and font: [report]).

    Missing or unfinished runs are marked as such. Figures (SVG, PNG) and summary.json,
    every number the conclusions use, are written to REPORT_files/ next to the report.

    \b
    Example:
        labreport build --out report.pdf
        labreport build --out report.pdf --out report.docx
        labreport build --profile quick --out preview.pdf --html preview.html
        labreport build --set report.language=en --out report-en.pdf
    """
    outs = outs or (DEFAULT_OUT,)
    built = obj.lab(profile, overrides).build(*outs, html=html_out)
    for p in built.problems:
        click.echo(f"warning: {p}", err=True)
    c = built.study.counts
    click.echo(f"wrote {', '.join(map(str, outs))} ({c['done']} done, {c['diverged']} diverged, "
               f"{c['partial'] + c['missing'] + c['failed']} not finished); "
               f"figures and summary in {built.summary.parent}")


@main.command()
@lab_options
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: one row per run; json: the runs and the conclusions")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="write to FILE (default: print)")
@click.pass_obj
def export(obj: Context, profile, overrides, fmt, out):
    """Export one row per run (settings, status, accuracies, time) as CSV, or as JSON together with
    the conclusions: for pandas, a spreadsheet or anything else. Needs no PDF writer.

    \b
    Example:
        labreport export --out runs.csv
        labreport export --format json --out study.json
    """
    text = obj.lab(profile, overrides).export(out, format=fmt)
    if out is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {out}", err=True)


@main.command()
@lab_options
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N")
@click.pass_obj
def gradflow(obj: Context, profile, overrides, device):
    """Measure the gradient flow of task 1: per-layer ||dL/dW|| of ResNet and plain nets, with and
    without BatchNorm, at init and after a few Adam steps ([gradflow] in the TOML).

    Measurements are cached in the run store (gradflow-<key>/) and never recomputed; `build` puts
    the figure and the numbers into the report (`labreport run --dry-run` says how long it takes here).

    \b
    Example:
        labreport gradflow
        labreport gradflow --device cuda
    """
    from labreport.science.gradflow import table_lines

    lab = obj.lab(profile, overrides)
    try:
        m = lab.gradflow(device=device, console=_console())
    except KeyboardInterrupt:
        click.echo("\ninterrupted: finished measurements are saved; run the same command again", err=True)
        sys.exit(130)
    for line in table_lines(m["cells"], lab.config.gradflow.steps):
        click.echo(line)
