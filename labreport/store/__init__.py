"""The run store: one folder per run key, every file written atomically.

    <root>/<key>/spec.json        the resolved TrainSpec, TRAIN_VERSION, when it was first started
    <root>/<key>/history.json     one record per finished epoch (rewritten whole each epoch)
    <root>/<key>/ckpt.pt          the newest checkpoint (end of the last finished epoch)
    <root>/<key>/ckpt.prev.pt     the one before, the fallback when the newest is damaged
    <root>/<key>/error.json       the last failure (a crash, not a divergence), if any
    <root>/<key>/result.json      written last: the run is done only when this is complete and valid
    <root>/<key>/lease.json       held while a process trains the run

Atomic means: write a temporary file in the same folder, fsync it, rename it over the target,
fsync the folder. A reader sees the old file or the new one, never half of one, whatever kills
the writer (Ctrl-C, kill -9, power loss). tests/test_faults.py kills real processes at each of
these steps through the test hook in faults.py (LABREPORT_FAULT_AT; a no-op unless set).

torch is imported only where checkpoints are read or written, so `status` and a `run` with
nothing left to do stay fast.
"""

from __future__ import annotations

import errno
import functools
import io
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labreport.faults import point as fault_point  # a test hook (LABREPORT_FAULT_AT), a no-op unless set

RESULT_STATUSES = ("completed", "diverged")  # the two outcomes that end a run for good
RESULT_REQUIRED = ("key", "status", "spec", "epochs_run", "provenance")
CLAIM_PREFIX = ".claim."  # acquire()'s private file before it is linked to lease.json


@functools.cache  # the umask of a process is set once, at its start; no /proc read per file written
def _new_file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the umask. mkstemp's 0o600 would leave a lab
    group's shared run store, and the report a student hands in, readable by their owner alone."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):  # Linux >= 4.7: read without changing it
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way to read it is to set it
    os.umask(mask)
    return 0o666 & ~mask


def _mkstemp(folder: Path, prefix: str) -> tuple[int, str]:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        os.fchmod(fd, _new_file_mode())
    except OSError:  # a file system without modes: keep what it gave
        pass
    return fd, tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(path.parent, f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            fault_point("write.open")
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fault_point("write.synced")
        os.replace(tmp, path)
        fault_point("write.renamed")
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n").encode())


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing, truncated or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class RunState:
    """What the store knows about one run key."""

    status: str  # "done" | "diverged" | "partial" | "failed" | "missing"
    epochs_done: int = 0
    result: dict | None = None
    error: str | None = None
    leased_by: dict | None = None


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def run_dir(self, key: str) -> Path:
        if not (len(key) == 16 and all(c in "0123456789abcdef" for c in key)):
            raise ValueError(f"not a run key: {key!r}")  # keys are ours: never a path from input
        return self.root / key

    # --- reading ---------------------------------------------------------------------------
    def read_result(self, key: str) -> dict | None:
        """The result if it is complete and valid, else None (a damaged result is not a result)."""
        res = read_json(self.run_dir(key) / "result.json")
        if not isinstance(res, dict) or any(k not in res for k in RESULT_REQUIRED):
            return None
        if res["key"] != key or res["status"] not in RESULT_STATUSES:
            return None
        return res

    def read_history(self, key: str) -> list[dict]:
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

    # --- writing ---------------------------------------------------------------------------
    def write_spec(self, key: str, spec: dict, train_version: int) -> None:
        path = self.run_dir(key) / "spec.json"
        old = read_json(path)
        started = old.get("created") if isinstance(old, dict) else None
        atomic_write_json(path, {"key": key, "spec": spec, "train_version": train_version,
                                 "created": started or _now()})

    def write_history(self, key: str, history: list[dict]) -> None:
        atomic_write_json(self.run_dir(key) / "history.json", history)

    def write_result(self, key: str, result: dict) -> None:
        missing = [k for k in RESULT_REQUIRED if k not in result]
        if missing or result["status"] not in RESULT_STATUSES:
            raise ValueError(f"refusing to write an incomplete result (missing {missing})")
        d = self.run_dir(key)
        atomic_write_json(d / "result.json", result)
        (d / "error.json").unlink(missing_ok=True)

    def write_error(self, key: str, message: str, log: str = "") -> None:
        atomic_write_json(self.run_dir(key) / "error.json",
                          {"message": message, "log": log, "time": _now(), "host": socket.gethostname()})

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

    # --- leases: one trainer per run -------------------------------------------------------
    def acquire(self, key: str, stale_after: float = 600.0) -> bool:
        """Claim the run. True if this process now holds its lease.

        The claim is written to a private file and hard-linked to lease.json: link() fails when
        the name exists, so a lease appears atomically and never half-written (on a file system
        without hard links, see _claim). A lease whose holder is gone (a dead pid on this host, or a
        heartbeat older than `stale_after` seconds) is taken over by renaming it aside first; of
        several workers racing for it only one rename succeeds, and a lease that turns out to be
        fresh is put back."""
        d = self.run_dir(key)
        d.mkdir(parents=True, exist_ok=True)
        path = d / "lease.json"
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": _now(), "heartbeat": time.time()}
        fd, tmp = _mkstemp(d, CLAIM_PREFIX)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            for _ in range(3):
                if _claim(Path(tmp), path):
                    return True
                if _held(path, stale_after):
                    return False
                aside = d / f".lease.stale.{os.getpid()}.{time.monotonic_ns()}"
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    continue  # someone else moved it: try again
                if _held(aside, stale_after):  # we moved a fresh lease another worker had just taken
                    _claim(aside, path)  # give it back, unless yet another worker holds the name now
                    aside.unlink(missing_ok=True)
                    return False
                aside.unlink(missing_ok=True)
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def heartbeat(self, key: str) -> None:
        path = self.run_dir(key) / "lease.json"
        held = read_json(path)
        if isinstance(held, dict) and held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
            held["heartbeat"] = time.time()
            atomic_write_json(path, held)

    def release(self, key: str) -> None:
        path = self.run_dir(key) / "lease.json"
        held = read_json(path)
        if isinstance(held, dict) and held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
            path.unlink(missing_ok=True)


UNREADABLE_GRACE_S = 30.0  # an unreadable lease younger than this may still be being written
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def _claim(src: Path, path: Path) -> bool:
    """Make `path` a copy of the claim `src` if no file has that name. True if we made it.

    link() creates the name and its content at once. File systems without hard links (Google
    Drive mounted in Colab, SMB shares, exFAT) refuse it; there the name is created exclusively
    (O_EXCL: still exactly one winner) and written right after, and _held gives a lease it cannot
    read yet UNREADABLE_GRACE_S to become readable before anyone may take it over."""
    try:
        os.link(src, path)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _new_file_mode())
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(src.read_bytes())
        f.flush()
        os.fsync(f.fileno())
    return True


def _held(path: Path, stale_after: float) -> bool:
    """Whether the lease file at `path` belongs to a live holder, or may: one still being written."""
    lease = read_json(path)
    if isinstance(lease, dict):
        return not _lease_is_stale(lease, stale_after)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age < UNREADABLE_GRACE_S  # garbage (not a JSON object) once old enough is nobody's


def _lease_is_stale(lease: dict, stale_after: float) -> bool:
    if lease.get("host") == socket.gethostname():
        pid = lease.get("pid")
        if isinstance(pid, int) and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        elif pid == os.getpid():
            return True  # our own leftover (e.g. a retry in the same process)
    hb = lease.get("heartbeat")
    return not isinstance(hb, (int, float)) or time.time() - hb > stale_after


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
