"""The device a run trains on, how it executes there, and what its result records about both.

`RunOptions` are the execution settings ([run] in the TOML, the OOM fallback), never part of the
run key: they change how fast a run is, not what it computes (within the tolerances tested in
test_train.py). `provenance` is what every result says about where and how it ran.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

from pathlib import Path

import torch

from labreport.version import __version__
from labreport.engine import hostmem
from labreport.errors import LabreportError
from labreport.engine.precision import auto_precision, capability
from labreport.spec import TRAIN_VERSION


@dataclass(frozen=True)
class RunOptions:
    """How a run is executed, never what it computes: none of this enters the run key."""

    # NHWC: faster oneDNN convolutions and tensor cores (measured: docs/performance.md)
    channels_last: bool = True
    compile: bool | str = False  # [run] compile: False, True or a torch.compile mode (see compile_mode)
    micro_batch: int | None = None  # split each batch into micro-batches (set by the OOM fallback)
    lab_dir: Path = Path(".")  # experiments.toml's folder: where a model of one's own ("nets.py:Net") is found


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for --device / [run] device; a LabreportError (a usage error) if it is unusable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise LabreportError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LabreportError(f"device '{name}' asked for, but CUDA is not available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise LabreportError(f"device '{name}' asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


def compile_mode(setting: bool | str) -> str | None:
    """[run] compile as torch.compile's mode; None: eager. True is torch.compile's "default" (its gain
    and its one-off compile time: docs/performance.md); "reduce-overhead" adds CUDA
    graphs on a GPU: the forward and backward of a step replay as one graph each instead of
    hundreds of kernel launches from Python (on a CPU it is the same as True)."""
    if setting is False:
        return None
    return "default" if setting is True else str(setting)


def device_name(device: torch.device) -> str:
    """The name results record for the device (the GPU's, or the CPU's model), and run --dry-run
    matches finished runs on."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


@functools.cache
def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 7B13", "Intel(R) Xeon(R) Processor"): Linux's /proc/cpuinfo,
    else what the platform says, else "cpu"."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith(("model name", "Model")) and ":" in line:  # x86; Arm boards say "Model"
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or "cpu"


def summary_line(device_type: str, name: str, cap: tuple[int, int] | None, threads: int,
                 compile_setting: bool | str) -> str:
    """The line `run` starts with: where it trains, what precision = "auto" means there (with and
    without BatchNorm, precision.auto_precision), and whether it compiles. Pure, for tests."""
    with_bn, without = auto_precision(device_type, cap, "batch"), auto_precision(device_type, cap, "none")
    auto = with_bn if with_bn == without else f"{with_bn}, BN-less runs {without}"
    mode = compile_mode(compile_setting)
    compiled = {None: "eager", "reduce-overhead": "compiled with CUDA graphs" if device_type == "cuda"
                else "compiled (CUDA graphs need a GPU)"}.get(mode, f"compiled ({mode})")
    where = (f"{name} (CUDA, compute capability {cap[0]}.{cap[1]})" if device_type == "cuda" and cap
             else f"the CPU ({name + ', ' if name not in ('', 'cpu') else ''}{threads} thread{'s' * (threads != 1)})")
    return f"training on {where}; precision auto = {auto}; {compiled}"


def describe(device: torch.device, compile_setting: bool | str) -> str:
    """summary_line for this device, as torch sees it."""
    return summary_line(device.type, device_name(device), capability(device), torch.get_num_threads(),
                        compile_setting)


def device_identity(setting: str) -> tuple[str, str | None]:
    """(device type, GPU name or None) of what `run` trains on with this --device / [run] device
    setting: what run --dry-run matches finished runs on."""
    dev = resolve_device(setting)
    return dev.type, device_name(dev) if dev.type == "cuda" else None


def peak_memory_mib(device: torch.device) -> tuple[float | None, float | None]:
    """Peak device memory allocated / reserved in MiB since the last reset (None on CPU)."""
    if device.type != "cuda":
        return None, None
    mib = 2 ** 20
    return torch.cuda.max_memory_allocated(device) / mib, torch.cuda.max_memory_reserved(device) / mib


def cudagraph_skips() -> int | None:
    """How often inductor has declined CUDA graphs in this process (each time says why in a warning:
    a CPU device, a mutated input, dynamic shapes); None where torch does not count it."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["inductor"]["cudagraph_skips"])
    except Exception:  # a private counter: its absence must never fail a run  # noqa: BLE001
        return None


def provenance(device: torch.device, fingerprint: str, official: bool, precision: str, options: RunOptions,
               graph_skips: int | None = None) -> dict:
    cuda = device.type == "cuda"
    mode = compile_mode(options.compile)
    cap = capability(device)
    return {
        "labreport": __version__, "train_version": TRAIN_VERSION, "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": device_name(device), "device_type": device.type,
        "capability": f"{cap[0]}.{cap[1]}" if cap else None,  # what precision = "auto" resolved from
        "host": platform.node(), "python": platform.python_version(),
        "threads": torch.get_num_threads(), "precision": precision,
        # fp32 convolutions on tensor cores in TF32 (10-bit mantissa, fp32's range): cuDNN's default
        "tf32": torch.backends.cudnn.allow_tf32 if cuda else None,
        "channels_last": options.channels_last, "compile": mode or False,
        # CUDA graphs ran: asked for on a GPU and inductor declined none; None: cannot tell (no counter)
        "cuda_graphs": (None if graph_skips is None else graph_skips == 0) if cuda and mode == "reduce-overhead"
        else False,
        "cudagraph_skips": graph_skips if mode == "reduce-overhead" else None,
        "data_fingerprint": fingerprint, "data_official": official,
        "host_malloc": hostmem.setting(),  # None: the C library's defaults
    }
