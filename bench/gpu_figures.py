"""The figures of bench/gpu_check.py, as pure functions of what it measured: MFU against the
vendor's peaks, the lab's matrix at the measured speeds, a labreport/cluster/eta.py MEASURED entry, and
the Markdown table the README takes. Tested on hand-made figures (tests/cluster/test_gpu_check.py)."""

from __future__ import annotations

# Dense (no sparsity) tensor-core peaks, FLOP/s, from the vendor datasheets, by device-name
# fragment (checked in this order: "H100 PCIe" before "H100"). "tf32": fp32 convolutions on
# tensor cores, cuDNN's default on compute capability >= 8.0; "fp32": without tensor cores.
# Unknown GPU or precision: no MFU.
PEAK = {
    "H200": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "H100 PCIe": {"bf16": 756e12, "fp16": 756e12, "tf32": 378e12, "fp32": 51e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},  # SXM
    "A100": {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp16": 362e12, "tf32": 183e12, "fp32": 91.6e12},
    "A10": {"bf16": 125e12, "fp16": 125e12, "tf32": 62.5e12, "fp32": 31.2e12},
    "V100": {"fp16": 125e12, "fp32": 15.7e12},  # SXM2; no bf16, no TF32
    "T4": {"fp16": 65e12, "fp32": 8.1e12},  # no bf16, no TF32
}


def peak_flops(device_name: str, precision: str, tf32: bool | None) -> float | None:
    """The dense peak for what ran: fp32 counts as TF32 where cuDNN used tensor cores for it."""
    key = "tf32" if precision == "fp32" and tf32 else precision
    return next((p.get(key) for name, p in PEAK.items() if name in device_name), None)


def lab_estimate(throughput: dict, jobs: dict, specs: list) -> dict:
    """Step 4, a pure function of the figures: the lab's matrix (`specs`) at this check's speeds,
    eager (the lab's default) and with CUDA graphs (models measured with them; the others eager),
    plus each compiled run's compile. The compile of a fresh process with inductor's cache warm
    ("again") is what every run but the first of a graph pays; where only the cold compile was
    measured it stands in, an upper bound. --jobs k: the totals over the speedup step 2 measured."""
    from labreport.cluster.eta import Speeds, remaining_s

    def fig(name: str) -> dict:
        f = throughput.get(name)
        return f if isinstance(f, dict) and "eta_seconds_per_image" in f else {}

    models = sorted({s.model for s in specs})
    eager = {m: fig(f"{m} auto eager")["eta_seconds_per_image"] for m in models if fig(f"{m} auto eager")}
    graphs, compile_s, compile_from = dict(eager), {}, {}
    for m in models:
        g = fig(f"{m} auto cuda-graphs")
        if g and g.get("first_epoch_extra_s") is not None:
            graphs[m] = g["eta_seconds_per_image"]
            again = fig(f"{m} auto cuda-graphs again").get("first_epoch_extra_s")
            compile_s[m] = max(again if again is not None else g["first_epoch_extra_s"], 0.0)
            compile_from[m] = "warm cache" if again is not None else "cold (an upper bound)"

    def total(rates: dict, extra: dict) -> float | None:
        times = [remaining_s(s, 0, Speeds("cuda", rates, 0)) for s in specs]
        return None if None in times else sum(times) + sum(extra.get(s.model, 0.0) for s in specs)

    est = {"runs": len(specs), "epochs": sorted({s.epochs for s in specs}),
           "missing": [m for m in models if m not in eager], "eager_s": total(eager, {}),
           "graphs_s": total(graphs, compile_s) if compile_s else None, "graphs_models": sorted(compile_s),
           "compile_s_per_run": compile_s, "compile_from": compile_from, "jobs": {}}
    for k, j in jobs.items():
        if isinstance(j, dict) and j.get("speedup"):
            est["jobs"][k] = {key: (est[key] / j["speedup"] if est[key] is not None else None)
                              for key in ("eager_s", "graphs_s")}
    return est


def estimate_text(est: dict) -> list[str]:
    from labreport.cluster.eta import duration

    def d(x):
        return f"~{duration(x)}" if x is not None else "n/a"

    compiles = ", ".join(f"{m} {sec:.0f} s, {est['compile_from'][m]}" for m, sec in est["compile_s_per_run"].items())
    lines = [f"lab matrix (experiments.toml: {est['runs']} runs of {'/'.join(map(str, est['epochs']))} epochs) "
             f"at --jobs 1: eager {d(est['eager_s'])}, with CUDA graphs for "
             f"{', '.join(est['graphs_models']) or 'none'} {d(est['graphs_s'])} (compile per run: {compiles or '-'})"]
    for k, t in est["jobs"].items():
        if k in (1, "1"):
            continue  # the --jobs 1 line above
        lines.append(f"  at --jobs {k} (scaled by step 2's speedup): eager {d(t['eager_s'])}, "
                     f"with CUDA graphs {d(t['graphs_s'])}")
    if est["missing"]:
        lines.append(f"  no eager figure for {', '.join(est['missing'])}: no total")
    return lines


def gpu_fragment(device_name: str) -> str:
    """The part of a GPU's name a MEASURED entry matches on: "NVIDIA H100 80GB HBM3" -> "H100"."""
    known = [name for name in PEAK if name in device_name]
    return known[0].split()[0] if known else device_name


def measured_entry(info: dict, throughput: dict) -> str | None:
    """A Measured(...) line for labreport/cluster/eta.py, from the eager `auto` figures (the lab's default
    settings); None when none was measured."""
    rates = {f["model"]: float(f"{f['eta_seconds_per_image']:.3g}") for f in throughput.values()
             if isinstance(f, dict) and "eta_seconds_per_image" in f and f["precision"] == "auto" and not f["compile"]}
    if not rates or info.get("device") in (None, "cpu"):
        return None
    ran = {f["precision_ran"] for f in throughput.values() if isinstance(f, dict) and f.get("precision") == "auto"
           and "precision_ran" in f}
    settings = f"precision auto ({'/'.join(sorted(ran))}), [run] compile = false, --jobs 1"
    return (f"Measured({gpu_fragment(info['device'])!r}, {rates!r}, {settings!r}, {info['date']!r}, "
            f"{'bench/' + info['command']!r})")  # as it ran (the wrapper calls gpu_check.py)


def _throughput_rows(throughput: dict) -> list[str]:
    rows = ["| measurement | precision | CUDA graphs | s per epoch (training) | images/s "
            "| peak MiB (alloc / reserved) | MFU |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, f in throughput.items():
        if not isinstance(f, dict) or "images_per_s" not in f:
            rows.append(f"| {name} | {(f or {}).get('skipped') or (f or {}).get('error', '?')} | | | | | |")
            continue
        mfu = f"{100 * f['mfu']:.1f} %" if f.get("mfu") is not None else "n/a"
        tf32 = " (TF32)" if f.get("tf32") and f["precision_ran"] == "fp32" else ""
        rows.append(f"| {name} | {f['precision_ran']}{tf32} "
                    f"| {f['cuda_graphs']} | {' / '.join(f'{t:.2f}' for t in f['train_s_per_epoch'])} "
                    f"({f['n_train']} images, batch {f['batch']}) | {f['images_per_s'][-1]:,.0f} "
                    f"| {f['peak_mem_alloc_mib'] or 0:,.0f} / {f['peak_mem_reserved_mib'] or 0:,.0f} | {mfu} |")
    return rows


def _fused_rows(fused: dict) -> list[str]:
    if not isinstance(fused, dict) or not fused:
        return []
    rows = ["", "| fused set | runs x batch | precision, compile | ms per step | images/s per run (all runs) "
            "| one run alone, images/s | peak MiB reserved |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, f in fused.items():
        if not isinstance(f, dict) or "images_per_s" not in f:
            rows.append(f"| {name} | {(f or {}).get('skipped') or (f or {}).get('error', '?')} | | | | | |")
            continue
        rows.append(f"| {name} | {f['members']} x {f['batch']} | {f['precision']}, {f['compile']} "
                    f"| {1e3 * f['s_per_step']:.1f} | {f['images_per_s_per_member']:,.0f} ({f['images_per_s']:,.0f}) "
                    f"| {f.get('alone_images_per_s') or 0:,.0f} | {f.get('peak_mem_reserved_mib') or 0:,.0f} |")
    return rows


def markdown(results: dict) -> str:
    """The figures the README wants, as a Markdown table (from gpu_check.json)."""
    info = results["info"]
    rows = _throughput_rows(results.get("throughput", {}))
    jobs = results.get("jobs", {})
    if isinstance(jobs, dict) and jobs:
        rows += ["", "| --jobs | runs/hour | speedup |", "| --- | --- | --- |"]
        rows += [f"| {k} | {j['runs_per_hour']:.0f} | {j.get('speedup', 1.0):.2f} |" for k, j in jobs.items()
                 if isinstance(j, dict) and "runs_per_hour" in j]
    rows += _fused_rows(results.get("fused", {}))
    est, fc = results.get("lab_estimate"), results.get("fused_comparison")
    lines = estimate_text(est) if isinstance(est, dict) and "runs" in est else []
    lines += fused_text(fc) if isinstance(fc, dict) and "sets" in fc else []
    return (f"# gpu_check on {info['device']} (capability {info.get('capability')}, driver {info.get('driver')}), "
            f"torch {info['torch']}, CUDA {info.get('cuda')}, "
            f"{info['date']}\n\n`{info['command']}`\n\n" + "\n".join(rows) + "\n\n" + "\n".join(lines) + "\n")


FUSED_RULE = 2.0  # fused / best unfused images/s on a ResNet-110 set at which fusion becomes a feature


def _ips(fig) -> float | None:
    """A figure's images/s: a throughput measurement's last (steady) epoch, or a fused one's."""
    if not isinstance(fig, dict) or "images_per_s" not in fig:
        return None
    ips = fig["images_per_s"]
    return ips[-1] if isinstance(ips, list) else ips


def _unfused(model: str, throughput: dict, jobs: dict, alone: float | None) -> dict:
    """images/s of one run at a time, by how: eager (the set's first member alone beside the fused
    measurement, else step 1's run of the model), CUDA graphs (step 1), and eager at --jobs k (step
    2's speedup over --jobs 1, for the model step 2 ran: ResNet-110 on a GPU)."""
    eager = alone or _ips(throughput.get(f"{model} auto eager"))
    out = {"eager": eager, "cuda-graphs": _ips(throughput.get(f"{model} auto cuda-graphs"))}
    if eager:
        out.update({f"--jobs {k}": eager * j["speedup"] for k, j in jobs.items()
                    if str(k) != "1" and isinstance(j, dict) and j.get("speedup") and j.get("model") == model})
    return {k: v for k, v in out.items() if v}


def _set_comparison(name: str, members: list, throughput: dict, jobs: dict, fused: dict, set_s: float | None) -> dict:
    """One member set: its fused figures against its runs one at a time; `set_s`: its runs' time
    eager at step 1's speed (None: not known), scaled to the best fused speed."""
    figs = {kind: fused.get(f"fused {name} {kind}") or {} for kind in ("eager", "cuda-graphs")}
    done = {k: _ips(f) for k, f in figs.items() if _ips(f)}
    model = members[0].model
    unfused = _unfused(model, throughput, jobs, figs["eager"].get("alone_images_per_s"))
    if not done or not unfused:
        return {"members": len(members), "missing": "no fused figure" if not done else "no unfused figure"}
    best_f, best_u = max(done.items(), key=lambda kv: kv[1]), max(unfused.items(), key=lambda kv: kv[1])
    step1 = _ips(throughput.get(f"{model} auto eager"))
    return {"members": len(members), "model": model, "fused": done, "unfused": unfused,
            "per_member": {k: v / figs[k].get("members", len(members)) for k, v in done.items()},
            "best_fused": best_f, "best_unfused": best_u, "ratio": best_f[1] / best_u[1],
            "eager_s": set_s, "fused_s": set_s * step1 / best_f[1] if set_s is not None and step1 else None,
            "peak_mem_mib": {k: figs[k].get("peak_mem_reserved_mib") for k in done}}


def fused_comparison(throughput: dict, jobs: dict, fused: dict, sets: dict, specs: list) -> dict:
    """Each fused member set (images/s over all its members) against the best unfused way to train
    its runs here, and the lab's matrix (`specs`) with every measured set trained fused at its best
    fused speed and the other runs eager. The set's time is its eager time (step 1's speed, the
    evaluation included) times eager / fused images/s: evaluation scaled alike, an approximation
    (it is ~1/9 of an epoch's work, and fused evaluation is not built)."""
    from labreport.cluster.eta import Speeds, remaining_s

    rates = {f["model"]: f["eta_seconds_per_image"] for f in throughput.values()
             if isinstance(f, dict) and "eta_seconds_per_image" in f and f.get("precision") == "auto"
             and not f.get("compile")}
    out: dict = {"sets": {}, "rule": FUSED_RULE}
    for name, members in sets.items():
        keys = {s.key for s in members}
        times = [remaining_s(s, 0, Speeds("cuda", rates, 0)) for s in specs if s.key in keys]
        set_s = sum(times) if times and None not in times else None
        out["sets"][name] = _set_comparison(name, members, throughput, jobs, fused, set_s)
    saved = sum(s["eager_s"] - s["fused_s"] for s in out["sets"].values() if s.get("fused_s") is not None)
    lab = lab_estimate(throughput, jobs, specs)["eager_s"]
    out["lab_eager_s"], out["lab_fused_s"] = lab, (lab - saved if lab is not None else None)
    return out


def fused_text(fc: dict) -> list[str]:
    from labreport.cluster.eta import duration

    lines = []
    for name, s in fc["sets"].items():
        if "missing" in s:
            lines.append(f"fused {name} ({s['members']} runs): {s['missing']}")
            continue
        unfused = ", ".join(f"{k} {v:,.0f}" for k, v in s["unfused"].items())
        fused = ", ".join(f"{k} {v:,.0f} ({s['per_member'][k]:,.0f} per run)" for k, v in s["fused"].items())
        verdict = (f" (rule: >= {fc['rule']:g}x on ResNet-110: {'met' if s['ratio'] >= fc['rule'] else 'not met'})"
                   if s["model"] == "resnet110" else "")
        lines.append(f"fused {name} ({s['members']} runs), images/s over all runs: fused {fused}; one at a time "
                     f"{unfused}; best fused / best unfused = x{s['ratio']:.2f}{verdict}")
    if fc.get("lab_fused_s") is not None:
        lines.append(f"lab matrix eager ~{duration(fc['lab_eager_s'])}; with the measured sets fused "
                     f"~{duration(fc['lab_fused_s'])} (evaluation scaled alike)")
    return lines
