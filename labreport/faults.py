"""A test hook: deterministic fault injection (kill -9 at a named point), off unless asked for.

    LABREPORT_FAULT_AT="<site>:<n>"   the process SIGKILLs itself at its n-th pass through <site>

Sites (each one line in the code it names):

    runner.start      `labreport run` has work to do, before the data set is loaded
    runner.acquired   a run's lease was just taken, before its training starts
    train.step        after an optimizer step (counted over the whole process)
    ckpt.rotated      save_checkpoint: after ckpt.pt was moved to ckpt.prev.pt, before the new one is written
    result.before     train(): before write_result
    write.open        atomic_write_bytes: the temp file exists (empty), nothing written yet
    write.synced      atomic_write_bytes: the temp file is written and fsynced, not yet renamed
    write.renamed     atomic_write_bytes: renamed over the target, the folder not yet fsynced

The variable is read once, at import; unset, `point()` is a single comparison. Only the tests
(tests/test_faults.py) set it: it exists to prove that a run killed anywhere resumes correctly.
"""

from __future__ import annotations

import os
import signal

_SITE, _, _N = (os.environ.get("LABREPORT_FAULT_AT") or "").rpartition(":")
_AT = int(_N) if _SITE and _N.isdigit() else 0
_passes = 0


def point(site: str) -> None:
    """SIGKILL this process at the n-th pass through `site` when LABREPORT_FAULT_AT names it."""
    global _passes
    if _AT and site == _SITE:
        _passes += 1
        if _passes == _AT:
            os.kill(os.getpid(), signal.SIGKILL)
