"""The Python API: a lab study from a notebook or a script, the calls the command line makes.

    import labreport
    lab = labreport.Lab("experiments.toml", runs="runs", profile="quick", overrides={"epochs": 3})
    lab.plan()                   # every run of the matrix and its state (a DataFrame with pandas)
    lab.run(jobs=1)              # trains what is not done (a live progress bar in Jupyter)
    lab.results()                # one record per run: settings, status, accuracies, time
    lab.history()                # one record per run and epoch
    lab.curves(["resnet18", "cifarnet"])   # accuracy and loss per epoch, as the lab's acc_loss_graph
    lab.conclusions()            # what the report concludes, as data (summary.json)
    lab.build("report.pdf", "report.docx")

Tables come as pandas DataFrames when pandas is installed, as lists of dicts otherwise
(`as_frame=False` asks for the lists). Errors are labreport.errors.LabreportError with a one-line
message, as on the command line.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from labreport.api.notebook import figures_shown_in_notebook, print_console, show_messages
from labreport.api.tables import RESULT_FIELDS, registry_rows, override_list, own_params, table
from labreport.models import OPTIONS
from labreport.config import load_config, store_root
from labreport.errors import CatalogueError, LabreportError
from labreport.logs import LOG
from labreport.store import RunStore, atomic_write_bytes
from labreport.store.records import EpochRecord


LAST_RUN_WHY = "of the last `labreport run` there"


def _reads_the_store(method):
    """A method that shows what the store holds: it reads through Lab.reading() (the runs of the last
    `run` when this matrix has none there)."""
    @functools.wraps(method)
    def reading(self, *args, **kwargs):
        return method(self.reading(), *args, **kwargs)

    return reading


class Lab:
    """One lab study: its experiments.toml under a profile and overrides, and its run store."""

    def __init__(self, config: str | Path = "experiments.toml", *, runs: str | Path | None = None,
                 profile: str | None = None, overrides: Mapping[str, Any] | Iterable[str] | None = None,
                 overrides_from: str = "overrides"):
        # overrides_from: how errors name an override: "overrides {'epoch': 2}" here, "--set epoch=2" for the CLI
        self.config = load_config(config, profile, override_list(overrides), overrides_from=overrides_from)
        _check_language(self.config)
        self.store = RunStore(store_root(runs, self.config))
        self._reader: Lab | None = None

    def __repr__(self) -> str:
        profile = f", profile {self.config.profile!r}" if self.config.profile else ""
        return f"Lab({str(self.config.path)!r}{profile}: {len(self.config.runs)} runs, store {str(self.store.root)!r})"

    # ---- what the matrix holds ------------------------------------------------------------------
    def plan(self, *, as_frame: bool | None = None):
        """Every run of the matrix: experiment, task, label, key, its state, settings.

        Example:
            lab.plan()[["label", "status", "epochs_done"]]
        """
        return table(self.state_rows(), as_frame)

    @_reads_the_store
    def status(self, *, as_frame: bool | None = None):
        """plan(), with the Slurm job a run was submitted to (if any) and the process training it."""
        from labreport.cluster.slurm import queued_jobs

        queued = queued_jobs(self.config, self.store)
        rows = self.state_rows()
        for r in rows:  # submitted to a job array, not claimed by a task yet
            if r["key"] in queued and r["status"] in ("missing", "partial") and not r["leased_by"]:
                r["queued_job"], r["state"] = queued[r["key"]], f"queued (job {queued[r['key']]})"
        return table(rows, as_frame)

    def state_rows(self) -> list[dict]:
        rows = []
        for run in self.config.runs:
            st = self.store.state(run.key)
            rows.append({"experiment": run.experiment, "task": run.task, "label": run.label, "key": run.key,
                         "status": st.status, "state": st.text(run.spec.epochs), "epochs_done": st.epochs_done,
                         "epochs": run.spec.epochs,
                         "varying": run.coords, "spec": run.spec.to_dict(),
                         "error": st.error, "leased_by": st.leased_by})
        return rows

    def models(self, *, as_frame: bool | None = None):
        """The catalogue's models, then the lab's own (one row per model and model_args), each with
        its parameter count; an own model is built to count them (torch is imported then)."""
        return table(registry_rows() + self.own_model_rows(), as_frame)

    def own_model_rows(self) -> list[dict]:
        from labreport import ownmodels

        seen: dict[tuple, dict] = {}
        declared = {e.name: e.declared for e in self.config.experiments}  # display_name, family, depth
        for run in self.config.runs:
            s = run.spec
            if ownmodels.is_own(s.model) and (s.model, s.model_args) not in seen:
                src = ownmodels.read(s.model, self.config.base_dir)
                args = f", model_args {s.model_args}" if s.model_args else ""
                shown = ownmodels.display_name(s.model, s.model_args.as_dict(), declared[run.experiment])
                seen[(s.model, s.model_args)] = {
                    "name": s.model, "family": "own", "params": own_params(s, self.config.base_dir),
                    "paper_params_m": None, "paper_error": None,
                    "supports": sorted(p for p in OPTIONS if src.takes(p)),
                    "description": f"{shown}: your own {src.kind} {src.name} ({src.where}){args}"}
        return list(seen.values())

    def doctor(self):
        """What this machine has for the lab, a line each with the fix for what is missing: Python,
        torch and the device `run` trains on, the PDF and DOCX writers, LibreOffice, the data set, the
        run store and its free disk. print() it; `.ok` when `run` and `build` can work.

        Example:
            print(lab.doctor())
        """
        from labreport.doctor import diagnose

        return diagnose(self.config, self.store.root)

    # ---- training -------------------------------------------------------------------------------
    def run(self, *, only: Sequence[str] = (), jobs: int = 1, executor: str = "local", device: str = "auto",
            wait: bool = False, threads: int = 0, gpus: Sequence[str] = (), fail_fast: bool = False,
            partition: str | None = None, time_min: int | None = None, yes: bool = False, console=None):
        """Train every run not done yet (interrupted runs resume); returns what happened (an
        Outcome: trained, cached, diverged, failed, exit_code).

        Example:
            outcome = lab.run(only=["resnet20-reg"])
            outcome.failed
        """
        from labreport.cluster import executors

        ex = self._executor(jobs, executor, gpus, fail_fast, partition, time_min)
        console = console or print_console()
        show_messages(console)
        if jobs > 1 or executor != "local":  # here, before workers or tasks start (a local run checks as it starts)
            self._check_own_models(only)
        return executors.run(ex, executors.Request(self.config, self.store, tuple(only), device, wait, threads),
                             console, yes=yes)

    def _check_own_models(self, only: Sequence[str]) -> None:
        from labreport.engine.runner import check_own_models, pending
        from labreport.ownmodels import is_own

        runs = [r for r in self.config.select(tuple(only)) if is_own(r.spec.model)]
        if runs:
            check_own_models(pending(self.store, runs)[0], self.config.base_dir)

    @staticmethod
    def _executor(jobs, executor, gpus, fail_fast, partition, time_min):
        """The executor these options ask for, given only the options set (an executor refuses the others)."""
        from labreport.cluster import executors

        if executor != "local" and jobs > 1:
            raise LabreportError("jobs > 1 are local workers: with an executor each run is its own task")
        options = dict(jobs=jobs if jobs > 1 else None, gpus=list(gpus) or None, fail_fast=fail_fast or None,
                       partition=partition, time_min=time_min)
        return executors.get("processes" if jobs > 1 else executor, **{k: v for k, v in options.items() if v})

    def dry_run(self, *, only: Sequence[str] = (), jobs: int = 1, executor: str = "local", device: str = "auto",
                threads: int = 0, gpus: Sequence[str] = (), partition: str | None = None,
                time_min: int | None = None) -> list[str]:
        """What run() would start and train, each run with the time it should take; nothing trained."""
        ex = self._executor(jobs, executor, gpus, False, partition, time_min)
        runs = self.config.select(tuple(only))
        est = self.estimate(only=only, device=device, executor=executor, threads=threads, jobs=jobs)
        return ex.describe(self.config, self.store, runs, threads) + list(est.lines)

    def estimate(self, *, only: Sequence[str] = (), device: str = "auto", executor: str = "local", threads: int = 0,
                 jobs: int = 1, measure: bool = True):
        """How long run() should take here, before anything trains: each run left at the speed of the
        store's finished runs on this device, else at the speed timed here for its setting (a few
        training steps and one evaluation batch of each distinct model, batch size and precision;
        kept in the store, so timed once), per task and in all. print() it; `.total_s`, `.per_task`.

        Example:
            est = lab.estimate()
            print(est)                     # what run --dry-run prints
            est.total_s / 3600             # hours, None when some run has no speed to go by
        """
        from labreport.cluster.eta import estimate
        from labreport.logs import LOG

        here = None if executor == "slurm" else device if device != "auto" else self.config.run.device
        gradflow = not only and executor == "local" and jobs == 1  # `run` measures task 1 after training then
        return estimate(self.config, self.store, self.config.select(tuple(only)), here, measure=measure,
                        gradflow=gradflow, on_probe=LOG.info, threads=threads)

    def gradflow(self, *, device: str = "auto", console=None) -> dict:
        """Task 1's gradient-flow measurement ([gradflow]): what is not in the store yet."""
        from labreport.engine.gradflow import measure
        from labreport.engine.runner import loader_for

        console = console or print_console()
        show_messages(console)
        return measure(self.config.gradflow, self.store.root, loader_for(self.config, self.store), device,
                       console.err, console.out)

    # ---- what the store holds -------------------------------------------------------------------
    def reading(self) -> "Lab":
        """The Lab whose runs status(), results(), build() and the other readers show: this one, or,
        when no profile or override was given and the store holds none of this matrix's runs but
        runs of a profile, the Lab of the last `run` in the store (else of the profile with the most
        runs there), said in one warning."""
        if self._reader is None:
            self._reader = self._follow_the_store() or self
        return self._reader

    def _follow_the_store(self) -> "Lab | None":
        cfg = self.config
        if cfg.profile or cfg.overrides or not self.store.keys() or self._held(self):
            return None
        last = self.store.last_run()
        remembered = [(last["profile"], tuple(last["overrides"]), LAST_RUN_WHY)] \
            if last and (last["profile"] or last["overrides"]) else []
        held = []  # (lab, why, runs the store holds of it), each candidate's Lab made once
        for profile, overrides, why in remembered + [(p, (), "whose runs it holds") for p in cfg.profiles]:
            try:
                lab = Lab(cfg.path, runs=self.store.root, profile=profile, overrides=overrides)
            except LabreportError:  # the TOML changed since: that profile or setting is gone
                continue
            if n := self._held(lab):
                held.append((lab, why, n))
        if not held:
            return None
        lab, why, _ = min(held, key=lambda h: (h[1] != LAST_RUN_WHY, -h[2]))  # the last run's, else the fullest
        profile, overrides = lab.config.profile, lab.config.overrides
        what = f"profile '{profile}'" if profile else "the settings"
        how = " ".join([f"--profile {profile}"] * bool(profile) + [f"--set {o}" for o in overrides])
        LOG.warning("%s holds none of the %d run(s) of this matrix; reading %s %s (`%s`; pass --profile "
                    "to choose)", self.store.root, len(cfg.runs), what, why, how)
        return lab

    def _held(self, lab: "Lab") -> int:
        """How many of `lab`'s runs the store has anything of (done, partial, failed, claimed)."""
        return sum(self.store.state(r.key).status != "missing" for r in lab.config.runs)

    @_reads_the_store
    def results(self, *, as_frame: bool | None = None):
        """One record per run of the matrix: experiment, task, label, key, every training setting,
        status and the result's numbers (accuracies at the epoch chosen on validation, time).

        Example:
            df = lab.results()
            df.groupby("dropout").test_acc_at_best.mean()
        """
        return table(self.result_rows(), as_frame)

    @_reads_the_store
    def result_rows(self) -> list[dict]:
        rows = []
        for run in self.config.runs:
            st, res = self.store.state(run.key), self.store.read_result(run.key) or {}
            row = {"experiment": run.experiment, "task": run.task, "label": run.label, "key": run.key,
                   **run.spec.to_dict(), "status": st.status, "epochs_done": st.epochs_done}
            row.update({k: res.get(k) for k in RESULT_FIELDS if k != "status"})
            row["device"] = (res.get("provenance") or {}).get("device")
            rows.append(row)
        return rows

    @_reads_the_store
    def history(self, *, as_frame: bool | None = None):
        """One record per run and finished epoch: the run's experiment, label and key, and what the
        trainer recorded (losses, accuracies, learning rate, time, memory)."""
        rows = [{"experiment": run.experiment, "label": run.label, "key": run.key, **h}
                for run in self.config.runs for h in self.store.read_history(run.key)]
        return table(rows, as_frame, columns=("experiment", "label", "key", *EpochRecord.__annotations__))

    @_reads_the_store
    def curves(self, names: Sequence[str] | None = None, *, language: str | None = None):
        """Accuracy and loss per epoch of the runs of the experiments (or run labels) in `names`
        (default: every run), as the lab's acc_loss_graph: a matplotlib Figure."""
        from labreport.report.figures import acc_loss
        from labreport.report.i18n import Lang

        if isinstance(names, str):
            names = [names]
        self._check_names(names or ())
        runs = [r for r in self.config.runs if names is None or r.experiment in names or r.label in names]
        figures_shown_in_notebook()
        return acc_loss([(r.label, self.store.read_history(r.key)) for r in runs],
                        Lang(language or self.config.report.language))

    def _check_names(self, names: Sequence[str]) -> None:
        """Each of `names` an experiment or a run label of this lab; else an error naming those it has."""
        from labreport.config.sections import unknown

        known = [e.name for e in self.config.experiments]
        for name in names:
            if name in known or any(r.label == name for r in self.config.runs):
                continue
            if self.config.profile and name in {e.name for e in load_config(self.config.path).experiments}:
                raise LabreportError(f"experiment '{name}' is not in profile '{self.config.profile}' "
                                     f"(its experiments: {', '.join(known)})")
            raise LabreportError(f"{unknown(name, known, 'experiment')} (nor a run label of plan())")

    @_reads_the_store
    def conclusions(self) -> dict:
        """Every number the report's conclusions use (what summary.json holds): the best result and
        the configurations indistinguishable from it, factor effects, the BatchNorm claim, ..."""
        from labreport.report.study import summary_of

        return summary_of(self.config, self.store)

    @_reads_the_store
    def export(self, out: str | Path | None = None, *, format: str = "csv") -> str:
        """results() as CSV, or as JSON with the conclusions; written to `out` when given; the text."""
        if format not in ("csv", "json"):
            raise LabreportError(f"export format must be csv or json, got {format!r}")
        rows = self.result_rows()
        if format == "json":
            text = json.dumps({"runs": rows, "conclusions": self.conclusions()}, indent=1, ensure_ascii=False) + "\n"
        else:
            buf = io.StringIO()
            fieldnames = list(dict.fromkeys(k for r in rows for k in r))
            writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()}
                             for r in rows)
            text = buf.getvalue()
        if out is not None:
            atomic_write_bytes(Path(out), text.encode("utf-8"))
        return text

    @_reads_the_store
    def build(self, *outputs: str | Path, html: str | Path | None = None):
        """The report from the store as every file of `outputs` (.pdf and/or .docx; default
        report.pdf) and, with `html`, its HTML. Returns what was built (paths, the study)."""
        from labreport.report import DEFAULT_OUT
        from labreport.report.build import build

        return build(self.config, self.store, [Path(o) for o in outputs] or [DEFAULT_OUT],
                     Path(html) if html else None)


def _check_language(config) -> None:
    """[report] language has a message catalogue: said by `plan`, not first by `build` after training."""
    from labreport.report.i18n import check_language

    user = config.templates_dir
    try:
        check_language(config.report.language, (user / "locale",) if user else ())
    except CatalogueError as e:
        raise CatalogueError(f"{config.path}: [report] language: {e}") from None


