"""Pure functions from results to conclusions: statistics, comparisons, the BatchNorm claim, the
study's conclusions and the gradient-flow summary. No torch, no matplotlib, no file I/O: every
function is tested on hand-made numbers.
"""
