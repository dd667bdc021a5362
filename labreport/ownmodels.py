"""Models of the student's own: a class or a factory in a Python file beside experiments.toml, or
in an importable module, named where a catalogue model's name would be.

    model = "nets.py:ResNet110"           a file, its path relative to experiments.toml
    model = "mypackage.nets:make_resnet"  a module on Python's path (or in the lab's folder)
    model_args = { depth = 110 }          keyword arguments it is called with

It is called as NAME(**model_args, num_classes=..., norm=..., dropout=..., init=...), each of the
last four passed only when it takes that parameter, and must return an nn.Module whose output for
a batch of N images is [N, num_classes]. norm or dropout set for a model that does not take them is
an error; init is then applied by labreport: "he" (the default) draws the convolutions as for the
catalogue's models (He et al. 2015), "torch" leaves the model as it was built, "fixup" is refused.

This module is the static half (no torch, no import of the student's code, so `plan` stays
instant): find the file, parse it, find the name and its parameters, hash the source. The run key
covers the reference, model_args and that hash, so editing the file trains the model anew and the
old results stay in the store. engine/networks.py imports the code and checks one forward pass.

What the report calls such a model and which catalogue model it implements are report-only
settings of its [[experiment]] (never in a run key):

    display_name = "ResNet-110"   the name the report and `labreport models` show (default: the
                                  class and its depth, "ResNet-110" for ResNet with depth = 110)
    family = "cifar-resnet"       it implements the catalogue model of this family and depth (the
    depth = 110                   depth: model_args' depth, else this), compared with He et al. as
                                  the student's implementation of it

Without `family`, a model whose trained runs count exactly a catalogue model's parameters is taken
for that model (science/identity.py).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from labreport.models import MODELS, ModelInfo
from labreport.errors import ModelError, did_you_mean

REF_RE = re.compile(r"^(?P<target>[^:]+):(?P<name>[A-Za-z_]\w*)\Z")
MODULE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
PASSED = ("num_classes", "norm", "dropout", "init")  # what labreport passes when the model takes it
DIGEST_CHARS = 16  # hex digits of the source's sha256 kept in the spec


@dataclass(frozen=True)
class Source:
    """What the source says about a model of one's own, without running it."""

    ref: str  # as written: "nets.py:ResNet110"
    path: Path  # the file that defines it
    name: str  # the class or function
    kind: str  # "class" | "function" | "name" (assigned or imported: its parameters are not known)
    line: int
    params: frozenset[str] | None  # keyword parameters it takes; None: not known from the source
    var_keyword: bool  # it takes **kwargs
    digest: str  # sha256 of the file, DIGEST_CHARS hex digits

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    def takes(self, param: str) -> bool | None:
        """Whether it takes `param` as a keyword (None: the source does not say)."""
        if self.var_keyword:
            return True
        return None if self.params is None else param in self.params


def is_own(model: str) -> bool:
    """A reference to a model of one's own ("file.py:Name", "module:name"), not a catalogue name."""
    return ":" in model


def split(ref: str) -> tuple[str, str]:
    """("nets.py", "ResNet110") of "nets.py:ResNet110"; a ModelError when it is not of that form."""
    m = REF_RE.match(ref)
    if not m:
        raise ModelError(f"model '{ref}': a model of your own is 'FILE.py:Name' or 'package.module:name'")
    return m["target"], m["name"]


def is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def locate(ref: str, lab_dir: Path) -> Path:
    """The file that defines the model: FILE.py relative to the lab's folder, or a module's file
    found on the lab's folder and Python's path (searched, not imported)."""
    target, _ = split(ref)
    if is_file(target):
        path = (lab_dir / Path(target).expanduser()).resolve()
        if not path.is_file():
            raise ModelError(f"model '{ref}': no file {path} (the path is relative to experiments.toml)")
        return path
    if not MODULE_RE.match(target):
        raise ModelError(f"model '{ref}': '{target}' is neither a .py file nor a module name")
    parts = target.split(".")
    for root in [lab_dir, *(Path(p or ".") for p in sys.path)]:
        for path in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if path.is_file():
                return path.resolve()
    raise ModelError(f"model '{ref}': no module '{target}' in {lab_dir} or on Python's path")


def read(ref: str, lab_dir: Path) -> Source:
    """The model's Source; a ModelError (one line, with the file and line) when the file does not
    parse or does not define the name."""
    path = locate(ref, lab_dir)
    stat = path.stat()
    return _read(ref, path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _read(ref: str, path: Path, _mtime_ns: int, _size: int) -> Source:
    """Cached per file version: a notebook that edits the file and opens the lab again sees the edit."""
    data = path.read_bytes()
    try:
        tree = ast.parse(data, filename=str(path))
    except SyntaxError as e:
        raise ModelError(f"model '{ref}': {path.name}:{e.lineno}: SyntaxError: {e.msg}") from None
    _, name = split(ref)
    defs = _top_level(tree)
    if name not in defs:
        hint = did_you_mean(name, defs) or f" (it defines: {', '.join(defs) or 'nothing'})"
        raise ModelError(f"model '{ref}': {path.name} has no class or function '{name}'{hint}")
    kind, line, params, var_kw = _signature(defs[name])
    return Source(ref, path, name, kind, line, params, var_kw, hashlib.sha256(data).hexdigest()[:DIGEST_CHARS])


def _top_level(tree: ast.Module) -> dict[str, ast.AST]:
    """The names a module defines at its top level: classes, functions, assignments, imports."""
    defs: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            defs[node.name] = node
        elif isinstance(node, ast.Assign):
            defs.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defs.update({(a.asname or a.name).split(".")[0]: node for a in node.names if a.name != "*"})
    return defs


def _signature(node: ast.AST) -> tuple[str, int, frozenset[str] | None, bool]:
    """(kind, line, keyword parameters or None, takes **kwargs) of a definition."""
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:  # inherited: a plain nn.Module subclass takes nothing, but a base class of one's own may
            return "class", node.lineno, None, False
        _, params, var_kw = _signature(init)[1:]
        return "class", node.lineno, params, var_kw
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        names = [x.arg for x in [*a.args, *a.kwonlyargs]]
        return "function", node.lineno, frozenset(names) - {"self"}, a.kwarg is not None
    return "name", node.lineno, None, False


def check_args(src: Source, model_args: dict, options: dict) -> None:
    """model_args it does not take, and norm/dropout/init set to other than their defaults that it
    does not take, are a ModelError saying what to change (when the source says what it takes)."""
    for arg in model_args:
        if arg in PASSED:
            raise ModelError(f"model '{src.ref}': model_args must not set '{arg}': labreport passes it "
                             f"({arg} is {'the data set' if arg == 'num_classes' else 'a training setting'})")
        if src.takes(arg) is False:
            hint = did_you_mean(arg, sorted(src.params or ()))
            raise ModelError(f"model '{src.ref}': {src.name} ({src.where}) takes no parameter '{arg}'{hint}")
    for option, value in options.items():
        if option == "init" and value != "fixup":
            continue  # a model that does not take init is initialised by labreport (he), or left as built (torch)
        if src.takes(option) is False:
            raise not_taken(src.ref, f"{src.name} ({src.where})", option, value)


def not_taken(ref: str, who: str, option: str, value) -> ModelError:
    """A setting is given that the model has no parameter for (said by the source or, at run time, by
    its signature)."""
    return ModelError(f"model '{ref}': {option} = {value!r} is set, but {who} takes no '{option}' parameter: "
                      f"add one, or leave {option} at its default")


# ---- what the report calls it, and which catalogue model it implements ------------------------
FAMILIES = tuple(dict.fromkeys(i.family for i in MODELS.values()))  # cifar-resnet, plain, torchvision, baseline


@dataclass(frozen=True)
class Declared:
    """What an [[experiment]] says of its model of one's own for the report (never part of a run key)."""

    display_name: str = ""  # "": the class and its depth
    family: str = ""  # a catalogue family ("cifar-resnet"): it implements that family's model of its depth
    depth: int | None = None  # its depth where model_args gives none


def model_id(spec: dict) -> str:
    """A model as the report tells models apart: a catalogue name ("resnet110"), or one's own
    reference with its model_args ("nets.py:ResNet(depth=110)"): the same class at two depths is two models."""
    args = spec.get("model_args") or {}
    if not args:
        return spec["model"]
    return f"{spec['model']}({', '.join(f'{k}={args[k]}' for k in sorted(args))})"


def parse_id(mid: str) -> tuple[str, str, str]:
    """(file or module, class or function, model_args as written) of an own model's model_id."""
    ref, _, args = mid.partition("(")
    target, name = split(ref)
    return target, name, args.removesuffix(")")


def depth_of(declared: Declared, model_args: dict) -> int | None:
    """The depth an own model is built with: model_args' `depth` where it is a whole number, else the declared one."""
    depth = model_args.get("depth")
    return depth if isinstance(depth, int) and not isinstance(depth, bool) else declared.depth


def display_name(ref: str, model_args: dict, declared: Declared = Declared()) -> str:
    """What the report calls an own model: the declared name, else its class and depth ("ResNet-110";
    "ResNet110" already says its depth), else the class alone."""
    if declared.display_name:
        return declared.display_name
    name, depth = split(ref)[1], depth_of(declared, model_args)
    return name if depth is None or name.endswith(str(depth)) else f"{name}-{depth}"


def implemented(declared: Declared, model_args: dict) -> ModelInfo | None:
    """The catalogue model an own model declares it implements (family and depth), if any."""
    depth = depth_of(declared, model_args)
    if not declared.family:
        return None
    return next((i for i in MODELS.values() if i.family == declared.family and i.depth == depth), None)


def declaration_problem(declared: Declared, model_args: dict) -> str | None:
    """Why a declared family and depth name no catalogue model, or why the declared depth is not the
    one model_args builds (None: nothing is wrong)."""
    built = model_args.get("depth")
    if declared.depth is not None and isinstance(built, int) and built != declared.depth:
        return f"depth = {declared.depth}, but model_args builds depth = {built}: leave depth out"
    if not declared.family or implemented(declared, model_args) is not None:
        return None
    depths = sorted(i.depth for i in MODELS.values() if i.family == declared.family and i.depth)
    depth = depth_of(declared, model_args)
    if depth is None:
        return (f"family = '{declared.family}' needs the depth: model_args = {{ depth = N }}, or depth = N "
                f"({', '.join(map(str, depths))})")
    return f"family = '{declared.family}' has no model of depth {depth} (depths: {', '.join(map(str, depths))})"
