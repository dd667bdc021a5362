"""What the finished runs say about where they ran (result.json's provenance), for section 2.5 and
the data facts of section 2.1. Pure: run views in, values and phrases out.

A device is named as it was used: a CPU by its model and torch's threads; a GPU by its name, with
the CUDA, cuDNN and driver versions it ran with. CUDA is never named for a CPU run, though torch
records the version it was built with there too. Results written before the CPU's model was
recorded say "cpu": such a run is named a CPU whose model was not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from labreport.science.runs import RunView

FACTS = ("device", "torch", "cuda", "precision", "data_fingerprint", "data_official", "threads")


def _prov(v: RunView) -> dict:
    return (v.result or {}).get("provenance") or {}


def facts(views: Sequence[RunView]) -> dict[str, list]:
    """Per fact, its distinct values over the finished runs, in matrix order."""
    seen: dict[str, list] = {k: [] for k in FACTS}
    for v in views:
        prov = _prov(v)
        for k in FACTS:
            if k in prov and prov[k] not in seen[k]:
                seen[k].append(prov[k])
    return seen


@dataclass(frozen=True)
class Device:
    """One device the runs used, with what ran on it."""

    kind: str  # "cpu" | "cuda"
    name: str  # the CPU's model or the GPU's name; "" when the result did not record it
    threads: tuple[int, ...] = ()  # torch's CPU threads (CPU runs)
    cuda: tuple[str, ...] = ()  # CUDA versions (GPU runs only)
    cudnn: tuple[str, ...] = ()
    driver: tuple[str, ...] = ()


def cudnn_version(v) -> str:
    """cuDNN's version as torch reports it (90100, 8906) in dotted form ("9.1.0", "8.9.6")."""
    if not isinstance(v, int) or isinstance(v, bool):
        return str(v)
    if v >= 90_000:  # cuDNN 9: major * 10,000 + minor * 100 + patch
        return f"{v // 10_000}.{v // 100 % 100}.{v % 100}"
    return f"{v // 1000}.{v // 100 % 10}.{v % 100}"  # cuDNN 8 and older: major * 1,000 + minor * 100 + patch


def _kind(prov: dict) -> str:
    if prov.get("device_type") in ("cpu", "cuda"):
        return prov["device_type"]
    return "cpu" if str(prov.get("device", "cpu")).lower() == "cpu" else "cuda"  # before device_type was recorded


def _add(values: tuple, value) -> tuple:
    return values if value in (None, "") or value in values else (*values, value)


def devices(views: Sequence[RunView]) -> list[Device]:
    """The devices the finished runs used, in matrix order."""
    found: dict[tuple[str, str], Device] = {}
    for v in views:
        prov = _prov(v)
        if not prov.get("device"):
            continue
        kind, name = _kind(prov), str(prov["device"])
        name = "" if name.lower() in ("cpu", "cuda") or name.startswith("cuda:") else name  # a type, not a name
        d = found.get((kind, name), Device(kind, name))
        if kind == "cpu":
            d = Device(kind, name, _add(d.threads, prov.get("threads")))
        else:
            d = Device(kind, name, d.threads, _add(d.cuda, prov.get("cuda")),
                       _add(d.cudnn, None if prov.get("cudnn") is None else cudnn_version(prov["cudnn"])),
                       _add(d.driver, prov.get("driver")))
        found[(kind, name)] = d
    return list(found.values())


def device_phrase(d: Device, L) -> str:
    """"процессор AMD EPYC 7B13 (потоков: 2)", "GPU Tesla T4 (CUDA 12.4, cuDNN 9.1.0, драйвер 550.54)";
    a device whose name the result did not record says so in the parentheses."""
    if d.kind == "cpu":
        facts_ = [L._("threads: %(n)s", n=", ".join(map(str, d.threads)))] if d.threads else []
        kind, unnamed = L._("CPU"), L._("model not recorded")
    else:
        facts_ = [f"CUDA {', '.join(d.cuda)}"] if d.cuda else []
        facts_ += [f"cuDNN {', '.join(d.cudnn)}"] if d.cudnn else []
        facts_ += [L._("driver %(v)s", v=", ".join(d.driver))] if d.driver else []
        kind, unnamed = "GPU", L._("name not recorded")
    if not d.name:
        facts_.insert(0, unnamed)
    text = f"{kind} {d.name}" if d.name else kind
    return f"{text} ({'; '.join(facts_)})" if facts_ else text
