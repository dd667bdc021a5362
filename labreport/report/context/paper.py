"""Our test error beside He et al. 2015's table 6 (science.conclusions.paper_comparison), in percent
as fractions (the report's pct formats them), for subsection 3.n and the conclusions."""

from __future__ import annotations

from dataclasses import dataclass

from labreport.report import labels as lb
from labreport.report.i18n import Lang
from labreport.science.conclusions import PaperRow, Study


def _fraction(percent: float | None) -> float | None:
    return None if percent is None else percent / 100


@dataclass(frozen=True)
class PaperLine:
    """One depth: our error (the best configuration with BatchNorm) and the paper's."""

    model: str  # in a sentence that compares it with the paper (one's own says so)
    depth: int
    error: float | None  # our mean test error, a fraction (None: no run finished)
    error_std: float | None
    paper: float  # table 6's error
    paper_mean: float | None  # mean ± std over the paper's runs: ResNet-110 only
    paper_std: float | None
    diff: float | None  # ours - the paper's
    n: int  # our runs
    epochs: int
    within: bool | None  # within the paper's mean ± std
    within_yardstick: bool | None  # within table 6's number ± ResNet-110's std, borrowed


def paper_line(p: PaperRow, L: Lang, own) -> PaperLine:
    diff = None if p.ours_error is None else (p.ours_error - p.paper_error) / 100
    return PaperLine(lb.model_phrase(p.own or p.model, L, own), p.depth, _fraction(p.ours_error),
                     _fraction(p.ours_std), p.paper_error / 100, _fraction(p.paper_mean), _fraction(p.paper_std),
                     diff, p.n, p.epochs, p.within, p.within_yardstick)


@dataclass(frozen=True)
class Paper:
    recipe: bool  # every row trained with the paper's recipe (profile paper)
    spread: tuple[PaperLine, ...]  # finished depths with a published spread (ResNet-110)
    yardstick: tuple[PaperLine, ...]  # finished depths with one published number
    rows: tuple[PaperLine, ...]  # the table: every depth run


def paper_of(study: Study, L: Lang) -> Paper | None:
    if not study.paper:
        return None
    lines = [(p, paper_line(p, L, study.own)) for p in study.paper]
    return Paper(all(p.recipe for p in study.paper),
                 tuple(x for p, x in lines if p.paper_std is not None and p.ours_error is not None),
                 tuple(x for p, x in lines if p.paper_std is None and p.ours_error is not None),
                 tuple(x for _, x in lines))
