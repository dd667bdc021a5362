"""`labreport init`: a working folder for the lab, from what the installed package carries.

    experiments.toml       the lab's matrix, as shipped (edit the title page and the runs)
    templates/             with --templates: a copy of the report's templates, its style sheet and
                           message catalogues, which [report] templates = "templates" then uses
                           (a file left out falls back to the shipped one)

Nothing is overwritten without `force`; every file comes from importlib.resources, so it works from
a wheel (`pip install labreport`) as from a checkout.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from labreport.errors import LabreportError

CONFIG_NAME = "experiments.toml"
TEMPLATES_NAME = "templates"


@dataclass
class Scaffold:
    folder: Path
    written: list[Path] = field(default_factory=list)


def _resource(*parts: str, package: str = "labreport"):
    res = resources.files(package).joinpath(*parts)
    if not (res.is_file() or res.is_dir()):
        raise LabreportError(f"labreport's package data is incomplete: {'/'.join(parts)} is missing (reinstall "
                             "labreport)")
    return res


def init(folder: Path, *, templates: bool = False, force: bool = False) -> Scaffold:
    """Write the lab's experiments.toml into `folder` (and, with templates, a copy of the templates
    and catalogues, switched on in the TOML). Refuses to overwrite anything unless `force`."""
    folder = Path(folder)
    config = folder / CONFIG_NAME
    tpl = folder / TEMPLATES_NAME
    clashes = [p for p in (config, *([tpl] if templates else [])) if p.exists()]
    if clashes and not force:
        raise LabreportError(f"{clashes[0]} exists already: pass --force (force=True) to overwrite it")
    if folder.exists() and not folder.is_dir():
        raise LabreportError(f"{folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    out = Scaffold(folder)
    text = _resource(CONFIG_NAME).read_text(encoding="utf-8")
    if templates:
        text = _use_templates(text)
        if tpl.exists():
            shutil.rmtree(tpl)
        _copy_tree(_resource("templates", package="labreport.report"), tpl, out)
        _copy_tree(_resource("locale", package="labreport.report"), tpl / "locale", out, suffixes=(".po",))
    config.write_text(text, encoding="utf-8")
    out.written.insert(0, config)
    return out


def _use_templates(text: str) -> str:
    """Switch [report] templates on: the shipped file has it as a commented line."""
    line = f'templates = "{TEMPLATES_NAME}"          # the copy made by `labreport init --templates`, looked up first'
    new, n = re.subn(r"^# templates = .*$", line, text, count=1, flags=re.M)
    if n == 0:
        new = re.sub(r"^\[report\].*$", lambda m: m.group(0) + "\n" + line, text, count=1, flags=re.M)
    return new


def _copy_tree(src, dst: Path, out: Scaffold, suffixes: tuple[str, ...] = (".j2", ".css", ".po")) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_dir():
            _copy_tree(item, dst / item.name, out, suffixes)
        elif item.name.endswith(suffixes):
            target = dst / item.name
            target.write_bytes(item.read_bytes())
            out.written.append(target)
