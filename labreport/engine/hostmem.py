"""Host memory: keep freed activation memory in the process while training on the CPU.

A training step on the CPU allocates and frees the same few dozen multi-megabyte tensors every
step (ResNet-20, batch 128: the first stage's activations are 128 x 16 x 32 x 32 x 4 B = 8 MiB
each), and evaluation does the same with 1,000-image batches (65 MiB each). glibc hands blocks above
its mmap threshold (128 KiB, raised on the fly up to 32 MiB) back to the kernel on free and trims
the heap's free top above the trim threshold, so the next step or batch asks the kernel again and
pays a zero-filled page fault per 4 KiB page. Raising both thresholds keeps those blocks in the
process; the steady state then has no page faults at all.

Measured on the 2-core CPU (ResNet-20, batch 128; bench/bench_train.py and the hostmem tests):
with glibc's defaults a bare training loop keeps taking ~14,000-18,000 faults per step and the
trainer ~1.8 million per epoch of 2,048 training + 4,000 evaluated images; with this setting none.
Evaluation plus checkpoint 5.1 s -> 2.3 s per epoch, training steps +3 % in the trainer's steady
state (+6 to +10 % in a loop without evaluation, +30 % for CIFARNet's), peak RSS +15 % (1.63 ->
1.87 GB: freed blocks stay mapped).

Nothing computed changes: the allocator decides where bytes live, never what they are. It is the
glibc equivalent of the jemalloc/tcmalloc preload that PyTorch's CPU performance guide suggests,
without a preload. Opt out with LABREPORT_HOST_MALLOC=default. Elsewhere than glibc (macOS,
musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

MMAP_THRESHOLD = 256 << 20  # bytes: blocks below this come from the heap, not a fresh mapping
TRIM_THRESHOLD = 1 << 30  # bytes of free heap top kept before any is given back to the kernel
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers, from <malloc.h>
OPT_OUT_ENV = "LABREPORT_HOST_MALLOC"

_applied: dict | None = None  # what this process set (mallopt is process-wide: once is enough)


def keep_freed_memory() -> dict | None:
    """Raise glibc's mmap and trim thresholds for this process. Returns what was set, or None when
    nothing was (not glibc, mallopt refused, or opted out). Idempotent."""
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get(OPT_OUT_ENV, "").strip().lower() == "default":
        return None
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the running process's libc
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Order matters little, but both are needed: setting either one switches off glibc's dynamic
    # mmap threshold, so the trim threshold alone would send every block over 128 KiB to mmap.
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return None
    _applied = {"allocator": "glibc", "mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}
    return _applied


def setting() -> dict | None:
    """What keep_freed_memory() set in this process, for provenance (None: the allocator's defaults)."""
    return _applied
