"""The local executor: `labreport run` trains the runs left in this process, one after the other,
and then measures task 1's gradient flow ([gradflow]) with the data set it already loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

from labreport.cluster.executors import RESUME_HINT, Console, Executor, Outcome, Request, cpu_threads, print_summary
from labreport.errors import Terminated


@dataclass
class Local(Executor):
    """In this process, one run after the other (`labreport run`), then task 1's gradient flow."""

    name: ClassVar[str] = "local"

    def execute(self, req: Request, console: Console) -> Outcome:
        from labreport.engine.runner import loader_for

        load = loader_for(req.config, req.store)
        out = train_here(req, console, load)
        if out.interrupted and not out.interrupted_run:  # outside a run's training (loading the data, say)
            return out
        print_summary(console, out, req.store)
        if req.config.gradflow.enabled and not req.only and not out.interrupted:
            _gradflow_after_training(req, load, console, out)
        if out.interrupted and out.interrupted_run:
            kept = "its last epoch checkpoint is kept and its claim released; " if out.terminated else ""
            console.err(f"{_stopped(out)} during {out.interrupted_run}: {kept}run the same command again to resume")
        return out


def train_here(req: Request, console: Console, load: Callable | None = None) -> Outcome:
    """The runs of `req` not done yet, trained in this process one after the other, with the progress
    a user sees (a bar on a terminal, a line per epoch elsewhere, nothing with -q): what `labreport
    run` and each --jobs worker (worker.py) do."""
    from labreport.cluster.progress import LineReporter, QuietReporter, RichReporter
    from labreport.engine import runner  # looked up at call time (tests replace runner.run_matrix)

    progress = QuietReporter() if console.quiet else RichReporter(len(req.config.select(req.only))) \
        if console.tty else LineReporter()
    try:
        with progress:
            return runner.run_matrix(req.config, req.store, device=req.device, only=req.only, observer=progress,
                                     data_loader=load or runner.loader_for(req.config, req.store), wait=req.wait,
                                     threads=cpu_threads(req.threads, req.config.run.threads))
    except KeyboardInterrupt as e:  # outside a run's training (loading the data, say)
        out = Outcome(interrupted=True, terminated=isinstance(e, Terminated))
        console.err(f"\n{_stopped(out)}: {RESUME_HINT}")
        return out


def _stopped(out: Outcome) -> str:
    return "terminated (SIGTERM)" if out.terminated else "interrupted"


def _gradflow_after_training(req: Request, load, console: Console, out: Outcome) -> None:
    """Task 1's measurement; cached: a JSON read. Its failure does not undo the training."""
    from labreport.engine.gradflow import measure

    try:
        measure(req.config.gradflow, req.store.root, load, req.device, console.err, console.out)
    except KeyboardInterrupt as e:
        out.interrupted, out.terminated = True, isinstance(e, Terminated)
        console.err(f"\n{_stopped(out)}: finished measurements are saved; run the same command again")
    except Exception as e:  # noqa: BLE001
        console.err(f"warning: gradflow: {e} (`labreport gradflow` retries; [gradflow] enabled = false skips it)")
