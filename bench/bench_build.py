"""`labreport build` of a full-size study against the quick preview's, measured side by side.

    python bench/bench_build.py [--rounds 3] [--json OUT]

Two made-up stores (labreport.testing.write_study_store, the layout of a real store) of the lab's
experiments.toml: the quick profile as `make demo` trains it (18 runs of 2-3 epochs, 1,000 test
images), and the full study a GPU leaves (the lab's 27 runs and the bn-claim arms, 47 in all, 50
epochs, 10,000 test predictions each). Each round builds, in fresh processes and rotated order,
the quick report (profile quick), the full report (no profile) and the full report with the bn-claim
arms (profile bn-claim), PDF only; then times `labreport status` on the full store. Figures are
medians over the rounds; the ratio is full / quick. After the rounds, one in-process build each of
the quick and the full report says where the time goes (conclusions, figures, HTML, PDF).

Targets: full PDF build <= 1.3x the quick build, `status` of the full store <= 0.5 s. Not a test: it
prints numbers and never fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def labreport(folder: Path, *args: str) -> float:
    """Seconds of one `labreport` command in a fresh process."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "labreport", "--config", str(folder / "experiments.toml"),
                    "--runs", str(folder / "runs"), *args], cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - t0


def make_stores(tmp: Path) -> dict[str, Path]:
    from labreport.testing import write_study_store

    out = {}
    for name, profiles, n_test in (("quick", ("quick",), 1_000), ("full", (None, "bn-claim"), 10_000)):
        folder = tmp / name
        folder.mkdir()
        shutil.copy(ROOT / "experiments.toml", folder)
        t0 = time.perf_counter()
        keys = write_study_store(folder / "runs", folder / "experiments.toml", profiles, n_test=n_test)
        print(f"{name} store: {len(keys)} runs, {n_test:,} test images each, written in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        out[name] = folder
    return out


def phases(folder: Path, profile: str | None) -> dict[str, float]:
    """One build in this process, timed phase by phase."""
    from labreport.config import load_config
    from labreport.report import build as B
    from labreport.report import labels as lb
    from labreport.report import study as S
    from labreport.store import RunStore

    config = load_config(folder / "experiments.toml", profile)
    store, L = RunStore(folder / "runs"), S.language(config)
    t = {}
    t0 = time.perf_counter()
    views, study = S.study_of(config, store)
    t["read the store + conclusions"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    measurement, flow = S.gradflow_context(config, store)
    figs = B.make_figures(study, folder / "figs", L, lb.Labels(study.groups, L), measurement)
    t["figures (matplotlib, SVG + PNG)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    html = B.render_html(config, study, views, figs, L, flow)
    t["HTML (templates)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    B._render(folder / "phases.pdf", html, config, folder / "figs")
    t["PDF (WeasyPrint)"] = time.perf_counter() - t0
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cases = {"quick build": ("quick", ["build", "--profile", "quick", "--out", "q.pdf"]),
             "full build": ("full", ["build", "--out", "f.pdf"]),
             "full build, bn-claim": ("full", ["build", "--profile", "bn-claim", "--out", "b.pdf"])}
    with tempfile.TemporaryDirectory() as tmp:
        stores = make_stores(Path(tmp))
        times: dict[str, list[float]] = {k: [] for k in cases}
        for r in range(args.rounds):
            names = list(cases)[r % len(cases):] + list(cases)[:r % len(cases)]  # rotated order
            for name in names:
                store, cmd = cases[name]
                times[name].append(labreport(stores[store], *cmd))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
        status = [labreport(stores["full"], "status") for _ in range(5)]
        split = {"quick": phases(stores["quick"], "quick"), "full": phases(stores["full"], None)}
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["full build"] / med["quick build"]
    print(f"\n{platform.node()}, {args.rounds} rounds, medians:")
    for k, v in med.items():
        print(f"  {k:<22} {v:6.1f} s")
    print(f"  full / quick           {ratio:6.2f}x   (target <= 1.3x)")
    print(f"  status, full store     {statistics.median(status):6.2f} s   (target <= 0.5 s)")
    print(f"where the time goes (one build each, in this process):  {'quick':>7} {'full':>7}")
    for k in split["full"]:
        print(f"  {k:<50} {split['quick'][k]:6.2f} s {split['full'][k]:6.2f} s")
    if args.json:
        args.json.write_text(json.dumps({"times": times, "status": status, "ratio": ratio, "phases": split}, indent=1))


if __name__ == "__main__":
    main()
