"""Training throughput of labreport's trainer against the common PyTorch loop and the bare model step.

    python bench/bench_train.py [--data DIR] [--images N] [--batch 128] [--rounds 3]
                                [--device auto|cpu|cuda] [--workers 2] [--json OUT]

Measured side by side on one machine: every round times each method once, in a rotated order
(A B C D E, B C D E A, ...), and the table shows the median over rounds (the machine is noisy; a
ratio of two numbers taken minutes apart on a shared box means little). Each measurement runs in a
fresh Python process, as each method would in real life: process-wide settings (the trainer's host
allocator, oneDNN caches, a forked DataLoader's leftovers) never leak from one method into another.
Each measurement also records how much CPU other processes took meanwhile (/proc/stat): on 2 cores
one busy neighbour slows any torch training ~3x, so a contended round is reported but replaced by
an extra one while --max-rounds and --budget allow, and the figures come from the quiet rounds when
there are any. ResNet-20, batch 128, Adam, augmentation on, over the same N training images:

  labreport       labreport.engine.trainer.train, lab defaults (channels_last, fp32 on CPU / bf16 on CUDA,
                  host allocator tuned by the trainer itself on the CPU, see labreport/engine/hostmem.py),
                  two epochs in a fresh temporary run store; the images/s the trainer records itself
                  for the second (training only) and the wall clock of the whole train() call (build,
                  epochs, evaluation, checkpoints) so nothing hides.
  reference       the common style: torchvision CIFAR10 + RandomCrop/Flip/ToTensor/Normalize,
                  DataLoader(num_workers=2, shuffle), NCHW fp32, loss.item() every step; the C
                  library's default allocator, as a plain script has; two epochs, the second timed
                  (its DataLoader start-up included: every epoch pays it).
  bare            forward + backward + Adam step on one fixed, already normalised batch: no data
                  path at all. "bare, channels_last" runs with the same process setup as the trainer
                  (tuned allocator on the CPU): the compute limit. Also shown, for the breakdown:
                  channels_last with the default allocator, and NCHW with the default allocator.

Targets: labreport >= 1.5x reference and >= 0.9x bare (channels_last). Last, the wall
time of `labreport run` when every run is already done (target < 1 s, no torch, no data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from labreport.engine import hostmem
from labreport.spec import TrainSpec
from labreport.engine.data import MEAN, STD, split_train_val, subset_indices
from labreport.engine.datasets import load as load_data
from labreport.testing import write_synthetic_cifar10
from labreport.engine.networks import build_model
from labreport.store import RunStore
from labreport.engine.precision import autocast, grad_scaler
from labreport.engine.device import RunOptions, resolve_device
from labreport.engine.precision import resolve_precision
from labreport.engine.splits import SPLIT_SEED, prepare
from labreport.engine.observe import Observer
from labreport.engine.trainer import train

MODEL = "resnet20"
LR = 1e-4  # the lab's Adam learning rate (experiments.toml [defaults])
EPOCHS = 2  # per measurement of labreport and the reference; the last is measured, the first warms up
VAL_SIZE = 256  # evaluation is not what is measured: small splits keep the epoch's wall honest but short
TEST_SUBSET = 256
TARGET_VS_REFERENCE = 1.5
TARGET_VS_BARE = 0.9
TARGET_NOOP_S = 1.0
REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO.parent / "shared" / "data" / "build_cifar10.py"


# ---------------------------------------------------------------------------------------- setup
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="folder holding cifar-10-batches-py (default ./data)")
    p.add_argument("--images", type=int, default=2048, help="training images per measurement (default 2048)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3, help="quiet interleaved rounds wanted; the median is reported")
    p.add_argument("--busy", type=float, default=0.10,
                   help="a round counts as contended when other processes used more than this share of the CPUs "
                        "during any of its measurements (default 0.10)")
    p.add_argument("--max-rounds", type=int, default=None,
                   help="rounds at most, contended ones replaced (default 2 x --rounds)")
    p.add_argument("--budget", type=float, default=600.0,
                   help="seconds after which no extra round is started to replace a contended one "
                        "(default 600; a round takes ~90 s on a 2-core CPU)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda[:N]")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference loop")
    p.add_argument("--noop-reps", type=int, default=5, help="timed `labreport run` calls per command")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the figures as JSON")
    p.add_argument("--one", choices=CHILD_METHODS, help=argparse.SUPPRESS)  # child: one measurement
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device, precision: str) -> dict:
    info = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "precision_labreport": precision}
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def ensure_data(root: Path, n_needed: int) -> tuple[Path, str]:
    """root holding cifar-10-batches-py: as found, built from ../shared, or synthetic (with a note)."""
    if (root / "cifar-10-batches-py").is_dir():
        return root, "CIFAR-10 from " + str(root)
    if BUILD_SCRIPT.is_file():
        print(f"building CIFAR-10 into {root} with {BUILD_SCRIPT} ...", flush=True)
        subprocess.run([sys.executable, str(BUILD_SCRIPT), str(root)], check=True)
        return root, f"CIFAR-10 built by {BUILD_SCRIPT.name} into {root}"
    write_synthetic_cifar10(root, n_train=max(n_needed, 1000), n_test=max(TEST_SUBSET, 100))
    return root, f"NOTE: no CIFAR-10 and no build script: synthetic look-alike written to {root}"


class CpuMeter:
    """Share of the machine's CPU time used by anyone but this process (and its finished children).

    /proc/stat counts every CPU's busy ticks (steal included: a hypervisor's other guests); os.times
    counts ours. A measurement taken while others were busy is slower for reasons that are not ours:
    with OpenMP threads on every core, a second busy process can slow training by several times.
    """

    def __init__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy() -> float | None:
        try:
            f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def others(self) -> float | None:
        busy = self._busy()
        wall = time.perf_counter() - self.t0
        if busy is None or self.busy0 is None or wall <= 0:
            return None
        return max(0.0, (busy - self.busy0) - (self._own() - self.own0)) / (wall * (os.cpu_count() or 1))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lab_spec(n: int, batch: int, seed: int, epochs: int = 1) -> TrainSpec:
    """The lab's defaults (Adam 1e-4, augment, precision auto) over n images."""
    return TrainSpec(model=MODEL, epochs=epochs, batch_size=batch, optimizer="adam", lr=LR, augment=True,
                     val_size=VAL_SIZE, train_subset=n, test_subset=TEST_SUBSET, seed=seed)


def train_indices(n_total: int, n: int) -> torch.Tensor:
    """The very images labreport's prepare() trains on for train_subset=n."""
    train_idx, _ = split_train_val(n_total, VAL_SIZE, SPLIT_SEED)
    return train_idx[subset_indices(len(train_idx), n, SPLIT_SEED)]


def minor_faults() -> int:
    """Zero-filled pages the kernel handed this process so far (the cost hostmem.py removes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ------------------------------------------------------------------------------------ methods
class FaultMarks(Observer):
    """The process's minor page faults at the end of each epoch (after its checkpoint)."""

    def __init__(self, marks: dict):
        self.marks = marks

    def epoch_done(self, record: dict) -> None:
        self.marks[record["epoch"]] = minor_faults()


def run_labreport(prepared, n: int, batch: int, device: torch.device, seed: int) -> dict:
    """Two epochs in one train() call; the figures are the second's (the trainer records its own
    images/s per epoch), the wall is the whole call's, evaluation and checkpoints included."""
    marks = {}
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:  # fresh store: never resumes
        sync(device)
        f0, t0 = minor_faults(), time.perf_counter()
        result = train(lab_spec(n, batch, seed, EPOCHS), prepared, device, RunStore(tmp), options=RunOptions(),
                       observer=FaultMarks(marks))
        sync(device)
        wall = time.perf_counter() - t0
        hist = RunStore(tmp).read_history(result["key"])
    h, steps = hist[-1], n // batch
    return {"images_per_s": h["images_per_s"], "train_time_s": h["train_time_s"],
            "epoch_time_s": h["epoch_time_s"], "first_epoch_images_per_s": hist[0]["images_per_s"],
            "call_wall_s": wall, "wall_images_per_s": EPOCHS * steps * batch / wall,
            "faults_per_step": (marks[EPOCHS] - marks[EPOCHS - 1]) / steps,  # its evaluation and checkpoint too
            "first_epoch_faults_per_step": (marks[1] - f0) / steps,
            "host_malloc": result["provenance"]["host_malloc"]}


def _cifar10_from_arrays(data_hwc, targets, transform):
    """torchvision's CIFAR10 over arrays already loaded: its item path (HWC uint8 -> PIL -> transform).

    Used only when torchvision's constructor refuses the files (it checks the md5 of the official
    download, so a rebuilt copy such as ../shared's is "corrupted" to it). __getitem__ is still
    torchvision's, so the per-image work is exactly the common loop's.
    """
    from torchvision.datasets import CIFAR10

    ds = CIFAR10.__new__(CIFAR10)  # skip __init__ (the md5 check and the unpickling), keep the methods
    ds.root, ds.train, ds.transform, ds.target_transform = "", True, transform, None
    ds.data, ds.targets = data_hwc, targets
    return ds


def make_reference_dataset(root: Path, data) -> tuple[object, str]:
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    try:
        return datasets.CIFAR10(str(root), train=True, download=False, transform=tf), "torchvision CIFAR10"
    except (RuntimeError, KeyError) as e:
        hwc = data.train_x.permute(0, 2, 3, 1).contiguous().numpy()
        note = (f"torchvision CIFAR10 refused {root} ({e}); its __getitem__ is used over the same "
                "arrays (HWC uint8 -> PIL -> transforms)")
        return _cifar10_from_arrays(hwc, data.train_y.tolist(), tf), note


def run_reference(dataset, indices: torch.Tensor, batch: int, device: torch.device, workers: int,
                  seed: int) -> dict:
    from torch.utils.data import DataLoader, Subset

    torch.manual_seed(seed)
    loader = DataLoader(Subset(dataset, indices.tolist()), batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=True, pin_memory=device.type == "cuda")
    model = build_model(MODEL).to(device)  # NCHW fp32
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    epochs = []
    for _ in range(EPOCHS):
        running, correct, seen = 0.0, 0, 0
        sync(device)
        f0, t0 = minor_faults(), time.perf_counter()  # each epoch as the common loop pays it: worker start-up included
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
        sync(device)
        dt = time.perf_counter() - t0
        epochs.append({"images_per_s": seen / dt, "train_time_s": dt,
                       "faults_per_step": (minor_faults() - f0) / (seen // batch)})
    return {**epochs[-1], "first_epoch_images_per_s": epochs[0]["images_per_s"],
            "first_epoch_faults_per_step": epochs[0]["faults_per_step"], "host_malloc": hostmem.setting()}


def run_bare(n: int, batch: int, device: torch.device, channels_last: bool, precision: str, seed: int) -> dict:
    torch.manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(MODEL).to(device).to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)  # already normalised
    y = torch.randint(0, 10, (batch,), device=device)
    scaler = grad_scaler(device, precision)  # fp16 (auto on a T4/V100): the trainer's loss scaling
    model.train()
    steps = n // batch
    sync(device)
    f0, t0 = minor_faults(), time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            out = model(x)
        scaler.scale(F.cross_entropy(out.float(), y)).backward()
        scaler.step(opt)
        scaler.update()
    sync(device)
    dt = time.perf_counter() - t0
    return {"images_per_s": steps * batch / dt, "train_time_s": dt, "faults_per_step": (minor_faults() - f0) / steps,
            "host_malloc": hostmem.setting()}


# ------------------------------------------------------------------------------ labreport run no-op
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)\s*$")


def _timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - t0, proc


def bench_noop(data_root: Path, device: str, reps: int) -> dict:
    """Train a tiny matrix once, then time `labreport run` with nothing left to do."""
    with tempfile.TemporaryDirectory(prefix="bench-noop-") as tmp:
        tmp = Path(tmp)
        (tmp / "experiments.toml").write_text(
            "[data]\n"
            f"root = {json.dumps(str(data_root.resolve()))}\n"
            "download = false\n"
            "[store]\nroot = \"runs\"\n"
            "[gradflow]\nenabled = false\n"  # the no-op path of training only
            "[defaults]\nepochs = 1\nbatch_size = 128\ntrain_subset = 256\nval_size = 128\ntest_subset = 128\n"
            "[[experiment]]\nname = \"tiny\"\nmodel = \"resnet20\"\n")
        env = {k: v for k, v in os.environ.items() if k not in ("LABREPORT_DATA", "LABREPORT_RUNS")}
        args = ["-c", str(tmp / "experiments.toml"), "run", "--device", device]
        first_s, proc = _timed([sys.executable, "-m", "labreport", *args], env, tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"the tiny `labreport run` failed (rc {proc.returncode}):\n{proc.stdout}{proc.stderr}")
        # From here on a data load would fail loudly: the data root points nowhere and download is off.
        env["LABREPORT_DATA"] = str(tmp / "no-data-here")
        commands = {"python -m labreport": [sys.executable, "-m", "labreport"]}
        script = Path(sys.executable).parent / "labreport"
        if script.is_file() and os.access(script, os.X_OK):
            commands["labreport (console script)"] = [str(script)]
        _timed([sys.executable, "-c", "pass"], env, tmp)  # warm the page cache for the floor below
        times: dict[str, list[float]] = {name: [] for name in commands}
        floor = []
        outputs = set()
        for _ in range(reps):  # interleaved, like the throughput rounds
            floor.append(_timed([sys.executable, "-c", "pass"], env, tmp)[0])
            for name, cmd in commands.items():
                dt, p = _timed([*cmd, *args], env, tmp)
                if p.returncode != 0:
                    raise RuntimeError(f"no-op `{name} run` failed (rc {p.returncode}):\n{p.stdout}{p.stderr}")
                times[name].append(dt)
                outputs.add(p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "")
        _, p = _timed([sys.executable, "-X", "importtime", "-m", "labreport", *args], env, tmp)
        mods = [(m.group(4), int(m.group(2)), len(m.group(3))) for m in map(IMPORT_LINE.match, p.stderr.splitlines())
                if m]
        torch_mods = sorted({name for name, _, _ in mods if name == "torch" or name.startswith("torch.")})
        top = sorted(((us, name) for name, us, depth in mods if depth == 1), reverse=True)[:4]
    return {"first_run_s": first_s, "python_floor_s": statistics.median(floor),
            "median_s": {k: statistics.median(v) for k, v in times.items()}, "times_s": times,
            "output": sorted(outputs), "torch_imported": bool(torch_mods), "torch_modules": torch_mods[:5],
            "modules_imported": len(mods), "top_imports_ms": [(n, us / 1000) for us, n in top],
            "data_loaded": False}  # it would have raised: LABREPORT_DATA pointed at a missing folder


# -------------------------------------------------------------------------------------- report
def _pct(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:.0f}%"


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


CHILD_METHODS = ["labreport", "reference", "bare_cl", "bare_cl_default", "bare_nchw"]  # one process each
DEFAULT_ALLOCATOR = {"reference", "bare_cl_default", "bare_nchw"}  # run with LABREPORT_HOST_MALLOC=default
METHODS = {  # key -> (label, the field of a round's record that holds its images/s)
    "labreport": ("labreport trainer (recorded: training only)", "images_per_s"),
    "labreport_wall": ("labreport trainer (wall of the train() call)", "wall_images_per_s"),
    "reference": ("reference loop (torchvision + DataLoader)", "images_per_s"),
    "bare_cl": ("bare step, channels_last (the compute limit)", "images_per_s"),
    "bare_cl_default": ("bare step, channels_last, default allocator", "images_per_s"),
    "bare_nchw": ("bare step, NCHW, default allocator", "images_per_s"),
}
RATIOS = {  # name -> (label, numerator, denominator, target or None)
    "labreport_vs_reference": ("labreport / reference", "labreport", "reference", TARGET_VS_REFERENCE),
    "labreport_vs_bare": ("labreport / bare (channels_last)", "labreport", "bare_cl", TARGET_VS_BARE),
    "labreport_wall_vs_reference": ("labreport wall / reference", "labreport_wall", "reference", None),
}
BREAKDOWN = [  # labreport / reference as a product of four measured steps, each a ratio of neighbours
    ("data path (bare NCHW / reference)", "bare_nchw", "reference"),
    ("channels_last (bare CL / bare NCHW, default allocator)", "bare_cl_default", "bare_nchw"),
    ("host allocator (bare CL tuned / default)", "bare_cl", "bare_cl_default"),
    ("trainer overhead (labreport / bare CL)", "labreport", "bare_cl"),
]


def _ips(rec: dict, key: str) -> float:
    return rec["labreport" if key == "labreport_wall" else key][METHODS[key][1]]


def summarize(rounds: list[dict]) -> dict:
    """Medians over rounds, and each ratio as the median of its per-round ratios: the two numbers
    of a ratio were taken a minute apart, so they shared most of whatever load the machine had."""
    s: dict = {"images_per_s": {}, "best_images_per_s": {}, "ratios": {}, "round_ratios": {}, "targets": {},
               "met": {}}
    for key in METHODS:
        vals = [_ips(r, key) for r in rounds]
        s["images_per_s"][key], s["best_images_per_s"][key] = statistics.median(vals), max(vals)
    for name, (_, num, den, target) in RATIOS.items():
        per_round = [_ratio(_ips(r, num), _ips(r, den)) for r in rounds]
        s["round_ratios"][name] = per_round
        s["ratios"][name] = statistics.median(per_round)
        if target is not None:
            s["targets"][name], s["met"][name] = target, s["ratios"][name] >= target
    s["breakdown"] = {label: statistics.median(_ratio(_ips(r, num), _ips(r, den)) for r in rounds)
                      for label, num, den in BREAKDOWN}
    s["faults_per_step"] = {k: statistics.median(r[k]["faults_per_step"] for r in rounds) for k in CHILD_METHODS}
    others = [r[k]["others_cpu"] for r in rounds for k in METHODS if k in r and r[k]["others_cpu"] is not None]
    s["others_cpu_median"] = statistics.median(others) if others else None
    s["others_cpu_max"] = max(others) if others else None
    return s


def print_table(s: dict, rounds: list[dict], workers: int) -> None:
    def secs(method, field):
        return statistics.median(r[method][field] for r in rounds)

    seconds = {k: secs(k, "train_time_s") for k in CHILD_METHODS}
    seconds["labreport_wall"] = secs("labreport", "call_wall_s") / EPOCHS
    print(f"\n{'method':<50} {'img/s':>8} {'best':>8} {'worst':>8} {'s/epoch':>8} {'faults/step':>12}")
    for key, (label, _) in METHODS.items():
        if key == "reference":
            label = label[:-1] + f", {workers} workers)"
        worst = min(_ips(r, key) for r in rounds)
        faults = f"{s['faults_per_step'][key]:>12.0f}" if key in s["faults_per_step"] else ""
        print(f"{label:<50} {s['images_per_s'][key]:>8.1f} {s['best_images_per_s'][key]:>8.1f} {worst:>8.1f} "
              f"{seconds[key]:>8.2f} {faults}")
    ev = statistics.median(r["labreport"]["epoch_time_s"] - r["labreport"]["train_time_s"] for r in rounds)
    print(f"  img/s: median over rounds; s/epoch: median seconds for the measured images (labreport's wall: the "
          f"call / {EPOCHS} epochs). labreport's wall includes model build,\n"
          f"  evaluation ({ev:.2f} s for {VAL_SIZE} val + {TEST_SUBSET} test images) "
          "and the checkpoint; its recorded figure is training only.\n  faults/step: minor page faults "
          "of the measuring process per step of the measured epoch (labreport: its evaluation and checkpoint "
          "included;\n  the reference's DataLoader workers not counted).")
    first = {k: statistics.median(r[k]["first_epoch_images_per_s"] for r in rounds) for k in ("labreport", "reference")}
    print(f"  first epoch of a fresh process (not in the ratios): labreport {first['labreport']:.1f}, "
          f"reference {first['reference']:.1f} img/s")
    malloc = rounds[0]["labreport"].get("host_malloc")
    print("  labreport's host allocator (as its trainer set it): "
          + (f"glibc mmap threshold {malloc['mmap_threshold'] >> 20} MiB, trim threshold "
             f"{malloc['trim_threshold'] >> 20} MiB" if malloc else "the C library's defaults"))
    print()
    for name, (label, _, _, target) in RATIOS.items():
        verdict = f"target >= {target}x  {_verdict(s['met'][name])}" if target else "(information)"
        rounds_txt = ", ".join(f"{v:.2f}" for v in s["round_ratios"][name])
        print(f"{label:<34} {s['ratios'][name]:5.2f}x   {verdict:<22} per round: {rounds_txt}")
    print("\nwhere labreport / reference comes from (in each round these four factors multiply to exactly that "
          "round's ratio;\nshown: each factor's median over rounds, whose product need not equal the median ratio):")
    for label, value in s["breakdown"].items():
        print(f"  {label:<58} {value:5.2f}x")
    if s["others_cpu_median"] is not None:
        print(f"\nCPU taken by other processes during these rounds' measurements: "
              f"median {_pct(s['others_cpu_median'])}, "
              f"max {_pct(s['others_cpu_max'])}")


def print_noop(n: dict) -> None:
    print("\n`labreport run` with every run already done (tiny matrix, trained once first "
          f"in {n['first_run_s']:.1f} s):")
    for name, med in n["median_s"].items():
        times = ", ".join(f"{t:.2f}" for t in n["times_s"][name])
        print(f"  {name:<28} median {med:.3f} s  target < {TARGET_NOOP_S:g} s  {_verdict(med < TARGET_NOOP_S)}"
              f"   ({times})")
    print(f"  python -c pass (floor)       median {n['python_floor_s']:.3f} s")
    torch_note = f"YES ({', '.join(n['torch_modules'])})" if n["torch_imported"] else "no"
    print(f"  torch imported: {torch_note}   data loaded: no (LABREPORT_DATA pointed at a missing folder)   "
          f"modules imported: {n['modules_imported']}")
    print("  slowest top-level imports: " + ", ".join(f"{m} {ms:.0f} ms" for m, ms in n["top_imports_ms"]))
    print(f"  its output: {' | '.join(n['output'])}")


def measure_rounds(methods: dict, n: int, want: int, max_rounds: int, busy: float, budget: float,
                   t_start: float) -> list[dict]:
    """Rounds of every method in rotated order until `want` are quiet (or max_rounds, or the budget)."""
    names = list(methods)
    rounds: list[dict] = []
    while len(rounds) < max_rounds:
        quiet = [r for r in rounds if not r["contended"]]
        if len(quiet) >= want or (len(rounds) >= want and time.perf_counter() - t_start > budget):
            break
        i = len(rounds)
        order = names[i % len(names):] + names[:i % len(names)]
        rec = {}
        for name in order:
            meter = CpuMeter()
            rec[name] = methods[name](n, i)
            rec[name]["others_cpu"] = meter.others()
        rec["contended"] = any((rec[k]["others_cpu"] or 0.0) > busy for k in names)
        rounds.append(rec)
        print(f"round {i + 1} ({' '.join(order)}): "
              f"labreport {rec['labreport']['images_per_s']:.1f} (wall {rec['labreport']['wall_images_per_s']:.1f}), "
              f"reference {rec['reference']['images_per_s']:.1f}, bare CL {rec['bare_cl']['images_per_s']:.1f} "
              f"(default allocator {rec['bare_cl_default']['images_per_s']:.1f}), "
              f"bare NCHW {rec['bare_nchw']['images_per_s']:.1f} img/s; CPU taken by other processes: "
              + ", ".join(_pct(rec[k]["others_cpu"]) for k in names)
              + ("  CONTENDED" if rec["contended"] else ""), flush=True)
    return rounds


# ------------------------------------------------------------------------- one measurement, one process
RESULT_TAG = "BENCH-RESULT "


def one(args: argparse.Namespace) -> int:
    """Child mode: set up one method as a fresh process would, warm it up, measure, print the record."""
    device = resolve_device(args.device)
    precision = resolve_precision("auto", device)
    n, method, root = args.images, args.one, Path(args.data)
    t0 = time.perf_counter()
    data = load_data(root, download=False) if method in ("labreport", "reference") else None
    extra = {"load_s": time.perf_counter() - t0, "fingerprint": data.fingerprint if data else None}
    if method == "labreport":
        t0 = time.perf_counter()
        prepared = prepare(data, lab_spec(n, args.batch, 0), device)  # as the runner does: once, cached
        extra["prepare_s"] = time.perf_counter() - t0

        def fn(m, seed):
            return run_labreport(prepared, m, args.batch, device, seed)  # train() tunes the allocator itself
    elif method == "reference":
        dataset, extra["reference_note"] = make_reference_dataset(root, data)
        indices = train_indices(len(data.train_y), n)

        def fn(m, seed):
            return run_reference(dataset, indices[:m], args.batch, device, args.workers, seed)
    else:
        if method == "bare_cl" and device.type == "cpu":
            hostmem.keep_freed_memory()  # the trainer's process setup: the compute limit it can reach

        def fn(m, seed):
            return run_bare(m, args.batch, device, method != "bare_nchw",
                            precision if method != "bare_nchw" else "fp32", seed)
    if method.startswith("bare"):  # labreport and the reference warm up in their own first epoch
        t0 = time.perf_counter()
        fn(2 * args.batch, 1000)  # not counted: oneDNN/cuDNN kernel choice, the allocator's first steps
        extra["warmup_s"] = time.perf_counter() - t0
    rec = {**fn(n, args.seed), **extra}
    print(RESULT_TAG + json.dumps(rec), flush=True)
    return 0


def measure_child(method: str, n: int, seed: int, args: argparse.Namespace, data_root: Path) -> dict:
    env = dict(os.environ)
    if method in DEFAULT_ALLOCATOR:
        env[hostmem.OPT_OUT_ENV] = "default"  # as a plain script runs
    else:
        env.pop(hostmem.OPT_OUT_ENV, None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", method, "--seed", str(seed), "--images", str(n),
           "--batch", str(args.batch), "--data", str(data_root), "--device", args.device,
           "--workers", str(args.workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"measuring {method} failed (rc {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return json.loads(lines[-1][len(RESULT_TAG):])


# ---------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one:
        return one(args)
    t_start = time.perf_counter()
    device = resolve_device(args.device)
    precision = resolve_precision("auto", device)  # what the trainer uses under the lab's defaults
    n = (args.images // args.batch) * args.batch
    if n < args.batch:
        sys.exit(f"--images must be at least --batch ({args.batch})")
    info = machine_info(device, precision)
    data_root, data_note = ensure_data(Path(args.data), n + VAL_SIZE)

    print(f"labreport training benchmark: {MODEL}, batch {args.batch}, Adam lr {LR:g}, augmentation on, "
          f"{n} training images per measurement, {args.rounds} quiet interleaved rounds wanted (order rotated), "
          "median; every measurement in a fresh process: labreport and the reference measured on the second of "
          f"{EPOCHS} epochs, the bare steps after 2 warm-up steps")
    print(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, torch {info['torch']} "
          f"({info['torch_threads']} threads), torchvision {info['torchvision']}, python {info['python']}, "
          f"device {device}{' (' + info['gpu'] + ')' if 'gpu' in info else ''}")
    print(f"data: {data_note}")
    print(f"labreport: channels_last on, precision {precision} (lab defaults); reference: NCHW fp32, "
          f"{args.workers} DataLoader workers (the common choice; they share the {info['logical_cpus']} CPUs "
          "with the training threads), loss.item() per step", flush=True)

    methods = {name: (lambda m, seed, name=name: measure_child(name, m, seed, args, data_root))
               for name in CHILD_METHODS}
    max_rounds = args.max_rounds or 2 * args.rounds
    rounds = measure_rounds(methods, n, args.rounds, max_rounds, args.busy, args.budget, t_start)
    first = rounds[0]
    print(f"data in the measuring processes: fingerprint {first['labreport']['fingerprint']}; labreport load "
          f"{first['labreport']['load_s']:.2f} s + prepare {first['labreport']['prepare_s']:.2f} s "
          "(not in the figures)")
    if first["reference"]["reference_note"] != "torchvision CIFAR10":
        print(f"reference data: {first['reference']['reference_note']}")
    quiet = [r for r in rounds if not r["contended"]]
    used = quiet or rounds
    used_idx = [i for i, r in enumerate(rounds) if not r["contended"]] or list(range(len(rounds)))
    if quiet:
        print(f"figures below: the {len(quiet)} quiet round(s) of {len(rounds)} "
              f"(other processes <= {_pct(args.busy)} of the CPUs)")
    else:
        print(f"WARNING: all {len(rounds)} rounds were contended (other processes took > {_pct(args.busy)} of the "
              "CPUs): the figures below are low and their ratios noisy; rerun on a quiet machine")
    summary = summarize(used)
    summary["rounds_used"] = used_idx
    print_table(summary, used, args.workers)
    noop = bench_noop(data_root, "cpu" if device.type == "cpu" else args.device, args.noop_reps)
    print_noop(noop)
    total = time.perf_counter() - t_start
    print(f"\ntotal benchmark time {total:.0f} s")

    if args.json_out:
        out = {"machine": info, "settings": {"model": MODEL, "images": n, "batch": args.batch, "rounds": args.rounds,
                                             "busy": args.busy, "max_rounds": max_rounds,
                                             "workers": args.workers, "val_size": VAL_SIZE,
                                             "test_subset": TEST_SUBSET, "lr": LR},
               "data": {"note": data_note, "fingerprint": first["labreport"]["fingerprint"],
                        "reference": first["reference"]["reference_note"]},
               "rounds": rounds, "summary": summary, "noop": noop, "total_s": total}
        Path(args.json_out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"figures written to {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
