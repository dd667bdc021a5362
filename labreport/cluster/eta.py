"""How long the runs left will take, from the speed of the store's finished runs.

Torch-free and data-free, so `labreport run --dry-run` answers at once. It is an estimate and says
so: finished runs of the same model on the device `run` would use give seconds per image; each
run left needs its images times its epochs left. An evaluated image costs about a third of a
trained one (a forward pass against forward + backward), so an epoch counts
train + (val + test) / 3 images. Models without a finished run have no estimate.

Which finished runs count: on a CPU, those that ran on a CPU; on a GPU, those that ran on a GPU of
the same name (a T4 and an H100 differ ~10x). A GPU with no finished run in the store falls back
to MEASURED, figures measured on that GPU model by bench/gpu_check.sh, with their date and command.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

from labreport.spec import CIFAR10_TEST, TrainSpec, train_images
EVAL_WEIGHT = 1 / 3  # cost of an evaluated image relative to a trained one


def epoch_images(n_train: int, n_val: int, n_test: int) -> float:
    return n_train + EVAL_WEIGHT * (n_val + n_test)


def spec_epoch_images(spec: TrainSpec) -> float:
    """Weighted images per epoch of a run not trained yet (the subsets as the trainer takes them)."""
    n_train = train_images(spec.val_size, spec.train_subset)
    n_test = min(CIFAR10_TEST, spec.test_subset) if spec.test_subset else CIFAR10_TEST
    return epoch_images(n_train, spec.val_size, n_test)


@dataclass(frozen=True)
class Device:
    """The device `run` would train on, as results record it (provenance.device_type, .device)."""

    type: str  # "cpu" | "cuda"
    name: str | None = None  # the GPU's name, e.g. "Tesla T4" (torch.cuda.get_device_name); None on a CPU


@dataclass(frozen=True)
class Measured:
    """Speeds measured on one GPU model, for a GPU the store has no finished run on."""

    gpu: str  # a part of the GPU's name: "T4" matches "Tesla T4", "H100" "NVIDIA H100 80GB HBM3"
    seconds_per_image: dict[str, float]  # model -> seconds per weighted image (epoch_images)
    settings: str  # what was measured, e.g. "precision auto (bf16), [run] compile = false, --jobs 1"
    date: str  # of the measurement, YYYY-MM-DD
    command: str  # what produced the figures, e.g. "bench/gpu_check.sh out ../shared/data"


@dataclass(frozen=True)
class Speeds:
    device_type: str | None  # what the finished runs ran on ("cuda", "cpu"), None: no finished run
    seconds_per_image: dict[str, float]  # model -> median over its finished runs
    runs: int  # finished runs the figures come from (0 for measured figures)
    device: str | None = None  # the GPU name the runs were matched on, None: matched on the type
    measured: Measured | None = None  # the figures came from MEASURED, not from the store


# Measured per-GPU speeds. EMPTY until measured figures exist: never an invented number.
# bench/gpu_check.sh writes `eta_seconds_per_image` into gpu_check.json (labreport's own
# epoch times, weighted as above); add one Measured per GPU with its date and command.
MEASURED: tuple[Measured, ...] = ()
WANTED_GPUS = ("T4", "A100", "H100")  # Colab's GPU and the lab servers': the figures a student needs


def measured_for(gpu_name: str | None, table: tuple[Measured, ...] | None = None) -> Measured | None:
    """The entry of `table` (default MEASURED) for a GPU name: the first whose `gpu` is part of it."""
    if not gpu_name:
        return None
    return next((m for m in (MEASURED if table is None else table) if m.gpu.lower() in gpu_name.lower()), None)


def _usable(results: list[dict]) -> list[dict]:
    return [r for r in results if isinstance(r.get("mean_epoch_time_s"), (int, float))
            and r["mean_epoch_time_s"] > 0 and all(isinstance(r.get(k), int) for k in ("n_train", "n_val", "n_test"))]


def speeds(results: list[dict], device: Device | None = None, table: tuple[Measured, ...] | None = None) -> Speeds:
    """Seconds per weighted image by model, from finished results on `device` (see the module
    doc), or on the most used device type when `device` is None. A GPU without finished runs of
    its name in the store gets the table's figures for it, if any."""
    usable = _usable(results)
    if device is None:
        kinds = Counter(r.get("provenance", {}).get("device_type") for r in usable)
        if not kinds:
            return Speeds(None, {}, 0)
        device = Device(kinds.most_common(1)[0][0])  # any GPU of the type: the old behaviour
    name = device.name if device.type == "cuda" else None
    runs = [r for r in usable if r.get("provenance", {}).get("device_type") == device.type
            and (name is None or r.get("provenance", {}).get("device") == name)]
    if not runs:
        m = measured_for(name, table)
        return Speeds(device.type, dict(m.seconds_per_image), 0, name, m) if m else Speeds(None, {}, 0, name)
    per_model: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        n = epoch_images(r["n_train"], r["n_val"], r["n_test"])
        per_model[r["spec"]["model"]].append(r["mean_epoch_time_s"] / n)
    return Speeds(device.type, {m: statistics.median(v) for m, v in per_model.items()}, len(runs), name)


def basis(sp: Speeds) -> str:
    """Where an estimate's speed comes from, for the end of a sentence."""
    if sp.measured is not None:
        m = sp.measured
        return f"at the speed measured on {m.gpu} on {m.date} ({m.settings}; `{m.command}`)"
    on = f" on {sp.device}" if sp.device else ""
    return f"at the speed of this store's {sp.runs} finished {sp.device_type} run(s){on}"


def per_gpu(left: list[tuple[TrainSpec, int]], table: tuple[Measured, ...] | None = None,
            wanted: tuple[str, ...] = WANTED_GPUS) -> list[tuple[str, float | None, Measured | None]]:
    """(gpu, seconds for the runs left or None, its figures or None) for each wanted GPU, then for
    any other GPU the table measured (an H200, say): what each would take, from the measured table
    (default MEASURED) only. `left`: (spec, epochs done) of each run left."""
    table = MEASURED if table is None else table
    out = []
    for gpu in (*wanted, *(e.gpu for e in table if e.gpu not in wanted)):
        m = next((e for e in table if e.gpu == gpu), None)
        total = None
        if m is not None:
            sp = Speeds("cuda", dict(m.seconds_per_image), 0, None, m)
            times = [remaining_s(spec, done, sp) for spec, done in left]
            total = sum(times) if times and None not in times else None  # a model it lacks: no total
        out.append((gpu, total, m))
    return out


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


def per_gpu_text(rows: list[tuple[str, float | None, Measured | None]]) -> str:
    """One line for run --dry-run: what each wanted GPU would take, or that nothing is measured."""
    if all(m is None for _, _, m in rows):
        names = ", ".join(g for g, _, _ in rows)
        return (f"on a {names}: no measured figures yet (labreport/cluster/eta.py MEASURED is filled from "
                "bench/gpu_check.sh runs on those GPUs)")
    parts = [f"{g}: " + (f"~{duration(t)}" if t is not None else "?" if m else "not measured") for g, t, m in rows]
    sources = "; ".join(f"{m.gpu} measured {m.date} with `{m.command}`, {m.settings}" for _, _, m in rows if m)
    return "on one GPU, " + ", ".join(parts) + f" ({sources})"


@dataclass(frozen=True)
class Left:
    """A run `run` would train: what run --dry-run says of it."""

    key: str
    label: str
    spec: TrainSpec
    epochs_done: int
    state: str  # "missing", "partial 3/50", "queued (job 12)", ...


def dry_run_lines(left: list[Left], sp: Speeds) -> list[str]:
    """run --dry-run's lines for the runs left: each with its time at the speed `sp` (or "?"),
    what each wanted GPU would take from MEASURED, and the total with where its speed comes from."""
    lines, total, unknown = [], 0.0, set()
    for r in left:
        t = remaining_s(r.spec, r.epochs_done, sp)
        if t is None:
            unknown.add(r.spec.model)
        else:
            total += t
        lines.append(f"would train {r.key}  {r.state:<14} {f'~{duration(t)}' if t is not None else '?':>12}  {r.label}")
    if not left:
        return lines
    lines.append(per_gpu_text(per_gpu([(r.spec, r.epochs_done) for r in left])))
    if sp.device_type is not None:
        known = sum(r.spec.model not in unknown for r in left)
        note = f"; no finished run of {', '.join(sorted(unknown))} to go by" if unknown else ""
        lines.append(f"estimate: ~{duration(total)} for {known} of the {len(left)} runs, {basis(sp)}{note}")
    elif sp.device:
        lines.append(f"estimate: none yet (no finished run on {sp.device} in this store to go by, and no "
                     "measured figures for that GPU in labreport/cluster/eta.py MEASURED)")
    else:
        lines.append("estimate: none yet (no finished run in this store to go by)")
    return lines


def estimate(store, runs: list, device: str | None = None) -> list[str]:
    """run --dry-run's lines for `runs` (spec.Run) and the store: each run left with the time it
    should take at the speed of the store's finished runs on `device` (None: unknown, the most used
    device type), the total, what a T4/A100/H100 would take where measured, then the counts."""
    states = {r.key: store.state(r.key) for r in runs}
    todo, final = [r for r in runs if not states[r.key].final], [r for r in runs if states[r.key].final]
    target = None
    if device == "cpu":
        target = Device("cpu")
    elif device is not None:  # asks torch (imported here, ~1.5 s) whether CUDA is there, and which GPU
        from labreport.engine.device import device_identity

        target = Device(*device_identity(device))
    sp = speeds([res for k in store.keys() if (res := store.read_result(k)) is not None], target)
    left = [Left(r.key, r.label, r.spec, states[r.key].epochs_done, states[r.key].text(r.spec.epochs)) for r in todo]
    return dry_run_lines(left, sp) + [f"{len(todo)} to train, {len(final)} already done"]
