"""What watches a run train: one interface for the progress a user sees (cluster/progress.py), the
TensorBoard event files (engine/tbevents.py), the lease heartbeat (engine/runner.py) and silence.

The trainer calls an Observer at the run's start, after every optimizer step and after every epoch;
whoever made the observer closes it (it is a context manager). `Observers` makes several one, so
the trainer never knows how many watch it.
"""

from __future__ import annotations


class Observer:
    """Watches one run after another; every call is a no-op here (silence): subclasses take what they need."""

    def run_started(self, label: str, key: str, epochs: int, start_epoch: int, steps: int) -> None:
        """A run begins (or resumes after `start_epoch` epochs): `epochs` in all, `steps` per epoch."""

    def step(self, epoch: int, step: int) -> None:
        """Optimizer step `step` (1-based) of the epoch after `epoch` finished ones was taken."""

    def epoch_done(self, record: dict) -> None:
        """An epoch ended: its record (store.records.EpochRecord), already evaluated."""

    def close(self) -> None:
        """No more runs: flush and free what it holds."""

    def __enter__(self) -> "Observer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Observers(Observer):
    """Several observers as one: each call goes to each, in order; closing closes them in reverse."""

    def __init__(self, *observers: Observer):
        self.observers = [o for o in observers if o is not None]

    def run_started(self, *args) -> None:
        for o in self.observers:
            o.run_started(*args)

    def step(self, epoch: int, step: int) -> None:
        for o in self.observers:
            o.step(epoch, step)

    def epoch_done(self, record: dict) -> None:
        for o in self.observers:
            o.epoch_done(record)

    def close(self) -> None:
        for o in reversed(self.observers):
            o.close()
