"""What a user sees while runs train: a progress bar on a terminal, plain log lines elsewhere.

Off a terminal (CI, nohup, Slurm logs) each finished epoch is one line in the spirit of the lab's
own logs: `Train Epoch: 10 Time: 00:05:11 Accuracy: 0.7032 GPU_Mem_alloc: ... GPU_Mem_cached: ...`.
"""

from __future__ import annotations

import sys
import time

from labreport.engine.observe import Observer


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _mem(mib) -> str:
    return "n/a" if mib is None else f"{mib:.0f}MiB"


def epoch_line(label: str, epochs: int, rec: dict, elapsed: float) -> str:
    val = "n/a" if rec["val_acc"] is None else f"{rec['val_acc']:.4f}"
    return (f"{label} Train Epoch: {rec['epoch']}/{epochs} Time: {_hms(elapsed)} "
            f"Loss: {rec['train_loss']:.4f} Accuracy: {rec['train_acc']:.4f} Val: {val} "
            f"Test: {rec['test_acc']:.4f} img/s: {rec['images_per_s']:.0f} "
            f"GPU_Mem_alloc: {_mem(rec['mem_alloc_mib'])} GPU_Mem_cached: {_mem(rec['mem_reserved_mib'])}")


class LineReporter(Observer):
    """One line per epoch, to a stream (stderr by default)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.label, self.epochs, self.t0 = "", 0, time.perf_counter()

    def run_started(self, label, key, epochs, start_epoch, steps):
        self.label, self.epochs, self.t0 = label, epochs, time.perf_counter()
        resumed = f", resuming after epoch {start_epoch}" if start_epoch else ""
        self._print(f"{label} run {key}: {epochs} epoch{'s' * (epochs != 1)} x {steps} steps{resumed}")

    def epoch_done(self, rec):
        self._print(epoch_line(self.label, self.epochs, rec, time.perf_counter() - self.t0))

    def _print(self, text):
        print(text, file=self.stream, flush=True)


class QuietReporter(LineReporter):
    """-q: no progress at all."""

    def _print(self, text):
        pass


class RichReporter(LineReporter):
    """A live bar for the current run (epoch, batch, loss, accuracy, ETA); epoch lines above it."""

    def __init__(self, total_runs: int):
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                 console=self.console, transient=False)
        self.matrix = self.progress.add_task("matrix", total=total_runs, info="")
        self.task = None

    def __enter__(self):
        self.progress.start()
        return self

    def close(self):
        if self.task is not None:  # the last run's bar: count it in the matrix bar too
            self.progress.advance(self.matrix)
            self.task = None
        self.progress.stop()

    def run_started(self, label, key, epochs, start_epoch, steps):
        self.label, self.epochs, self.t0 = label, epochs, time.perf_counter()
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.progress.advance(self.matrix)
        self.steps = steps
        self.task = self.progress.add_task(label, total=epochs * steps, completed=start_epoch * steps,
                                           info=f"epoch {start_epoch + 1}/{epochs}")

    def step(self, epoch, step):
        self.progress.update(self.task, completed=epoch * self.steps + step)

    def epoch_done(self, rec):
        self.progress.update(self.task, info=f"epoch {rec['epoch']}/{self.epochs} loss {rec['train_loss']:.3f} "
                                             f"acc {rec['train_acc']:.3f} val {rec['val_acc'] or 0:.3f}")
        self.console.log(epoch_line(self.label, self.epochs, rec, time.perf_counter() - self.t0))


class LiveWorkers:
    """One line per worker and the matrix progress, redrawn in place on a terminal."""

    def __enter__(self):
        from rich.console import Console
        from rich.live import Live

        self.live = Live(console=Console(stderr=True), refresh_per_second=4)
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.__exit__(*exc)

    def __call__(self, workers, progress):
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        for w in workers:
            state = "running" if w.proc.poll() is None else f"exited {w.proc.returncode}"
            gpu = f" gpu {w.gpu}" if w.gpu is not None else ""
            table.add_row(f"worker {w.index}{gpu}", state, w.last_line[-110:])
        table.add_row("", "", progress)
        self.live.update(table)
