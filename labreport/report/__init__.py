"""The report: one content model (HTML from the templates, every word in the message catalogues)
and its writers, PDF (WeasyPrint) and Word (python-docx); figures, labels, numbering, references,
summary.json. Reads the store and the science; never torch, never the engine.
"""
