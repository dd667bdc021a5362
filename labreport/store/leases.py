"""Leases: one trainer per run, among any number of processes on any number of machines that share
the store (over NFS, or a Drive folder in Colab).

    <run folder>/lease.json     {"host", "pid", "since", "heartbeat"} of the process training the run

A lease is taken atomically (`acquire`), refreshed while its holder trains (`heartbeat`), and
released by its holder (`release`). A lease whose holder is gone (a dead pid on this host, or a
heartbeat older than `stale_after`) is taken over, by exactly one of the processes racing for it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

from labreport.store.files import atomic_write_json, mkstemp, new_file_mode, now, read_json

LEASE = "lease.json"
CLAIM_PREFIX = ".claim."  # acquire()'s private file before it is linked to lease.json
STALE_AFTER_S = 600.0  # a heartbeat older than this: the holder is gone (runner's heartbeat: every 30 s)


def acquire(folder: Path, stale_after: float = STALE_AFTER_S) -> bool:
    """Claim the run in `folder`. True if this process now holds its lease.

    The claim is written to a private file and hard-linked to lease.json: link() fails when
    the name exists, so a lease appears atomically and never half-written (on a file system
    without hard links, see _claim). A lease whose holder is gone is taken over by renaming it
    aside first; of several workers racing for it only one rename succeeds, and a lease that turns
    out to be fresh is put back."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LEASE
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": now(), "heartbeat": time.time()}
    fd, tmp = mkstemp(folder, CLAIM_PREFIX)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
            f.flush()
            os.fsync(f.fileno())
        for _ in range(3):
            if (taken := _take(Path(tmp), path, stale_after)) is not None:
                return taken
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def _take(claim: Path, path: Path, stale_after: float) -> bool | None:
    """One attempt: True, the lease is ours; False, a live holder has it; None, try again (a stale
    lease was moved aside, by us or by another worker)."""
    if _claim(claim, path):
        return True
    if _held(path, stale_after):
        return False
    aside = path.with_name(f".lease.stale.{os.getpid()}.{time.monotonic_ns()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None  # someone else moved it
    fresh = _held(aside, stale_after)  # we moved a fresh lease another worker had just taken
    if fresh:
        _claim(aside, path)  # give it back, unless yet another worker holds the name now
    aside.unlink(missing_ok=True)
    return False if fresh else None


def _mine(held) -> bool:
    return isinstance(held, dict) and held.get("pid") == os.getpid() and held.get("host") == socket.gethostname()


def heartbeat(folder: Path) -> None:
    """Refresh this process's lease on the run (nothing if it does not hold it)."""
    path = folder / LEASE
    held = read_json(path)
    if _mine(held):
        held["heartbeat"] = time.time()
        atomic_write_json(path, held)


def release(folder: Path) -> None:
    """Give up this process's lease on the run (nothing if it does not hold it)."""
    path = folder / LEASE
    if _mine(read_json(path)):
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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, new_file_mode())
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


