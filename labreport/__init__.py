"""labreport: run a ResNet-on-CIFAR lab study and turn it into a finished report (PDF and DOCX).

Data flows one way (docs/architecture.md):
    experiments.toml -> config (specs, runs) -> engine (train) -> store -> science (conclusions)
    -> report (figures + templates) -> PDF, DOCX
"""

__version__ = "0.1.0"
