"""A model of the student's own, run: import its file or module, call it, check one forward pass.

ownmodels.py read the source without running it (for `plan`); here the code runs, so whatever it
does wrong is caught and said in one line with the student's file and line:

    model 'nets.py:ResNet110': nets.py:12: NameError: name 'nn' is not defined
    model 'nets.py:ResNet110': the output of a batch of 2 images is [2, 100], expected [2, 10]

`check` runs before anything trains (runner), so a broken model trains nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from labreport import ownmodels
from labreport.errors import ModelError

CHECK_BATCH = 2  # images in the forward pass that checks the output's shape


def _where(e: BaseException, path: Path) -> str:
    """'nets.py:12: NameError: ...': the deepest frame in the student's file, else the last one."""
    frames = traceback.extract_tb(e.__traceback__)
    mine = [f for f in frames if Path(f.filename).resolve() == path] or frames[-1:]
    if isinstance(e, SyntaxError) and e.lineno:
        return f"{path.name}:{e.lineno}: SyntaxError: {e.msg}"
    at = f"{Path(mine[-1].filename).name}:{mine[-1].lineno}: " if mine else ""
    return at + "".join(traceback.format_exception_only(type(e), e)).strip().replace("\n", " ")


def _import(ref: str, lab_dir: Path):
    """The module that defines the model (a file is imported under a name of its own, once per version)."""
    target, _ = ownmodels.split(ref)
    src = ownmodels.read(ref, lab_dir)
    try:
        if not ownmodels.is_file(target):
            sys.path.insert(0, str(lab_dir))  # the lab's folder first, as ownmodels.locate searched
            try:
                return importlib.import_module(target)
            finally:
                sys.path.remove(str(lab_dir))
        name = f"labreport_own_{src.path.stem}_{src.digest}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, src.path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling look the module up by name
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        return sys.modules[name]
    except Exception as e:  # noqa: BLE001  (anything the student's code raises is said in one line)
        raise ModelError(f"model '{ref}': {_where(e, src.path)}") from None


def factory(ref: str, lab_dir: Path) -> Callable[..., Any]:
    _, name = ownmodels.split(ref)
    module = _import(ref, lab_dir)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ModelError(f"model '{ref}': {name} in {Path(module.__file__).name} is not a class or a function")
    return fn


def keyword_arguments(ref: str, fn: Callable, model_args: dict, given: dict, defaults: dict) -> dict:
    """model_args, and of `given` (num_classes, norm, dropout, init) what `fn` takes; a setting it
    does not take, set to other than its default, is a ModelError."""
    if isinstance(fn, type) and fn.__init__ is nn.Module.__init__:  # no __init__ of its own: it takes nothing
        params = {}
    else:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):  # a builtin or C extension: pass what was asked for
            return {**model_args, **given}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = dict(model_args)
    for option, value in given.items():
        if var_kw or option in params:
            kwargs[option] = value
        elif option == "init" and value == "fixup":
            raise ModelError(f"model '{ref}': init = 'fixup' needs a model that implements it (takes an 'init' "
                             "parameter); labreport applies only 'he' and 'torch' to a model of one's own")
        elif option not in ("num_classes", "init") and value != defaults[option]:
            raise ownmodels.not_taken(ref, getattr(fn, "__name__", ref), option, value)
    return kwargs


def build(ref: str, lab_dir: Path, model_args: dict, given: dict, defaults: dict) -> tuple[nn.Module, bool]:
    """A fresh model of one's own, on the CPU, and whether it took `init` (if not, the caller
    initialises it); a ModelError with the student's file and line when its code raises, or when
    what it returns is not an nn.Module."""
    fn = factory(ref, lab_dir)
    kwargs = keyword_arguments(ref, fn, model_args, given, defaults)
    try:
        model = fn(**kwargs)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"model '{ref}': {_where(e, ownmodels.read(ref, lab_dir).path)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model '{ref}': returned a {type(model).__name__}, not a torch.nn.Module")
    return model, "init" in kwargs


def check(model: nn.Module, ref: str, lab_dir: Path, num_classes: int) -> None:
    """One forward pass of a batch of CHECK_BATCH images (eval mode, no gradients) must give
    [CHECK_BATCH, num_classes] logits."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(CHECK_BATCH, 3, 32, 32))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"model '{ref}': its forward pass failed: {_where(e, ownmodels.read(ref, lab_dir).path)}") \
            from None
    shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != [CHECK_BATCH, num_classes]:
        raise ModelError(f"model '{ref}': the output of a batch of {CHECK_BATCH} images is {shape}, expected "
                         f"[{CHECK_BATCH}, {num_classes}] (one logit per class)")
    model.train()
