"""The report: one content model (HTML from the templates, every word in the message catalogues)
and its writers, PDF (WeasyPrint) and Word (python-docx); figures, labels, numbering, references,
summary.json. Reads the store and the science; never torch, never the engine.
"""

from pathlib import Path

DEFAULT_OUT = Path("report.pdf")  # what `labreport build` and Lab.build() write when no file is named
