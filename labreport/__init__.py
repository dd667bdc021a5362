"""labreport: run a ResNet-on-CIFAR-10 lab study and turn it into a finished PDF report.

Data flows one way:
    experiments.toml -> config (specs) -> train (runs) -> store -> analysis -> figures + report -> PDF
"""

__version__ = "0.1.0"
