"""hostmem: the CPU trainer keeps freed activation memory in the process (no page faults per step).

The mechanism is checked by counting minor page faults (the kernel's zero-filled pages) over the
allocation pattern of a training step, in a fresh process: a count, never a speed limit.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from labreport.engine import hostmem

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# One process: the allocator's defaults first, then after keep_freed_memory(). Each "step"
# allocates, touches and frees 6 tensors of 40 MiB (a batch-256 first stage of a 32-channel net).
# Above glibc's 32 MiB ceiling for its dynamic mmap threshold, so with the defaults every one is a
# fresh mapping, deterministically. (Smaller blocks fault through heap trimming, which depends on
# what else sits at the heap's top: real, ~20,000 faults per ResNet-20 step, but not repeatable
# in a probe this small.)
PROBE = r"""
import json, resource, sys
import torch
from labreport.engine import hostmem

def faults(steps=5):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        live = [torch.ones(10 << 20) for _ in range(6)]  # 10M float32 = 40 MiB each
        del live
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0

faults()  # torch's own first-use allocations
default = faults()
applied = hostmem.keep_freed_memory()
faults()  # the heap grows once to the step's peak
tuned = faults()
print(json.dumps({"default": default, "tuned": tuned, "applied": applied, "again": hostmem.keep_freed_memory(),
                  "setting": hostmem.setting()}))
"""


def probe(env_extra: dict | None = None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_activations_stay_in_the_process():
    r = probe({hostmem.OPT_OUT_ENV: ""})
    pages_per_step = 6 * (40 << 20) // 4096
    # Defaults: glibc trims the freed top of the heap every step, so the pages come back faulting.
    assert r["default"] > 2 * pages_per_step, r
    # Tuned: the steady state asks the kernel for nothing (a few stray pages allowed).
    assert r["tuned"] < r["default"] / 20, r
    assert r["applied"] == {"allocator": "glibc", "mmap_threshold": hostmem.MMAP_THRESHOLD,
                            "trim_threshold": hostmem.TRIM_THRESHOLD}
    assert r["again"] == r["applied"] == r["setting"]  # idempotent, and reported for provenance


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_opt_out_keeps_the_defaults():
    r = probe({hostmem.OPT_OUT_ENV: "default"})
    assert r["applied"] is None and r["setting"] is None
    assert r["tuned"] > r["default"] / 4, r  # the same faulting pattern as before
