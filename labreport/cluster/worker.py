"""A --jobs worker: `python -m labreport.cluster.worker ...`, started by processes.py, one per job.

Not a command for users: it trains the runs of the parent's request that no other worker holds
(train_here, with `wait`: it takes over a run whose worker died), and leaves its outcome as JSON
where the parent reads it. Its output is its log (stdout and stderr both go to a file). SIGTERM,
which the parent sends to stop it, ends it as Ctrl-C would: the run's last checkpoint is kept and
its claim released.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labreport.cluster.executors import Console, Request, print_summary, sigterm_as_interrupt
from labreport.cluster.local import train_here
from labreport.config import load_config
from labreport.errors import LabreportError
from labreport.logs import configure
from labreport.store import RunStore, atomic_write_json


def command(config_path: Path, profile: str | None, overrides: tuple[str, ...], runs: Path, *,
            only: tuple[str, ...], device: str, threads: int, summary: Path) -> list[str]:
    """The worker's command line, as the parent starts it."""
    cmd = [sys.executable, "-m", "labreport.cluster.worker", "--config", str(config_path.resolve()),
           "--runs", str(runs.resolve()), "--device", device, "--threads", str(threads), "--summary", str(summary)]
    cmd += ["--profile", profile] if profile else []
    for name in only:
        cmd += ["--only", name]
    for item in overrides:  # the parent's --set: the workers must see the same matrix
        cmd += ["--set", item]
    return cmd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="labreport.cluster.worker", description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--summary", type=Path, required=True, help="where the outcome is left for the parent")
    ap.add_argument("--profile")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    console = Console(out=print, err=lambda text: print(text, file=sys.stderr, flush=True))
    configure(0, console.err)
    try:
        config = load_config(args.config, args.profile, tuple(args.overrides))
    except LabreportError as e:
        console.err(f"error: {e}")
        return e.exit_code
    store = RunStore(args.runs)
    req = Request(config, store, tuple(args.only), args.device, wait=True, threads=args.threads)
    with sigterm_as_interrupt():
        out = train_here(req, console)
    atomic_write_json(args.summary, out.to_json())
    print_summary(console, out, store)
    return out.exit_code


if __name__ == "__main__":
    sys.exit(main())
