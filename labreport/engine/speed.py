"""The speed of this device for the runs left, measured before anything trains (`run --dry-run`,
`Lab.estimate()`): a few of the trainer's own steps and one evaluation batch per distinct setting
that decides the speed (model, normalisation, batch size, precision, classes, channels_last,
compile), on the device `run` would train on.

Each figure is kept in the run store (SPEEDS_FILE), keyed by the device (its name, torch's CPU
threads, torch's version) and by the setting, so it is measured once; cluster/eta.py prefers the
speed of runs that finished on this device to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from labreport.engine.device import RunOptions, device_name
from labreport.engine.precision import resolve_precision
from labreport.spec import NUM_CLASSES, TrainSpec
from labreport.store.files import atomic_write_json, now, read_json

SPEEDS_FILE = ".speeds.json"  # in the run store: {device key: {setting key: figures}}
PROBE_STEPS = 3  # training steps timed one by one per setting, after one warm-up step: the quickest counts
EVAL_IMAGES = 256  # images of the timed evaluation batch


@dataclass(frozen=True)
class Probe:
    """One setting's measured speed on this device."""

    setting: str  # setting_key()
    train_s: float  # seconds per trained image
    eval_s: float  # seconds per evaluated image
    measured: str  # when (ISO time)
    took_s: float  # how long the measurement took
    cached: bool = False  # read from the store, not measured by this call


def device_key(dev: torch.device) -> str:
    """What a measured speed holds for: the device, torch's CPU threads on a CPU, torch's version."""
    where = f"{device_name(dev)} (CUDA)" if dev.type == "cuda" else \
        f"{device_name(dev)} (CPU, {torch.get_num_threads()} threads)"
    return f"{where}, torch {torch.__version__}"


def setting_key(spec: TrainSpec, dev: torch.device, options: RunOptions) -> str:
    """The settings a step's speed depends on (dropout, weight decay, the seed and lr do not change it)."""
    model = spec.model + (f"@{spec.model_source[:12]}" if spec.model_source else "")
    if spec.model_args:
        model += str(spec.model_args.as_dict())
    return (f"{model}, norm {spec.norm}, batch {spec.batch_size}, "
            f"{resolve_precision(spec.precision, dev, spec.norm)}, {NUM_CLASSES[spec.dataset]} classes"
            + (", channels_last" if options.channels_last else "") + (f", compile {options.compile}" if options.compile
                                                                       else ""))


def measure(specs: Iterable[TrainSpec], dev: torch.device, options: RunOptions, store_root: Path,
            on_probe: Callable[[Probe], None] = lambda p: None,
            on_start: Callable[[int], None] = lambda n: None) -> dict[str, Probe]:
    """{spec key: Probe} for every spec: measured here once per setting, or read from the store."""
    from labreport.engine.trainer import measure_speed

    path, dkey = Path(store_root) / SPEEDS_FILE, device_key(dev)
    kept = _read(path)
    known = kept.setdefault(dkey, {})
    specs = list(specs)
    if missing := {setting_key(s, dev, options) for s in specs} - known.keys():
        on_start(len(missing))
    out: dict[str, Probe] = {}
    for spec in specs:
        if spec.key in out:  # asked for twice (the gradient-flow cells of one depth)
            continue
        skey = setting_key(spec, dev, options)
        if skey in known:
            out[spec.key] = Probe(skey, **known[skey], cached=True)
            continue
        t0 = time.perf_counter()
        train_s, eval_s = measure_speed(spec, dev, num_classes=NUM_CLASSES[spec.dataset], options=options,
                                        steps=PROBE_STEPS, eval_images=EVAL_IMAGES)
        known[skey] = {"train_s": train_s, "eval_s": eval_s, "measured": now(), "took_s": time.perf_counter() - t0}
        out[spec.key] = Probe(skey, **known[skey])
        on_probe(out[spec.key])
        _keep(path, kept)
    return out


def _keep(path: Path, kept: dict) -> None:
    """Save the figures in the store (created if new); a store that cannot be written measures again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, kept)
    except OSError:
        pass


def _read(path: Path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict):
        return {}
    return {d: {s: f for s, f in v.items() if isinstance(f, dict) and {"train_s", "eval_s", "measured", "took_s"}
                <= f.keys()} for d, v in data.items() if isinstance(v, dict)}


def measure_here(config, store_root: Path, device: str, specs: list[TrainSpec], on_probe=None, threads: int = 0):
    """Time every setting of `specs` on `device` (a --device setting) as `run` would train there:
    (the device's key, {spec key: (seconds per trained image, per evaluated image)}, lines saying
    what was measured)."""
    from labreport.engine.device import resolve_device

    dev = resolve_device(device if device != "auto" else config.run.device)
    options = RunOptions(channels_last=config.run.channels_last, compile=config.run.compile, lab_dir=config.base_dir)
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        say = on_probe or (lambda text: None)
        probes = measure(specs, dev, options, store_root, lambda p: say(_probe_line(p)),
                         lambda n: say(f"timing {n} setting(s) on {device_key(dev)}, once (kept in the store) ..."))
        where = device_key(dev)
    finally:
        torch.set_num_threads(before)
    return where, {k: (p.train_s, p.eval_s) for k, p in probes.items()}, _lines(where, probes)


def _probe_line(p: Probe) -> str:
    when = f"measured {p.measured[:10]}" if p.cached else f"measured in {p.took_s:.1f} s"
    return f"  {p.setting}: {1 / p.train_s:,.0f} img/s training, {1 / p.eval_s:,.0f} img/s evaluating ({when})"


def _lines(where: str, probes: dict[str, Probe]) -> list[str]:
    unique: dict[str, Probe] = {}
    for p in probes.values():  # a setting timed by this call is said so, whichever run asked first
        if p.setting not in unique or unique[p.setting].cached:
            unique[p.setting] = p
    took = sum(p.took_s for p in unique.values() if not p.cached)
    head = (f"speed on {where}, timed here (the quickest of {PROBE_STEPS} training steps after a warm-up step, "
            f"and {EVAL_IMAGES} evaluated images, per setting" + (f"; {took:.0f} s" if took else "") + "):")
    return [head, *(_probe_line(p) for p in unique.values())]
