"""Fused training (bench/fused.py) against the same runs trained one at a time: images/s, side by side.

    python bench/bench_fused.py [--set resnet20-reg] [--members K] [--steps 5] [--warmup 2] [--rounds 3]
                                [--alone K] [--device auto|cpu|cuda] [--data DIR] [--train-images N]
                                [--batch B] [--compile false|true|reduce-overhead] [--threads N] [--json OUT]

Members: the runs of the lab's experiment `--set` (experiments.toml, no profile), the first K of them.
Each round times, in rotated order:
  fused   one FusedRun of the K members: `--warmup` steps (the first holds cuDNN's autotuning and,
          with --compile, the compile), then `--steps` steps, timed to the device's end;
  alone   the first `--alone` members one after another through labreport's own trainer
          (trainer.measure_speed: the trainer's set-up, one warm-up step, `--steps` timed steps, eager
          or with --compile), as `labreport run` trains them at --jobs 1.
The ratio fused / alone compares images per second over all members: what training them fused
saves over training them one after another. The precision is the runs' own, "auto" resolved as
the trainer resolves it (bf16 on an H100/H200, fp32 on a CPU). Data: the training split of --data
(cifar-10-batches-py, cut as the trainer cuts it, or --train-images of it), else random images (the
speed does not depend on the pixels). On a CPU each round also records the CPU share other
processes took meanwhile (bench_train.CpuMeter): a busy neighbour slows either side several times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from labreport.engine.device import RunOptions, compile_mode, cudagraph_skips, device_name, resolve_device
from labreport.engine.precision import resolve_precision
from labreport.engine.splits import Split

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings, also when loaded by a test
from fused import FusedRun, member_specs


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="resnet20-reg", help="an experiment of experiments.toml (default resnet20-reg)")
    ap.add_argument("--members", type=int, default=0, help="its first K runs (0: all)")
    ap.add_argument("--steps", type=int, default=5, help="timed optimizer steps per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them (the first: autotuning, compile)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--alone", type=int, default=-1, help="members timed alone (-1: all, 0: none)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", type=Path, help="folder holding cifar-10-batches-py (default: random images)")
    ap.add_argument("--train-images", type=int, default=0, help="training images taken from --data (0: the split)")
    ap.add_argument("--batch", type=int, default=0, help="batch size (0: the runs' own)")
    ap.add_argument("--compile", default="false", choices=("false", "true", "reduce-overhead"))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", type=Path)
    return ap.parse_args(argv)


def members(args) -> list:
    specs = member_specs(args.set)
    specs = specs[:args.members] if args.members else specs
    return [dataclasses.replace(s, batch_size=args.batch) if args.batch else s for s in specs]


def training_split(args, spec, device: torch.device) -> Split:
    """The runs' training split on the device: from --data as the trainer cuts it, or random images."""
    if args.data is None:
        n = args.train_images or spec.batch_size * (args.warmup + args.steps)
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
        return Split(x.to(device), torch.randint(0, 10, (n,), generator=gen).to(device), (0.5,) * 3, (0.25,) * 3)
    from labreport.engine.datasets import load as load_data
    from labreport.engine.splits import prepare

    data = load_data(args.data, download=False)
    val = spec.val_size if spec.val_size < len(data.train_y) // 2 else 0  # a toy data set: no validation
    return prepare(data, dataclasses.replace(spec, val_size=val, train_subset=args.train_images), device).train


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fused(specs: list, train: Split, device: torch.device, args) -> dict:
    """One FusedRun: build, warm-up, timed steps; images/s per member, peak memory, frozen members."""
    mode = compile_mode({"false": False, "true": True}.get(args.compile, args.compile))
    precision = resolve_precision(specs[0].precision, device, specs[0].norm)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    skips0, t0 = cudagraph_skips(), time.perf_counter()
    run = FusedRun(specs, train, device, precision=precision, compile_mode=mode)
    build = time.perf_counter() - t0
    firsts = []
    for _ in range(args.warmup):
        t0 = time.perf_counter()
        run.step()
        sync(device)
        firsts.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        run.step()
    sync(device)
    wall = time.perf_counter() - t0
    mib = 2 ** 20
    skips = cudagraph_skips()
    return {"members": run.n, "batch": run.spec.batch_size, "precision": precision, "compile": mode or False,
            "build_s": build, "warmup_s": firsts, "s_per_step": wall / args.steps,
            "images_per_s_per_member": run.spec.batch_size * args.steps / wall,
            "images_per_s": run.n * run.spec.batch_size * args.steps / wall,
            "alive": int(run.alive.sum()), "cudagraph_skips": None if skips is None or skips0 is None
            else skips - skips0,
            "peak_mem_alloc_mib": torch.cuda.max_memory_allocated(device) / mib if device.type == "cuda" else None,
            "peak_mem_reserved_mib": torch.cuda.max_memory_reserved(device) / mib if device.type == "cuda" else None}


def time_alone(specs: list, device: torch.device, args) -> dict:
    """Each member through the trainer's own steps, one after another: images/s over all of them."""
    from labreport.engine.trainer import measure_speed

    options = RunOptions(compile={"false": False, "true": True}.get(args.compile, args.compile))
    per_image = [measure_speed(s, device, num_classes=10, options=options, steps=args.steps)[0] for s in specs]
    return {"members": len(specs), "seconds_per_image": per_image, "images_per_s": len(specs) / sum(per_image)}


def one_round(specs: list, train: Split, device: torch.device, args, r: int) -> dict:
    if device.type == "cpu":
        from bench_train import CpuMeter
    order = ["fused", "alone"] if args.alone else ["fused"]
    alone = specs[:args.alone] if args.alone > 0 else specs
    out: dict = {}
    for kind in order[r % len(order):] + order[:r % len(order)]:  # rotated: neither always goes first
        meter = CpuMeter() if device.type == "cpu" else None
        out[kind] = time_fused(specs, train, device, args) if kind == "fused" else time_alone(alone, device, args)
        out[kind]["others_cpu_share"] = meter.others() if meter else None
    if "alone" in out:
        out["ratio"] = out["fused"]["images_per_s"] / out["alone"]["images_per_s"]
    return out


def round_line(r: int, rnd: dict) -> str:
    f = rnd["fused"]
    warm = ", ".join(f"{s:.1f}" for s in f["warmup_s"])
    line = (f"round {r + 1}: fused {f['members']} x batch {f['batch']} ({f['precision']}, compile {f['compile']}): "
            f"{f['s_per_step']:.3f} s/step, {f['images_per_s']:.1f} img/s ({f['images_per_s_per_member']:.1f} per "
            f"member), warm-up {warm} s, {f['alive']} of {f['members']} members finite")
    if "alone" in rnd:
        a = rnd["alone"]
        line += f"; alone, {a['members']} one after another: {a['images_per_s']:.1f} img/s; x{rnd['ratio']:.2f}"
    shares = [rnd[k]["others_cpu_share"] for k in ("fused", "alone") if k in rnd and rnd[k]["others_cpu_share"]]
    return line + (f"; others' CPU share {', '.join(f'{100 * x:.0f}%' for x in shares)}" if shares else "")


BUSY = 0.10  # a round where other processes took more of the CPU than this is contended


def summary(rounds: list[dict]) -> dict:
    """Medians over rounds: fused images/s (total and per member), alone, and their ratio; and the
    ratio over the quiet rounds alone (others under BUSY during both measurements; CPU only)."""
    def med(kind: str, key: str) -> float | None:
        vals = [r[kind][key] for r in rounds if kind in r]
        return statistics.median(vals) if vals else None

    return {"fused_images_per_s": med("fused", "images_per_s"),
            "fused_images_per_s_per_member": med("fused", "images_per_s_per_member"),
            "alone_images_per_s": med("alone", "images_per_s"),
            "ratio": statistics.median([r["ratio"] for r in rounds]) if rounds and "ratio" in rounds[0] else None,
            "ratios": [r.get("ratio") for r in rounds], "quiet_ratios": [
                r["ratio"] for r in rounds if "ratio" in r and all(
                    (r[k]["others_cpu_share"] or 0) < BUSY for k in ("fused", "alone"))]}


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)  # this process only: a script, not a library call
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as the trainer: autotuned convolutions
    specs = members(args)
    train = training_split(args, specs[0], device)
    info = {"set": args.set, "device": device_name(device), "torch": torch.__version__, "threads":
            torch.get_num_threads(), "command": " ".join(["bench/bench_fused.py", *sys.argv[1:]]),
            "train_images": len(train.y), "date": time.strftime("%Y-%m-%d")}
    print(f"bench_fused: {info}", flush=True)
    rounds = []
    for r in range(args.rounds):
        rounds.append(one_round(specs, train, device, args, r))
        print(round_line(r, rounds[-1]), flush=True)
    result = {"info": info, "rounds": rounds, "summary": summary(rounds)}
    s = result["summary"]
    print(f"median: fused {s['fused_images_per_s']:.1f} img/s ({s['fused_images_per_s_per_member']:.1f} per member)"
          + (f", alone {s['alone_images_per_s']:.1f} img/s, fused / alone x{s['ratio']:.2f}" if s["ratio"] else "")
          + (f"; quiet rounds (others < {BUSY:.0%} of the CPU): x{', x'.join(f'{q:.2f}' for q in s['quiet_ratios'])}"
             if s["quiet_ratios"] else ""))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
