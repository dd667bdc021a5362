"""How long the runs left will take, from the speed of the store's finished runs.

Torch-free and data-free, so `labreport run --dry-run` answers at once. It is an estimate and says
so: finished runs of the same model, on the kind of device most finished runs used, give seconds
per image; each run left needs its images times its epochs left. An evaluated image costs about a
third of a trained one (a forward pass against forward + backward), so an epoch counts
train + (val + test) / 3 images. Models without a finished run have no estimate.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

from .spec import CIFAR10_TEST, TrainSpec, train_images
EVAL_WEIGHT = 1 / 3  # cost of an evaluated image relative to a trained one


def epoch_images(n_train: int, n_val: int, n_test: int) -> float:
    return n_train + EVAL_WEIGHT * (n_val + n_test)


def spec_epoch_images(spec: TrainSpec) -> float:
    """Weighted images per epoch of a run not trained yet (the subsets as the trainer takes them)."""
    n_train = train_images(spec.val_size, spec.train_subset)
    n_test = min(CIFAR10_TEST, spec.test_subset) if spec.test_subset else CIFAR10_TEST
    return epoch_images(n_train, spec.val_size, n_test)


@dataclass(frozen=True)
class Speeds:
    device_type: str | None  # what the finished runs ran on ("cuda", "cpu"), None: no finished run
    seconds_per_image: dict[str, float]  # model -> median over its finished runs
    runs: int  # finished runs the figures come from


def speeds(results: list[dict]) -> Speeds:
    """Seconds per weighted image by model, from finished results on the most used device type."""
    usable = [r for r in results if isinstance(r.get("mean_epoch_time_s"), (int, float))
              and r["mean_epoch_time_s"] > 0 and all(isinstance(r.get(k), int) for k in ("n_train", "n_val", "n_test"))]
    kinds = Counter(r.get("provenance", {}).get("device_type") for r in usable)
    if not kinds:
        return Speeds(None, {}, 0)
    device = kinds.most_common(1)[0][0]
    per_model: dict[str, list[float]] = defaultdict(list)
    for r in usable:
        if r.get("provenance", {}).get("device_type") == device:
            n = epoch_images(r["n_train"], r["n_val"], r["n_test"])
            per_model[r["spec"]["model"]].append(r["mean_epoch_time_s"] / n)
    return Speeds(device, {m: statistics.median(v) for m, v in per_model.items()}, kinds[device])


def remaining_s(spec: TrainSpec, epochs_done: int, sp: Speeds) -> float | None:
    """Seconds the run still needs at the measured speed, or None when its model has no figure."""
    rate = sp.seconds_per_image.get(spec.model)
    if rate is None:
        return None
    return max(spec.epochs - epochs_done, 0) * spec_epoch_images(spec) * rate


def duration(seconds: float) -> str:
    """3 h 10 min, 12 min, 40 s: to the precision an estimate deserves."""
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
