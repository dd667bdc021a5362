"""labreport: run a ResNet-on-CIFAR lab study and turn it into a finished report (PDF and DOCX).

Data flows one way (docs/architecture.md):
    experiments.toml -> config (specs, runs) -> engine (train) -> store -> science (conclusions)
    -> report (figures + templates) -> PDF, DOCX
"""

from labreport.version import __version__

__all__ = ["Lab", "__version__", "init"]


def __getattr__(name: str):
    """labreport.Lab, the Python API (labreport/api/), and labreport.init, which writes a lab's
    experiments.toml (`labreport init`), imported when first used: `import labreport` stays instant."""
    if name == "Lab":
        from labreport.api import Lab

        return Lab
    if name == "init":
        from labreport.api.scaffold import init

        return init
    raise AttributeError(f"module 'labreport' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Lab among the names (tab completion, dir()), though it is imported only when first used."""
    return sorted({*globals(), *__all__})
