"""Human names for models, settings and configurations: "ResNet-20, dropout 0,15, L2 1·10⁻⁵".

The run key and the raw grid coordinates ("resnet20-reg[dropout=0.15, weight_decay=1e-05]") stay
in the all-runs table and summary.json; prose, tables and figure legends use these. A
configuration is named by its model and the settings that tell it apart from the other
configurations of the same model in the study, so "ResNet-110, no BN" needs no grid to say so.
Pure functions over conclusions.Group and an i18n.Lang (the words come from the catalogue).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from markupsafe import Markup, escape

from labreport import ownmodels

# The settings a configuration can differ in, in the order a label names them
ORDER = ("model", "norm", "init", "dropout", "weight_decay", "optimizer", "lr", "momentum", "schedule",
         "batch_size", "epochs", "max_iters", "augment", "train_subset", "warmup", "precision")


def model_name(name: str, L, own: Mapping | None = None) -> str:
    """A model as the report names it: "ResNet-110", "CIFARNet"; one's own by what the student calls
    it (`own`: science.identity.OwnModel by model_id), else by its class or function."""
    if ownmodels.is_own(name):  # a model_id: "nets.py:ResNet(depth=110)"
        return own[name].name if own and name in own else ownmodels.parse_id(name)[1]
    if name.startswith("resnet") and name != "resnet18":
        return f"ResNet-{name.removeprefix('resnet')}"
    if name.startswith("plain"):
        return L._("plain-%(depth)s", depth=name.removeprefix("plain"))
    return {"resnet18": "ResNet-18", "cifarnet": "CIFARNet"}.get(name, name)


def model_phrase(name: str, L, own: Mapping | None = None) -> str:
    """A model in a sentence that compares it with the paper or the lab's claim: one's own says so,
    "ResNet-110 (собственная реализация)", so that it is never taken for the catalogue's."""
    if ownmodels.is_own(name):
        return L._("%(name)s (own implementation)", name=model_name(name, L, own))
    return model_name(name, L)


def model_description(name: str, L, own: Mapping | None = None) -> str:
    """The models table's description; one's own names its class, model_args and file, and the
    catalogue model it is compared as, with how that is known (science/identity.py)."""
    from labreport.models import MODELS

    if ownmodels.is_own(name):  # "nets.py:ResNet(depth=110)", "mypackage.nets:make_resnet"
        target, obj, args = ownmodels.parse_id(name)
        obj += f"({args})" if args else ""
        o = own.get(name) if own else None
        if o is None or o.implements is None:
            return L._("own implementation: %(name)s from %(file)s", name=obj, file=target)
        twin = model_name(o.implements, L)
        if o.basis == "declared":
            return L._("own implementation of %(model)s (as declared in experiments.toml): %(name)s from %(file)s",
                       model=twin, name=obj, file=target)
        return L._("own implementation of %(model)s (the same number of parameters): %(name)s from %(file)s",
                   model=twin, name=obj, file=target)
    info = MODELS[name]
    if info.family == "cifar-resnet":
        return L.n_("CIFAR ResNet-%(depth)s: 3 stages of %(num)d basic block, option-A shortcuts",
                    "CIFAR ResNet-%(depth)s: 3 stages of %(num)d basic blocks, option-A shortcuts",
                    (info.depth - 2) // 6, depth=info.depth)
    if info.family == "plain":
        return L._("ResNet-%(depth)s without the shortcuts", depth=info.depth)
    if name == "resnet18":
        return L._("torchvision's ResNet-18 with its ImageNet stem")
    if name == "cifarnet":
        return L._("the lab's baseline CNN: 4 convolutions and 2 fully connected layers, dropout after each stage")
    return info.description


def per_dataset(values: Sequence[tuple[str, float]], L) -> str:
    """Percentages per data set: "20 %" for one, "20 % on CIFAR-10 and 2 % on CIFAR-100" for several."""
    from labreport.spec import DATASET_TITLES

    if len(values) == 1:
        return L.pct(values[0][1], 0)
    parts = [L._("%(value)s on %(data)s", value=L.pct(v, 0), data=DATASET_TITLES[d]) for d, v in values]
    return L.join_and(parts)


def init_name(init: str, L) -> str:
    return {"he": L._("He init"), "torch": L._("PyTorch's default init"), "fixup": L._("Fixup init")}.get(init, init)


def init_short(init: str, L) -> str:
    """The init alone, for a table column already titled "Initialisation": "He", "Fixup"."""
    return {"he": "He", "torch": L._("PyTorch's default"), "fixup": "Fixup"}.get(init, init)


def optimizer_name(opt: str) -> str:
    return {"adam": "Adam", "sgd": "SGD"}.get(opt, opt)


def stat_test_name(test: str, L) -> str:
    """A statistical test in a sentence: "McNemar's exact test"; "—" for none."""
    return {"mcnemar": L._("McNemar's exact test"), "welch": L._("Welch's t-test")}.get(test, "—")


def stat_test_short(test: str, L) -> str:
    """A statistical test in a table cell: "McNemar"; "—" for none."""
    return {"mcnemar": L._("McNemar"), "welch": L._("Welch")}.get(test, "—")


def factor_name(factor: str, L) -> str:
    """The name of a setting as a sentence uses it: "dropout", "the L2 coefficient (weight decay)"."""
    names = {"dropout": "dropout", "weight_decay": L._("the L2 coefficient (weight decay)"),
             "norm": L._("normalisation"), "init": L._("initialisation"), "lr": L._("the learning rate"),
             "batch_size": L._("the batch size"), "model": L._("the model"), "optimizer": L._("the optimiser"),
             "epochs": L._("the number of epochs")}
    return names.get(factor, factor)


def axis_name(factor: str, L) -> str:
    """The name of a setting on a figure axis: "Dropout", "L2 coefficient (weight decay)"."""
    names = {"dropout": "Dropout", "weight_decay": L._("L2 coefficient (weight decay)"),
             "norm": L._("Normalisation"), "init": L._("Initialisation"), "lr": L._("Learning rate"),
             "batch_size": L._("Batch size"), "model": L._("Model")}
    return names.get(factor, factor)


def factor_value(factor: str, value, L) -> str:
    """One setting with its value: "dropout 0,15", "L2 1·10⁻⁵", "no BN", "batch 64"."""
    if factor == "model":
        return model_name(str(value), L)
    if factor == "norm":
        return "BN" if value == "batch" else L._("no BN")
    if factor == "init":
        return init_name(str(value), L)
    if factor == "optimizer":
        return optimizer_name(str(value))
    if factor == "weight_decay":
        return f"L2 {L.sci(value)}"
    if factor == "batch_size":
        return L._("batch %(n)s", n=L.sci(value))
    if factor == "epochs":
        return L.n_("%(num)d epoch", "%(num)d epochs", int(value))
    if factor == "seed":
        return L._("seed %(n)s", n=value)
    if factor == "augment":
        return L._("augmentation") if value else L._("no augmentation")
    if factor == "model_args":  # a grid over an own model's arguments: "depth=20"
        return ", ".join(f"{k}={v}" for k, v in (value.items() if isinstance(value, dict) else value))
    return f"{factor} {L.sci(value)}"


def distinguishing(groups: Sequence) -> dict[str, tuple[str, ...]]:
    """Per model, the settings whose values differ between its configurations (the seed never)."""
    by_model: dict[str, list] = {}
    for g in groups:
        by_model.setdefault(g.model, []).append(g)
    out = {}
    for model, gs in by_model.items():
        specs = [g.runs[0].spec for g in gs]
        out[model] = tuple(k for k in ORDER if k != "model" and len({repr(s.get(k)) for s in specs}) > 1)
    return out


def _model_names(models: Sequence[str], L, own: Mapping | None) -> dict[str, str]:
    """Each model's name in the labels; one's own "ResNet-110" beside the catalogue's says it is the
    author's implementation."""
    names = {m: model_name(m, L, own) for m in models}
    built_in = {name for m, name in names.items() if not ownmodels.is_own(m)}
    return {m: model_phrase(m, L, own) if ownmodels.is_own(m) and name in built_in else name
            for m, name in names.items()}


class Labels:
    """The human label of every configuration of a study, keyed by its raw label (Group.label);
    `own`: the models of one's own (Study.own), named as the student names them."""

    def __init__(self, groups: Sequence, L, own: Mapping | None = None):
        self.L = L
        fields = distinguishing(groups)
        models = _model_names([g.model for g in groups], L, own)
        self.by_raw: dict[str, str] = {}
        for g in groups:
            spec = g.runs[0].spec
            coords = dict(g.coords)
            keys = [k for k in ORDER if k in fields.get(g.model, ()) or (k in coords and k != "model")]
            # the model's name already tells its model_args apart (Group.model is its model_id)
            keys += [k for k in coords if k not in keys and k not in ("model", "model_args", "seed")]
            parts = [models[g.model]] + [factor_value(k, coords.get(k, spec.get(k)), L) for k in keys]
            self.by_raw[g.label] = ", ".join(parts)
        seen: dict[str, list[str]] = {}
        for raw, human in self.by_raw.items():
            seen.setdefault(human, []).append(raw)
        for human, raws in seen.items():  # two experiments with the same settings: name the experiment
            if len(raws) > 1:
                for raw in raws:
                    self.by_raw[raw] = f"{human} ({raw.split('[')[0]})"

    def __call__(self, group) -> str:
        return self.of(group.label)

    def of(self, raw: str) -> str:
        return self.by_raw.get(raw, raw)

    def coords(self, group) -> str:
        """Only the grid coordinates (figure legends of one experiment): "dropout 0,15, L2 1·10⁻⁵"."""
        return ", ".join(factor_value(k, v, self.L) for k, v in group.coords) or self(group)


MAX_NAMED = 4  # configurations a sentence names; more are counted and found in the table it refers to


def configurations(names: Sequence[str], ref, L) -> str:
    """Configurations in running text, by their human names (Labels): up to MAX_NAMED by name,
    separated by semicolons (a name has commas of its own: "ResNet-20, dropout 0, L2 0"); more as
    their number and the table that lists them: "11 других конфигураций (таблица 6)", "11 other
    configurations (table 6)". `ref` is rendered when the template calls this, so that the table is
    numbered where the text first names it."""
    names = list(names)
    if len(names) <= MAX_NAMED:
        return Markup("; ").join(escape(n) for n in names)
    text = L.n_("%(num)d other configuration (%(ref)s)", "%(num)d other configurations (%(ref)s)", len(names),
                ref="\x00")
    return escape(text).replace("\x00", Markup(ref))


def N_(message: str) -> str:
    """Marks a message for the catalogue (`make messages` extracts N_) where it is translated later."""
    return message


# The trainer records why a run diverged in English (engine.precision.divergence_reason): its
# phrases, and their messages in the catalogue. Anything else is shown as recorded.
_WHERE = re.compile(r"^non-finite (loss|gradient norm) at epoch (\d+), step (\d+)(.*)$", re.S)
_CAUSES = (
    (re.compile(r"^ \(the loss was finite\): the gradients overflowed (\w+)'s range$"),
     N_("the loss was finite: the gradients overflowed %(p)s's range"), ("p",)),
    (re.compile(r"^; the logits themselves were not finite in (\w+)$"),
     N_("the logits themselves were not finite in %(p)s"), ("p",)),
    (re.compile(r"^; the fp16 logits were not finite \(fp16's largest value is ([\d,]+)\)$"),
     N_("the fp16 logits were not finite (fp16's largest value is %(max)s)"), ("max",)),
    (re.compile(r"^; a precision overflow: the fp16 forward pass went beyond fp16's largest value ([\d,]+), "
                r"while in fp32 the same batch gives finite logits \(largest \|logit\| (\S+)\)$"),
     N_("a precision overflow: fp16's largest value %(max)s was exceeded, while in fp32 the same batch gives finite "
        "logits (largest |logit| %(v)s)"), ("max", "v")),
    (re.compile(r"^; the logits are not finite in fp32 either: the network diverged, not only fp16$"),
     N_("the logits are not finite in fp32 either: the network diverged, not only fp16"), ()),
)


def divergence(reason: str | None, L) -> str | None:
    """Why a run diverged, in the report's language: "non-finite loss at epoch 3, step 1024" ->
    "функция потерь не конечна на эпохе 3, шаге 1024"."""
    m = _WHERE.match(reason or "")
    if m is None:
        return reason
    kind, epoch, step, rest = m.groups()
    where = (L._("non-finite loss at epoch %(e)s, step %(s)s", e=epoch, s=step) if kind == "loss" else
             L._("non-finite gradient norm at epoch %(e)s, step %(s)s", e=epoch, s=step))
    if not rest:
        return where
    for pattern, message, names in _CAUSES:
        if c := pattern.match(rest):
            return f"{where}; {L._(message, **dict(zip(names, c.groups())))}"
    return reason
