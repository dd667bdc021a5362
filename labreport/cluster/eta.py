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
from dataclasses import dataclass, field
from typing import Callable

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
    return None if rate is None else run_seconds(spec, epochs_done, Rate(rate, rate * EVAL_WEIGHT, "runs"))


@dataclass(frozen=True)
class Rate:
    """A speed a run's time is estimated at."""

    train_s: float  # seconds per trained image
    eval_s: float  # seconds per evaluated image (validation and test, every epoch)
    source: str  # "runs": finished runs on this device; "measured": timed here (engine/speed.py); "table": MEASURED


def run_seconds(spec: TrainSpec, epochs_done: int, rate: Rate) -> float:
    """Seconds a run needs after `epochs_done` epochs: its training images left and an evaluation
    of the validation and test splits per epoch left (max_iters: as many epochs as the steps take)."""
    n_train = train_images(spec.val_size, spec.train_subset)
    n_eval = spec.val_size + (min(CIFAR10_TEST, spec.test_subset) if spec.test_subset else CIFAR10_TEST)
    if spec.max_iters:
        steps_per_epoch = max(n_train // spec.batch_size, 1)
        epochs_left = max(-(-spec.max_iters // steps_per_epoch) - epochs_done, 0)
        train_left = max(spec.max_iters - epochs_done * steps_per_epoch, 0) * spec.batch_size
    else:
        epochs_left = max(spec.epochs - epochs_done, 0)
        train_left = epochs_left * n_train
    return train_left * rate.train_s + epochs_left * n_eval * rate.eval_s


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
        return f"on a {names}: no figures measured on those GPUs yet"
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
    task: str = ""  # the lab's task the run answers ("3", "5", "paper"), "" when none


@dataclass(frozen=True)
class Estimate:
    """How long `run` should take: what run --dry-run prints (str()), and its figures."""

    lines: tuple[str, ...]
    total_s: float | None  # every run left and the gradient-flow measurement; None: some have no speed
    per_task: dict[str, float]  # seconds per task ("1" is the gradient-flow measurement)
    device: str | None  # what the speeds hold for ("AMD EPYC 7B13 (CPU, 2 threads), torch 2.14.1"), None: unknown
    device_type: str | None  # "cpu" | "cuda" | None
    per_run: dict[str, float | None] = field(default_factory=dict)  # run key -> seconds, None: no speed

    def __str__(self) -> str:
        return "\n".join(self.lines)


def rate_for(run: Left, sp: Speeds, measured: dict[str, Rate]) -> Rate | None:
    """The speed a run is estimated at: its model's finished runs on this device, else the speed
    measured here for its setting, else the per-GPU table's figure for its model, else none."""
    per_image = sp.seconds_per_image.get(run.spec.model)
    if per_image is not None and sp.measured is None:
        return Rate(per_image, per_image * EVAL_WEIGHT, "runs")
    if run.spec.key in measured:
        return measured[run.spec.key]
    return Rate(per_image, per_image * EVAL_WEIGHT, "table") if per_image is not None else None


def task_name(task: str) -> str:
    return {"1": "task 1 (gradient flow)", "": "other runs"}.get(task, f"task {task}" if task.isdigit() else task)


def totals(left: list[Left], rates: dict[str, Rate | None], extra: dict[str, float] | None = None
           ) -> tuple[dict[str, float], list[Left]]:
    """(seconds per task, the runs without a speed): the sum of each task's runs left, `extra` added."""
    per_task: dict[str, float] = dict(extra or {})
    unknown = []
    for r in left:
        rate = rates.get(r.key)
        if rate is None:
            unknown.append(r)
        else:
            per_task[r.task] = per_task.get(r.task, 0.0) + run_seconds(r.spec, r.epochs_done, rate)
    return per_task, unknown


def dry_run_lines(left: list[Left], rates: dict[str, Rate | None], basis_lines: list[str],
                  extra: dict[str, float] | None = None) -> list[str]:
    """run --dry-run's lines: each run left with its time (or "?"), where the speeds come from,
    the time per task and in all, and what each wanted GPU would take from MEASURED."""
    lines = []
    for r in left:
        rate = rates.get(r.key)
        t = f"~{duration(run_seconds(r.spec, r.epochs_done, rate))}" if rate else "?"
        lines.append(f"would train {r.key}  {r.state:<14} {t:>12}  {r.label}")
    if not left and not extra:
        return lines
    per_task, unknown = totals(left, rates, extra)
    lines += [*basis_lines, per_gpu_text(per_gpu([(r.spec, r.epochs_done) for r in left]))]
    if per_task:
        tasks = ", ".join(f"{task_name(t)} ~{duration(s)}" for t, s in sorted(per_task.items(), key=_task_order))
        some = f" for {len(left) - len(unknown)} of the {len(left)} runs" if unknown else ""
        none = f"; no speed to go by for {', '.join(sorted({r.spec.model for r in unknown}))}" if unknown else ""
        all_ = f"~{duration(sum(per_task.values()))}{some}"
        lines.append(f"estimate: {all_ if list(per_task) == [''] else f'{tasks}; in all {all_}'}{none}")
    else:
        lines.append("estimate: none yet (no finished run in this store to go by, and nothing timed here)")
    return lines


def _task_order(item: tuple[str, float]) -> tuple:
    task = item[0]
    return (not task.isdigit(), int(task) if task.isdigit() else 0, task)


def estimate(config, store, runs: list, device: str | None, *, measure: bool = True, gradflow: bool = False,
             on_probe: Callable[[str], None] | None = None, threads: int = 0) -> Estimate:
    """How long training `runs` (spec.Run) should take on `device` (a --device setting; None: not
    known here, as for a cluster's nodes): at the speed of the store's finished runs there, else,
    with `measure`, at the speed timed here for each setting without one (engine/speed.py: torch),
    else the per-GPU table's. `gradflow`: `run` would measure task 1's gradient flow after training."""
    left = runs_left(store, runs)
    target = None
    if device is not None:  # asks torch (imported here, ~1.5 s) what `run` would train on
        from labreport.engine.device import device_identity

        target = Device(*device_identity(device))
    sp = speeds([res for k in store.keys() if (res := store.read_result(k)) is not None], target)
    rates: dict[str, Rate | None] = {r.key: rate_for(r, sp, {}) for r in left}
    basis_lines = [basis(sp)] if any(rates.values()) else []
    cells = _gradflow_cells(config, store) if gradflow else []
    extra, where = {}, sp.device
    if target is not None and measure and (timed := _time_here(config, store, device, left, rates, cells, on_probe,
                                                                threads)):
        where, extra, lines = timed
        basis_lines += lines
    return _estimate(left, rates, basis_lines, extra, where, target.type if target else sp.device_type, len(runs))


def _time_here(config, store, device: str, left: list[Left], rates: dict[str, Rate | None],
               cells: list[tuple[TrainSpec, int]], on_probe, threads: int):
    """Times here what has no speed yet (engine/speed.py: torch), filling `rates` in; (where, the
    gradient-flow measurement's seconds by task, lines saying what was timed), None if nothing was."""
    wanted = [r.spec for r in left if rates[r.key] is None or rates[r.key].source == "table"]
    if not wanted and not cells:
        return None
    from labreport.engine.speed import measure_here

    where, probes, lines = measure_here(config, store.root, device, wanted + [s for s, _ in cells], on_probe, threads)
    rates |= {r.key: Rate(*probes[r.spec.key], "measured") for r in left if r.spec.key in probes}
    return where, {"1": sum(n * probes[s.key][0] for s, n in cells)} if cells else {}, lines


def runs_left(store, runs: list) -> list[Left]:
    """The runs of `runs` (spec.Run) the store has not finished, as run --dry-run lists them."""
    states = {r.key: store.state(r.key) for r in runs}
    return [Left(r.key, r.label, r.spec, states[r.key].epochs_done, states[r.key].text(r.spec.epochs),
                 str(r.task or "")) for r in runs if not states[r.key].final]


def _estimate(left: list[Left], rates: dict[str, Rate | None], basis_lines: list[str], extra: dict[str, float],
              where: str | None, device_type: str | None, n_runs: int) -> Estimate:
    per_task, unknown = totals(left, rates, extra)
    counts = f"{len(left)} to train, {n_runs - len(left)} already done"
    lines = [*dry_run_lines(left, rates, basis_lines, extra), counts]
    per_run = {r.key: run_seconds(r.spec, r.epochs_done, rate) if (rate := rates[r.key]) else None for r in left}
    return Estimate(tuple(lines), None if unknown or not per_task else sum(per_task.values()), per_task, where,
                    device_type, per_run)


def _gradflow_cells(config, store) -> list[tuple[TrainSpec, int]]:
    """The gradient-flow measurements `run` would make after training (those not in the store yet),
    each as (the ResNet of its depth, whose training step it costs; the images it trains on: its
    steps, and a forward and backward pass of the probe batch before and after them)."""
    from labreport.store.gradflow import cached

    g = config.gradflow
    if not g.enabled:
        return []
    return [(TrainSpec(model="resnet" + c.model.removeprefix("resnet").removeprefix("plain"), batch_size=c.batch),
             c.steps * c.batch + 2 * c.probe) for c in cached(store.root, g)["missing"]]
