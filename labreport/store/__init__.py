"""The run store: one folder per run key, every file written atomically (store/files.py).

    <root>/<key>/spec.json        the resolved TrainSpec, TRAIN_VERSION, when it was first started
    <root>/<key>/history.json     one EpochRecord per finished epoch (rewritten whole each epoch)
    <root>/<key>/metrics.csv      the same, a row per epoch, for pandas and spreadsheets
    <root>/<key>/ckpt.pt          the newest checkpoint (end of the last finished epoch)
    <root>/<key>/ckpt.prev.pt     the one before, the fallback when the newest is damaged
    <root>/<key>/error.json       the last failure (a crash, not a divergence), if any
    <root>/<key>/result.json      a Result, written last: the run is done only when it is complete and valid
    <root>/<key>/lease.json       held while a process trains the run (store/leases.py)
    <root>/gradflow-<key>/result.json   a gradient-flow measurement of task 1 (store/gradflow.py)
    <root>/.last-run.json         the profile and --set overrides of the last `labreport run` here
    <root>/.speeds.json           this device's speed per setting, timed by `run --dry-run` (engine/speed.py)
    <root>/.noted.json            data folders whose warnings (not the official files) were said once

What each JSON file holds: store/records.py. torch is imported only where checkpoints are read or
written, so `status` and a `run` with nothing left to do stay fast.
"""

from __future__ import annotations

import csv
import io
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from labreport.faults import point as fault_point  # a test hook (LABREPORT_FAULT_AT), a no-op unless set
from labreport.store import leases
from labreport.store.files import atomic_write_bytes, atomic_write_json, now, read_json
from labreport.store.leases import CLAIM_PREFIX, STALE_AFTER_S
from labreport.store.records import FINAL_STATES, REQUIRED, RESULT_STATUSES, EpochRecord, Result, RunStatus

__all__ = ["RunState", "RunStore", "atomic_write_bytes", "atomic_write_json", "read_json"]

LAST_RUN = ".last-run.json"  # the profile and overrides of the last `labreport run` in the store
NOTED = ".noted.json"  # data folders whose warnings were said once: {folder: fingerprint}


def metrics_csv(history: list[EpochRecord]) -> bytes:
    """The epoch records as CSV: a header of their fields (EpochRecord's order, then any other), a
    row per epoch, empty cells for None."""
    buf = io.StringIO()
    fields = dict.fromkeys([*EpochRecord.__annotations__, *(k for h in history for k in h)])
    writer = csv.DictWriter(buf, fieldnames=[k for k in fields if any(k in h for h in history)], lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue().encode("utf-8")


@dataclass(frozen=True)
class RunState:
    """What the store knows about one run key."""

    status: RunStatus
    epochs_done: int = 0
    result: Result | None = None
    error: str | None = None
    leased_by: dict | None = None  # lease.json of the process that holds (or held) the run

    @property
    def final(self) -> bool:
        """Done or diverged: never trained again."""
        return self.status in FINAL_STATES

    def text(self, epochs: int) -> str:
        """The state in a word, for a run of `epochs`: "done", "partial 3/50", "missing"."""
        return f"partial {self.epochs_done}/{epochs}" if self.status == "partial" else self.status


class RunStore:
    """The run folders under `root` (see the module's docstring for what each holds)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def run_dir(self, key: str) -> Path:
        if not (len(key) == 16 and all(c in "0123456789abcdef" for c in key)):
            raise ValueError(f"not a run key: {key!r}")  # keys are ours: never a path from input
        return self.root / key

    # --- reading ---------------------------------------------------------------------------
    def read_result(self, key: str) -> Result | None:
        """The result if it is complete and valid, else None (a damaged result is not a result)."""
        res = read_json(self.run_dir(key) / "result.json")
        if not isinstance(res, dict) or any(k not in res for k in REQUIRED):
            return None
        if res["key"] != key or res["status"] not in RESULT_STATUSES:
            return None
        return res

    def read_history(self, key: str) -> list[EpochRecord]:
        hist = read_json(self.run_dir(key) / "history.json")
        return hist if isinstance(hist, list) else []

    def state(self, key: str) -> RunState:
        d = self.run_dir(key)
        if not d.is_dir():
            return RunState("missing")
        lease = read_json(d / "lease.json")
        lease = lease if isinstance(lease, dict) else None  # an unreadable lease is nobody's
        res = self.read_result(key)
        if res is not None:
            status = "done" if res["status"] == "completed" else "diverged"
            return RunState(status, res["epochs_run"], res)
        epochs = len(self.read_history(key))
        err = read_json(d / "error.json")
        if isinstance(err, dict):
            return RunState("failed", epochs, error=str(err.get("message", "unknown error")), leased_by=lease)
        if epochs or (d / "ckpt.pt").exists() or lease:
            return RunState("partial", epochs, leased_by=lease)
        return RunState("missing")

    def keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and len(p.name) == 16)

    def last_run(self) -> dict | None:
        """What the last `labreport run` here trained: {"profile", "overrides", "at"}, or None."""
        last = read_json(self.root / LAST_RUN)
        ok = isinstance(last, dict) and isinstance(last.get("overrides"), list) and \
            isinstance(last.get("profile"), (str, type(None)))
        return last if ok else None

    # --- writing ---------------------------------------------------------------------------
    def first_notice(self, folder: str, fingerprint: str) -> bool:
        """True the first time a data folder's warnings are shown with this store (a copy of CIFAR that
        is not the official download), False after: NOTED remembers each folder's fingerprint."""
        noted = read_json(self.root / NOTED)
        noted = noted if isinstance(noted, dict) else {}
        if noted.get(folder) == fingerprint:
            return False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.root / NOTED, {**noted, folder: fingerprint})
        except OSError:  # a store that cannot be written says the warning every time
            pass
        return True

    def remember_run(self, profile: str | None, overrides: tuple[str, ...]) -> None:
        """Note the profile and --set overrides of a `run` starting here: a `build` without them reads
        the same runs (the matrix's own are not in the store yet)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.root / LAST_RUN, {"profile": profile, "overrides": list(overrides), "at": now()})
        except OSError:  # not writable: the run itself says so; a note is not worth failing for
            pass

    def write_spec(self, key: str, spec: dict, train_version: int) -> None:
        path = self.run_dir(key) / "spec.json"
        old = read_json(path)
        started = old.get("created") if isinstance(old, dict) else None
        atomic_write_json(path, {"key": key, "spec": spec, "train_version": train_version,
                                 "created": started or now()})

    def write_history(self, key: str, history: list[EpochRecord]) -> None:
        """history.json, and the same records as metrics.csv (a row per epoch) for pandas, a
        spreadsheet or anything else that reads CSV."""
        atomic_write_json(self.run_dir(key) / "history.json", history)
        atomic_write_bytes(self.run_dir(key) / "metrics.csv", metrics_csv(history))

    def ensure_metrics_csv(self, key: str) -> None:
        """metrics.csv for a run written before labreport wrote one (no history: nothing)."""
        if not (self.run_dir(key) / "metrics.csv").exists() and (history := self.read_history(key)):
            atomic_write_bytes(self.run_dir(key) / "metrics.csv", metrics_csv(history))

    def write_result(self, key: str, result: Result) -> None:
        missing = [k for k in REQUIRED if k not in result]
        if missing or result["status"] not in RESULT_STATUSES:
            raise ValueError(f"refusing to write an incomplete result (missing {missing})")
        d = self.run_dir(key)
        atomic_write_json(d / "result.json", result)
        (d / "error.json").unlink(missing_ok=True)

    def write_error(self, key: str, message: str, log: str = "") -> None:
        atomic_write_json(self.run_dir(key) / "error.json",
                          {"message": message, "log": log, "time": now(), "host": socket.gethostname()})

    def clear_error(self, key: str) -> None:
        (self.run_dir(key) / "error.json").unlink(missing_ok=True)

    # --- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self, key: str, state: dict) -> None:
        """Write ckpt.pt atomically, keeping the previous one as ckpt.prev.pt."""
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        d = self.run_dir(key)
        newest, prev = d / "ckpt.pt", d / "ckpt.prev.pt"
        if newest.exists():
            os.replace(newest, prev)  # a crash right here leaves prev valid and no newest: fine
        fault_point("ckpt.rotated")
        atomic_write_bytes(newest, buf.getvalue())

    def load_checkpoint(self, key: str, map_location=None) -> tuple[dict | None, list[str]]:
        """The newest readable checkpoint and the warnings met on the way (weights_only: no pickle code runs)."""
        import torch

        warnings: list[str] = []
        d = self.run_dir(key)
        for name in ("ckpt.pt", "ckpt.prev.pt"):
            path = d / name
            if not path.exists():
                continue
            try:
                state = torch.load(path, map_location=map_location, weights_only=True)
                if not isinstance(state, dict) or "epoch" not in state:
                    raise ValueError("not a labreport checkpoint")
                return state, warnings
            except Exception as e:  # truncated, garbage, or a pickle that wants to run code
                warnings.append(f"checkpoint {path} is unreadable ({type(e).__name__}: {str(e)[:120]}); "
                                f"kept as {path.name}.bad")
                # moved aside: the next save would otherwise rotate it into ckpt.prev.pt, the fallback
                os.replace(path, path.with_name(path.name + ".bad"))
        if warnings:
            warnings.append("no usable checkpoint: the run restarts from epoch 0")
        return None, warnings

    def prune_checkpoints(self, key: str) -> None:
        """A finished run keeps only its final checkpoint (the trained weights)."""
        for name in ("ckpt.prev.pt", "ckpt.pt.bad", "ckpt.prev.pt.bad"):
            (self.run_dir(key) / name).unlink(missing_ok=True)

    def tidy_finished(self, key: str) -> bool:
        """Clear what a holder killed after writing the result left in a finished run's folder: its
        dead lease, the previous checkpoint and temp files. Only under the lease, so never while a
        live process still writes there. Returns whether anything was removed."""
        d = self.run_dir(key)
        try:
            names = [p.name for p in d.iterdir()]
        except OSError:
            return False

        def stray(n: str) -> bool:  # a killed writer's temp file; a claim may be a live claimant's
            return n.startswith(".") and n.endswith(".tmp") and not n.startswith(CLAIM_PREFIX)

        left = [n for n in names if n in ("lease.json", "ckpt.prev.pt", "ckpt.pt.bad", "ckpt.prev.pt.bad")
                or stray(n)]
        if not left or not self.acquire(key):
            return False
        try:
            if self.read_result(key) is None:  # not finished after all (the caller's view was old)
                return False
            self.prune_checkpoints(key)
            for n in filter(stray, left):
                (d / n).unlink(missing_ok=True)
            return True
        finally:
            self.release(key)

    # --- leases: one trainer per run (store/leases.py) ---------------------------------------
    def acquire(self, key: str, stale_after: float = STALE_AFTER_S) -> bool:
        """Claim the run: True if this process now holds its lease."""
        return leases.acquire(self.run_dir(key), stale_after)

    def heartbeat(self, key: str) -> None:
        leases.heartbeat(self.run_dir(key))

    def release(self, key: str) -> None:
        leases.release(self.run_dir(key))
