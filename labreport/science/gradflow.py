"""The gradient-flow measurement in numbers (task 1): by how many orders of magnitude the gradient
norm changes from the last layer to the first, per network, and what the report says of it. Pure
functions of the stored measurements (store/gradflow.py), unit-tested on hand-made numbers.
"""

from __future__ import annotations

import math

from labreport.store.gradflow import NETWORKS


def _finite_positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def orders_of_magnitude(first: float | None, last: float | None) -> float | None:
    """log10(last / first): by how many orders of magnitude the gradient norm falls from the last
    layer to the first (negative: it grows). None when either norm is missing, zero or not finite."""
    if not (_finite_positive(first) and _finite_positive(last)):
        return None
    return math.log10(last / first)


def network_label(family: str, norm: str, depth: int) -> str:
    """A network as the command line names it: "ResNet-110, no BN" (the report's words are in its catalogue)."""
    name = f"ResNet-{depth}" if family == "resnet" else f"plain-{depth}"
    return f"{name}, {'BN' if norm == 'batch' else 'no BN'}"


def summary_rows(cells_: list[dict]) -> list[dict]:
    """One row per measurement: first- and last-layer gradient norm and the orders of magnitude
    between them, at initialisation and after the training steps."""
    rows = []
    for res in cells_:
        c = res["cell"]
        family = "resnet" if c["model"].startswith("resnet") else "plain"
        depth = int(c["model"].removeprefix(family))
        g0, g1 = res["grad_init"], res.get("grad_trained")
        rows.append({
            "model": c["model"], "family": family, "norm": c["norm"], "init": c["init"], "depth": depth,
            "steps": c["steps"], "first_init": g0[0], "last_init": g0[-1],
            "orders_init": orders_of_magnitude(g0[0], g0[-1]),
            "first_trained": g1[0] if g1 else None, "last_trained": g1[-1] if g1 else None,
            "orders_trained": orders_of_magnitude(g1[0], g1[-1]) if g1 else None,
            "logits_std_init": res.get("logits_std_init"), "diverged_at_step": res.get("diverged_at_step"),
            "time_s": res.get("time_s"),
        })
    return rows


def _find(rows: list[dict], **want) -> dict | None:
    return next((r for r in rows if all(r[k] == v for k, v in want.items())), None)


def table_lines(cells_: list[dict], steps: int) -> list[str]:
    """The measurement as a plain-text table (`labreport gradflow` prints it)."""
    def num(v):
        return "-" if v is None else f"{v:.3g}"

    def orders(r, when):
        if r[f"orders_{when}"] is None and r[f"first_{when}"] == 0:
            return "vanished"  # the first layer's gradient is 0 in float32
        return "-" if r[f"orders_{when}"] is None else f"{r[f'orders_{when}']:+.2f}"

    lines = [f"{'':<26}{'at init':^30}   {f'after {steps} Adam steps':^30}",
             f"{'network':<20}{'init':<6}" + f"{'first':>10}{'last':>10}{'orders':>10}   " * 2]
    for r in summary_rows(cells_):
        lines.append(f"{network_label(r['family'], r['norm'], r['depth']):<20}{r['init']:<6}"
                     f"{num(r['first_init']):>10}{num(r['last_init']):>10}{orders(r, 'init'):>10}   "
                     f"{num(r['first_trained']):>10}{num(r['last_trained']):>10}{orders(r, 'trained'):>10}")
    lines.append("first, last: ||dL/dW|| of the first and the last layer; orders: log10(last / first), "
                 "how many orders of magnitude the gradient falls from the last layer to the first")
    return lines


def skip_gain(rows: list[dict], depth: int, norm: str, init: str, when: str = "init") -> float | None:
    """Orders of magnitude by which the first layer's gradient of the ResNet exceeds the plain net's
    (same depth, norm, init): log10(first_resnet / first_plain)."""
    res, plain = _find(rows, family="resnet", depth=depth, norm=norm, init=init), \
        _find(rows, family="plain", depth=depth, norm=norm, init=init)
    if res is None or plain is None:
        return None
    return orders_of_magnitude(plain[f"first_{when}"], res[f"first_{when}"])


def change(row: dict | None, when: str = "init") -> float | None:
    """|orders of magnitude| the gradient norm changes between the last and the first layer:
    inf when the first layer's gradient vanished to 0 (float32) and the last one's did not."""
    if row is None:
        return None
    o = row[f"orders_{when}"]
    if o is not None:
        return abs(o)
    return math.inf if row[f"first_{when}"] == 0 and _finite_positive(row[f"last_{when}"]) else None


def _nets(rows: list[dict], depth: int, init: str | None) -> dict[str, dict | None]:
    """"resnet_batch", "plain_none", ...: each network's row at this depth and init."""
    return {f"{f}_{n}": _find(rows, family=f, depth=depth, norm=n, init=init) for f, n in NETWORKS}


def _steadier(nets: dict[str, dict | None]) -> dict[str, bool | None]:
    """Per norm, at init and trained: does the ResNet's gradient change less over depth than the plain net's?"""
    out = {}
    for norm in ("batch", "none"):
        for when in ("init", "trained"):
            a, b = change(nets[f"resnet_{norm}"], when), change(nets[f"plain_{norm}"], when)
            out[f"{norm}_{when}"] = None if a is None or b is None else a < b
    return out


def _gains(rows: list[dict], depth: int, init: str) -> dict[str, float | None]:
    """gain_bn, gain_nobn, gain_bn_trained, gain_nobn_trained: the skip connections' gain at the first layer."""
    out = {}
    for norm, name in (("batch", "bn"), ("none", "nobn")):
        out[f"gain_{name}"] = skip_gain(rows, depth, norm, init)
        out[f"gain_{name}_trained"] = skip_gain(rows, depth, norm, init, "trained")
    return out


def _nobn_logits_std(rows: list[dict], depth: int, inits: list[str]) -> dict[str, float]:
    """init -> the std of the BN-less ResNet's logits at initialisation."""
    out = {}
    for i in inits:
        if r := _find(rows, family="resnet", depth=depth, norm="none", init=i):
            out[i] = r["logits_std_init"]
    return out


def facts(measurement: dict, lab_inits: list[str]) -> dict:
    """What the report's theory section says, for the deepest measured depth: per network the
    orders of magnitude at init and after training under the init the lab runs use (`lab_inits`,
    the first that was measured), the skip connections' gain at the first layer, and the logits
    std of the BN-less ResNet under each init."""
    rows = summary_rows(measurement["cells"])
    if not rows:
        return {"rows": [], "depth": None}
    settings, depth = measurement["settings"], max(r["depth"] for r in rows)
    measured_inits = [i for i in settings["inits"] if any(r["init"] == i for r in rows)]
    init = next((i for i in lab_inits if i in measured_inits), measured_inits[0])
    nets = _nets(rows, depth, init)
    # the other init measured on every network (Fixup is measured on the BN-less ResNet only)
    other = next((i for i in measured_inits if i not in (init, "fixup")), None)
    return {
        "rows": rows, "depth": depth, "init": init, "inits": measured_inits, "nets": nets,
        "steps": settings["steps"], "lr": settings["lr"], "batch": settings["batch"], "probe": settings["probe"],
        **_gains(rows, depth, init), "steadier": _steadier(nets), "other_init": other,
        "other_nets": _nets(rows, depth, other) if other else None,
        "nobn_logits_std": _nobn_logits_std(rows, depth, measured_inits), "missing": len(measurement["missing"]),
        "total": len(measurement["cells"]) + len(measurement["missing"]),
    }
