"""The run store: atomic files, result validation, run states, checkpoints with fallback, leases."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labreport import store as store_mod
from labreport.store import RunStore, atomic_write_bytes, atomic_write_json, read_json
from labreport.store.leases import UNREADABLE_GRACE_S

KEY = "0123456789abcdef"
OTHER_KEY = "fedcba9876543210"


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def result(key: str = KEY, status: str = "completed", epochs: int = 3) -> dict:
    return {"key": key, "status": status, "spec": {"model": "resnet20"}, "epochs_run": epochs,
            "provenance": {"torch": "x"}, "diverged_at_epoch": None}


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- atomic files --------------------------------------------------------------------------------
def test_atomic_write_leaves_only_the_target(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_json(path, {"x": 2})
    atomic_write_bytes(tmp_path / "sub" / "b.bin", b"\x00\x01")
    assert names(tmp_path / "sub") == ["a.json", "b.bin"]  # no .a.json.*.tmp left behind
    assert read_json(path) == {"x": 2}
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize("fail_in", ["replace", "fsync"])
@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_content_and_no_temp_file(tmp_path, monkeypatch, fail_in, exc):
    path = tmp_path / "result.json"
    atomic_write_json(path, {"old": True})
    before = path.read_bytes()

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(store_mod.os, fail_in, boom)
    with pytest.raises(type(exc)):
        atomic_write_json(path, {"new": True, "pad": "x" * 100_000})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert names(tmp_path) == ["result.json"]


def test_read_json_is_none_for_missing_truncated_and_garbage(tmp_path):
    p = tmp_path / "f.json"
    assert read_json(p) is None
    p.write_bytes(b'{"a": [1, 2')
    assert read_json(p) is None
    p.write_bytes(b"\xff\xfe\x00\x80garbage")
    assert read_json(p) is None
    p.write_bytes(b"")
    assert read_json(p) is None


# --- results ---------------------------------------------------------------------------------
def test_read_result_returns_a_valid_result(store):
    store.write_result(KEY, result())
    assert store.read_result(KEY) == result()


def _damaged_results():
    good = (json.dumps(result(), indent=1) + "\n").encode()
    missing = {k: v for k, v in result().items() if k != "provenance"}
    return {
        "truncated": good[: len(good) // 2],
        "zero-length": b"",
        "garbage": b"\x00\xff\xfe garbage \x80",
        "not-an-object": b"[1, 2, 3]\n",
        "incomplete": json.dumps(missing).encode(),
        "wrong-key": json.dumps(result(key=OTHER_KEY)).encode(),
        "unknown-status": json.dumps(result(status="running")).encode(),
    }


@pytest.mark.parametrize("case", list(_damaged_results()))
def test_read_result_is_none_for_a_damaged_result(store, case):
    d = store.run_dir(KEY)
    d.mkdir(parents=True)
    (d / "result.json").write_bytes(_damaged_results()[case])
    assert store.read_result(KEY) is None
    assert store.state(KEY).status != "done"


def test_write_result_refuses_an_incomplete_result(store):
    with pytest.raises(ValueError, match="incomplete"):
        store.write_result(KEY, {"key": KEY, "status": "completed"})
    with pytest.raises(ValueError):
        store.write_result(KEY, result(status="running"))
    assert store.read_result(KEY) is None


# --- states ----------------------------------------------------------------------------------
def test_state_missing(store):
    assert store.state(KEY).status == "missing"  # no folder
    store.run_dir(KEY).mkdir(parents=True)
    assert store.state(KEY).status == "missing"  # an empty folder
    store.write_spec(KEY, {"model": "resnet20"}, 1)
    assert store.state(KEY).status == "missing"  # started, but nothing finished and nobody holds it


def test_state_partial_counts_finished_epochs(store):
    store.write_history(KEY, [{"epoch": 1}, {"epoch": 2}])
    st = store.state(KEY)
    assert (st.status, st.epochs_done, st.result, st.leased_by) == ("partial", 2, None, None)


def test_state_partial_with_only_a_checkpoint_or_a_lease(store, tmp_path):
    store.save_checkpoint(KEY, {"epoch": 0})
    assert store.state(KEY).status == "partial"
    assert store.acquire(OTHER_KEY)
    st = store.state(OTHER_KEY)
    assert st.status == "partial" and st.leased_by["pid"] == os.getpid()
    store.release(OTHER_KEY)
    assert store.state(OTHER_KEY).status == "missing"


def test_state_done_and_diverged(store):
    store.write_history(KEY, [{"epoch": 1}])
    store.write_result(KEY, result(epochs=3))
    st = store.state(KEY)
    assert (st.status, st.epochs_done, st.result["key"]) == ("done", 3, KEY)
    store.write_result(OTHER_KEY, dict(result(OTHER_KEY, status="diverged", epochs=1), diverged_at_epoch=2))
    st = store.state(OTHER_KEY)
    assert (st.status, st.epochs_done, st.result["diverged_at_epoch"]) == ("diverged", 1, 2)


def test_state_failed_then_done_clears_the_error(store):
    store.write_history(KEY, [{"epoch": 1}])
    store.write_error(KEY, "RuntimeError: boom", "Traceback ...")
    st = store.state(KEY)
    assert (st.status, st.epochs_done, st.error) == ("failed", 1, "RuntimeError: boom")
    err = read_json(store.run_dir(KEY) / "error.json")
    assert err["log"] == "Traceback ..." and err["host"] == socket.gethostname()
    store.write_result(KEY, result())
    assert store.state(KEY).status == "done"
    assert not (store.run_dir(KEY) / "error.json").exists()


@pytest.mark.parametrize("bad", ["../x", "", "..", "/etc/passwd", "0123456789abcde", "0123456789abcdef0",
                                 "0123456789ABCDEF", "0123456789abcdeg", "../../0123456789ab", "0123456789abcd/."])
def test_run_dir_rejects_anything_but_a_key(store, bad):
    with pytest.raises(ValueError, match="not a run key"):
        store.run_dir(bad)
    with pytest.raises(ValueError):
        store.state(bad)


def test_run_dir_and_keys(store):
    assert store.run_dir(KEY) == store.root / KEY
    assert store.keys() == []
    store.write_history(KEY, [])
    (store.root / "not-a-run").mkdir()
    assert store.keys() == [KEY]


# --- checkpoints -----------------------------------------------------------------------------
def _ckpt(epoch: int) -> dict:
    return {"epoch": epoch, "model": {"w": torch.full((3,), float(epoch))}, "history": [{"epoch": epoch}]}


def test_checkpoints_rotate_and_load_the_newest(store):
    for e in (1, 2, 3):
        store.save_checkpoint(KEY, _ckpt(e))
    d = store.run_dir(KEY)
    assert names(d) == ["ckpt.prev.pt", "ckpt.pt"]
    state, warnings = store.load_checkpoint(KEY)
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.full((3,), 3.0))
    assert warnings == []
    assert torch.load(d / "ckpt.prev.pt", weights_only=True)["epoch"] == 2


def test_no_checkpoint_is_a_fresh_start_without_warnings(store):
    assert store.load_checkpoint(KEY) == (None, [])


def test_only_the_previous_checkpoint_is_used_silently(store):
    # a crash between the rotation and the write leaves ckpt.prev.pt and no ckpt.pt
    store.save_checkpoint(KEY, _ckpt(1))
    d = store.run_dir(KEY)
    os.replace(d / "ckpt.pt", d / "ckpt.prev.pt")
    state, warnings = store.load_checkpoint(KEY)
    assert state["epoch"] == 1 and warnings == []


def _corrupt(path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "zero-length":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(len(raw)))
    elif how == "not-a-checkpoint":  # a valid torch file, but not ours
        torch.save({"weights": torch.zeros(2)}, path)


@pytest.mark.parametrize("how", ["truncated", "zero-length", "garbage", "not-a-checkpoint"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(store, how):
    store.save_checkpoint(KEY, _ckpt(1))
    store.save_checkpoint(KEY, _ckpt(2))
    _corrupt(store.run_dir(KEY) / "ckpt.pt", how)
    state, warnings = store.load_checkpoint(KEY)
    assert state["epoch"] == 1
    assert len(warnings) == 1 and "ckpt.pt is unreadable" in warnings[0]


def test_both_checkpoints_damaged_means_a_restart_with_warnings(store):
    store.save_checkpoint(KEY, _ckpt(1))
    store.save_checkpoint(KEY, _ckpt(2))
    _corrupt(store.run_dir(KEY) / "ckpt.pt", "truncated")
    _corrupt(store.run_dir(KEY) / "ckpt.prev.pt", "zero-length")
    state, warnings = store.load_checkpoint(KEY)
    assert state is None
    assert len(warnings) == 3
    assert "ckpt.pt is unreadable" in warnings[0] and "ckpt.prev.pt is unreadable" in warnings[1]
    assert "restarts from epoch 0" in warnings[2]


class _Evil:
    """Unpickling this runs a shell command: what a hostile ckpt.pt could carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_in_a_checkpoint_is_refused(store, tmp_path):
    # control: the crafted file really runs code when loaded without weights_only
    control = tmp_path / "control-ran"
    torch.save({"epoch": 9, "x": _Evil(control)}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()

    marker = tmp_path / "pwned"
    store.save_checkpoint(KEY, _ckpt(1))  # becomes ckpt.prev.pt
    store.save_checkpoint(KEY, _ckpt(2))
    torch.save({"epoch": 2, "model": _Evil(marker)}, store.run_dir(KEY) / "ckpt.pt")
    state, warnings = store.load_checkpoint(KEY)
    assert not marker.exists()
    assert state["epoch"] == 1  # the good previous checkpoint
    assert "ckpt.pt is unreadable" in warnings[0]
    # the refused file is moved aside, so the next save cannot rotate it into the fallback slot
    assert not (store.run_dir(KEY) / "ckpt.pt").exists() and (store.run_dir(KEY) / "ckpt.pt.bad").exists()

    torch.save({"epoch": 1, "model": _Evil(marker)}, store.run_dir(KEY) / "ckpt.prev.pt")
    state, warnings = store.load_checkpoint(KEY)
    assert state is None and len(warnings) == 2 and "restarts from epoch 0" in warnings[-1]
    assert not marker.exists()


# --- leases ----------------------------------------------------------------------------------
def _write_lease(store, key, **fields) -> dict:
    lease = {"host": socket.gethostname(), "pid": os.getpid(), "since": "2026-01-01T00:00:00+0000",
             "heartbeat": time.time(), **fields}
    store.run_dir(key).mkdir(parents=True, exist_ok=True)
    (store.run_dir(key) / "lease.json").write_text(json.dumps(lease))
    return lease


def _lease(store, key) -> dict | None:
    return read_json(store.run_dir(key) / "lease.json")


def test_acquire_heartbeat_release(store):
    assert store.acquire(KEY)
    lease = _lease(store, KEY)
    assert (lease["pid"], lease["host"]) == (os.getpid(), socket.gethostname())
    _write_lease(store, KEY, heartbeat=1.0)
    store.heartbeat(KEY)
    assert time.time() - _lease(store, KEY)["heartbeat"] < 60
    store.release(KEY)
    assert _lease(store, KEY) is None


def test_acquire_twice_from_the_same_process(store):
    # the same pid's lease counts as a leftover of this process (e.g. a retry), so it is taken again
    assert store.acquire(KEY)
    assert store.acquire(KEY)
    assert _lease(store, KEY)["pid"] == os.getpid()


@pytest.fixture
def other_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_other_process_keeps_its_lease_until_it_dies(store, other_process):
    held = _write_lease(store, KEY, pid=other_process.pid)
    assert not store.acquire(KEY)
    assert _lease(store, KEY) == held
    store.release(KEY)  # not ours: left alone
    store.heartbeat(KEY)
    assert _lease(store, KEY) == held
    assert store.state(KEY).leased_by == held

    other_process.kill()
    other_process.wait()  # reaped: the pid is gone
    assert store.acquire(KEY)
    assert _lease(store, KEY)["pid"] == os.getpid()


def test_another_hosts_lease_is_respected_while_its_heartbeat_is_fresh(store):
    held = _write_lease(store, KEY, host="elsewhere.invalid", pid=1, heartbeat=time.time() - 5)
    assert not store.acquire(KEY, stale_after=600)
    assert _lease(store, KEY) == held


def test_an_old_heartbeat_is_taken_over(store):
    _write_lease(store, KEY, host="elsewhere.invalid", pid=1, heartbeat=time.time() - 3600)
    assert store.acquire(KEY, stale_after=600)
    assert _lease(store, KEY)["pid"] == os.getpid()


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]"])
def test_an_unreadable_lease_is_taken_over(store, content):
    store.run_dir(KEY).mkdir(parents=True)
    path = store.run_dir(KEY) / "lease.json"
    path.write_bytes(content)
    assert not store.acquire(KEY)  # just written: maybe a claim on a file system without links, mid-write
    old = time.time() - UNREADABLE_GRACE_S - 1
    os.utime(path, (old, old))
    assert store.acquire(KEY)  # old enough: garbage, nobody's
    assert _lease(store, KEY)["pid"] == os.getpid()


NO_LINKS = [errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS]


@pytest.mark.parametrize("err", NO_LINKS)
def test_leases_work_on_a_file_system_without_hard_links(store, other_process, monkeypatch, err):
    # Google Drive in Colab, SMB shares, exFAT: link() is refused, the claim is created exclusively
    def no_link(*a, **k):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "link", no_link)
    assert store.acquire(KEY)
    lease = _lease(store, KEY)
    assert (lease["pid"], lease["host"]) == (os.getpid(), socket.gethostname())
    assert not [p for p in store.run_dir(KEY).iterdir() if p.name.startswith(".")]  # no claim file left
    store.release(KEY)
    held = _write_lease(store, KEY, pid=other_process.pid)  # a live holder is respected
    assert not store.acquire(KEY) and _lease(store, KEY) == held
    other_process.kill()
    other_process.wait()
    assert store.acquire(KEY) and _lease(store, KEY)["pid"] == os.getpid()  # a dead one taken over


def test_other_link_errors_are_not_mistaken_for_a_missing_feature(store, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(OSError, match="No space"):
        store.acquire(KEY)
    assert not [p for p in store.run_dir(KEY).iterdir()]  # its claim file is removed


def test_a_lease_that_is_not_an_object_is_nobodys(store):
    store.write_error(KEY, "RuntimeError: boom")
    (store.run_dir(KEY) / "lease.json").write_text("[1, 2]")
    st = store.state(KEY)
    assert (st.status, st.leased_by) == ("failed", None)
    store.clear_error(KEY)
    assert store.state(KEY).leased_by is None


def test_a_new_lease_is_never_seen_half_written(store, monkeypatch):
    # the claim is complete before its name appears: link() of a fully written private file
    seen = []
    real_link = os.link

    def spy(src, dst, *a, **k):
        seen.append(json.loads(Path(src).read_text()))
        return real_link(src, dst, *a, **k)

    monkeypatch.setattr(os, "link", spy)
    assert store.acquire(KEY)
    assert seen and seen[0]["pid"] == os.getpid()
    assert not [p for p in store.run_dir(KEY).iterdir() if p.name.startswith((".lease.", ".claim."))]  # no leftovers


def test_only_one_of_two_racers_takes_over_a_stale_lease(store, monkeypatch):
    # racer B judges the same stale lease, but A renames it aside and links its own first
    _write_lease(store, KEY, host="gone-host", pid=1, heartbeat=0.0)
    lease = store.run_dir(KEY) / "lease.json"
    real_rename = os.rename
    state = {"raced": False}

    def rename_after_a_wins(src, dst):
        if not state["raced"] and Path(src) == lease:
            state["raced"] = True
            real_rename(src, str(dst) + ".a")  # A moved the stale lease aside ...
            _write_lease(store, KEY, host="host-a", pid=424242)  # ... and now holds a fresh one
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_a_wins)
    assert store.acquire(KEY) is False  # B lost: A's fresh lease is left (or put back) in place
    assert json.loads(lease.read_text())["host"] == "host-a"


def test_prune_keeps_only_the_final_checkpoint(store):
    store.save_checkpoint(KEY, _ckpt(1))
    store.save_checkpoint(KEY, _ckpt(2))
    store.prune_checkpoints(KEY)
    names = {p.name for p in store.run_dir(KEY).iterdir()}
    assert "ckpt.pt" in names and "ckpt.prev.pt" not in names


def _killed_after_its_result(store, lease_pid: int) -> None:
    """A finished run as a holder killed between result.json and its lease release leaves it."""
    store.save_checkpoint(KEY, _ckpt(2))
    store.save_checkpoint(KEY, _ckpt(3))  # ckpt.prev.pt stays: pruning comes after the result
    store.write_result(KEY, result())
    _write_lease(store, KEY, pid=lease_pid)
    (store.run_dir(KEY) / ".history.json.abc123.tmp").write_text("[")  # a killed writer's temp file
    (store.run_dir(KEY) / ".claim.def456.tmp").write_text("{}")  # maybe a live claimant's: never touched
    (store.run_dir(KEY) / ".lease.json.ghi789.tmp").write_text("")  # the dead holder's heartbeat


def test_tidy_clears_what_a_dead_holder_left_in_a_finished_run(store, other_process):
    other_process.kill()
    other_process.wait()  # its pid is now dead on this host
    _killed_after_its_result(store, other_process.pid)
    assert store.tidy_finished(KEY)
    assert names(store.run_dir(KEY)) == sorted([".claim.def456.tmp", "ckpt.pt", "result.json"])
    assert store.state(KEY).status == "done" and store.read_result(KEY) == result()
    assert not store.tidy_finished(KEY)  # nothing left to clear: not even a lease is taken


def test_tidy_leaves_a_live_holders_run_alone(store, other_process):
    _killed_after_its_result(store, other_process.pid)  # alive: it may still be writing
    before = names(store.run_dir(KEY))
    assert not store.tidy_finished(KEY)
    assert names(store.run_dir(KEY)) == before and _lease(store, KEY)["pid"] == other_process.pid


def test_tidy_never_touches_an_unfinished_run(store, other_process):
    other_process.kill()
    other_process.wait()
    store.save_checkpoint(KEY, _ckpt(1))
    store.save_checkpoint(KEY, _ckpt(2))
    _write_lease(store, KEY, pid=other_process.pid)
    assert not store.tidy_finished(KEY)
    assert {"ckpt.pt", "ckpt.prev.pt"} <= set(names(store.run_dir(KEY)))  # its fallback checkpoint is kept


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_files_follow_the_umask_like_any_new_file(tmp_path, umask):
    # mkstemp makes 0600 files; a lab group sharing a run store (and whoever reads the handed-in
    # report) needs what `open()` would give: 0666 less the umask
    script = (f"import os, stat, sys; os.umask({umask:#o})\n"
              "from pathlib import Path\n"
              "from labreport.store import RunStore, atomic_write_bytes\n"
              f"root = Path({str(tmp_path)!r})\n"
              "atomic_write_bytes(root / 'report.pdf', b'%PDF')\n"
              f"s = RunStore(root / 'runs'); assert s.acquire({KEY!r})\n"
              f"print(oct(stat.S_IMODE((root / 'report.pdf').stat().st_mode)), "
              f"oct(stat.S_IMODE((s.run_dir({KEY!r}) / 'lease.json').stat().st_mode)))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    want = oct(0o666 & ~umask)
    assert out.stdout.split() == [want, want], out.stdout
