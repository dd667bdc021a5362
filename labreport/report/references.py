"""The sources the report cites, and their list in the form of ГОСТ Р 7.0.100-2018.

A template cites a source with `cite("he2015")`; sources are numbered in the order of their first
citation and the list at the end holds exactly the cited ones (ГОСТ 7.32-2017, 6.8: references
in square brackets, the list in the order the sources appear in the text). The records keep the
language of the source (English titles, "Vol.", "P."); only the prescribed connector words
("Текст : электронный", "дата обращения") follow the report's language, through the catalogue.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Source:
    key: str
    heading: str  # the first author, inverted: "He, K."
    title: str
    authors: str  # the statement of responsibility: "K. He, X. Zhang, S. Ren, J. Sun"
    host: str = ""  # the journal, proceedings or site it appeared in
    details: str = ""  # year, volume, number, pages
    url: str = ""  # an electronic resource: its address
    site: bool = False  # the host is a web site ("[сайт]")


SOURCES = {s.key: s for s in (
    Source("he2015", "He, K.", "Deep Residual Learning for Image Recognition", "K. He, X. Zhang, S. Ren, J. Sun",
           "arXiv.org", "2015. – arXiv:1512.03385", "https://arxiv.org/abs/1512.03385", site=True),
    Source("cifar10", "Krizhevsky, A.", "Learning Multiple Layers of Features from Tiny Images : technical report",
           "A. Krizhevsky", "University of Toronto", "2009. – 60 p.",
           "https://www.cs.toronto.edu/~kriz/learning-features-2009-TR.pdf", site=True),
    Source("pytorch2019", "Paszke, A.", "PyTorch: An Imperative Style, High-Performance Deep Learning Library",
           "A. Paszke, S. Gross, F. Massa [et al.]",
           "Advances in Neural Information Processing Systems 32 (NeurIPS 2019)", "2019. – P. 8024–8035",
           "https://arxiv.org/abs/1912.01703"),
    Source("torchvision", "", "TorchVision: PyTorch's Computer Vision library", "", "", "",
           "https://github.com/pytorch/vision", site=True),
    Source("bn2015", "Ioffe, S.",
           "Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
           "S. Ioffe, C. Szegedy", "Proceedings of the 32nd International Conference on Machine Learning (ICML)",
           "2015. – Vol. 37. – P. 448–456", "https://proceedings.mlr.press/v37/ioffe15.html"),
    Source("dropout2014", "Srivastava, N.", "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
           "N. Srivastava, G. Hinton, A. Krizhevsky [et al.]", "Journal of Machine Learning Research",
           "2014. – Vol. 15. – P. 1929–1958"),
    Source("he2015init", "He, K.",
           "Delving Deep into Rectifiers: Surpassing Human-Level Performance on ImageNet Classification",
           "K. He, X. Zhang, S. Ren, J. Sun", "Proceedings of the IEEE International Conference on Computer Vision "
           "(ICCV)", "2015. – P. 1026–1034"),
    Source("adam2015", "Kingma, D. P.", "Adam: A Method for Stochastic Optimization", "D. P. Kingma, J. Ba",
           "arXiv.org", "2014. – arXiv:1412.6980", "https://arxiv.org/abs/1412.6980", site=True),
    Source("fixup2019", "Zhang, H.", "Fixup Initialization: Residual Learning Without Normalization",
           "H. Zhang, Y. N. Dauphin, T. Ma", "arXiv.org", "2019. – arXiv:1901.09321",
           "https://arxiv.org/abs/1901.09321", site=True),
    Source("mcnemar1947", "McNemar, Q.",
           "Note on the sampling error of the difference between correlated proportions or percentages",
           "Q. McNemar", "Psychometrika", "1947. – Vol. 12, No. 2. – P. 153–157"),
    Source("welch1947", "Welch, B. L.",
           "The generalization of “Student's” problem when several different population variances are involved",
           "B. L. Welch", "Biometrika", "1947. – Vol. 34, No. 1–2. – P. 28–35"),
    Source("holm1979", "Holm, S.", "A Simple Sequentially Rejective Multiple Test Procedure", "S. Holm",
           "Scandinavian Journal of Statistics", "1979. – Vol. 6, No. 2. – P. 65–70"),
    Source("wilson1927", "Wilson, E. B.", "Probable Inference, the Law of Succession, and Statistical Inference",
           "E. B. Wilson", "Journal of the American Statistical Association", "1927. – Vol. 22, No. 158. – P. 209–212"),
)}


def access_date(configured: str = "") -> str:
    """The "дата обращения" of the electronic sources: [report] accessed, else the day of the build
    (SOURCE_DATE_EPOCH when set, so that a reproducible build stays reproducible), DD.MM.YYYY."""
    if configured:
        return configured
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    day = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).date() if epoch else dt.date.today()
    return day.strftime("%d.%m.%Y")


def record(src: Source, words, accessed: str) -> str:
    """One entry of the list, ГОСТ Р 7.0.100-2018: heading. Title / responsibility. – Text : kind //
    Host. – Details. – URL: ... (accessed: ...). A web site as a whole ends with its kind of text."""
    electronic = bool(src.url)
    site = words._("[site]")
    when = words._("accessed: %(date)s", date=accessed)
    kind = words._("Text : electronic") if electronic else words._("Text : unmediated")
    parts = [f"{src.heading} {src.title}" if src.heading else src.title]
    if src.authors:
        parts[0] += f" / {src.authors}"
    if src.host:
        host = f"{src.host} : {site}" if src.site else src.host
        parts.append(f"{kind} // {host}")
        if src.details:
            parts.append(src.details)
        if src.url:
            parts.append(f"URL: {src.url} ({when})")
        return _areas(parts)
    # a site as a whole: Title : [site]. – URL: ... (accessed: ...). – Text : electronic.
    parts[0] += f" : {site}"
    if src.details:
        parts.append(src.details)
    if src.url:
        parts.append(f"URL: {src.url} ({when})")
    parts.append(kind)
    return _areas(parts)


def _areas(parts: list[str]) -> str:
    """The areas of a record joined by ". – ", each ending in one period: an area that ends with an
    abbreviation ("60 p.") takes no second one."""
    return " – ".join(p if p.endswith(".") else p + "." for p in parts)


@dataclass(frozen=True)
class Cited:
    key: str
    number: int
    text: str


class Citations:
    """Numbers sources in the order of their first citation; `cite` is what templates call."""

    def __init__(self, words, accessed: str):
        self.words, self.accessed = words, accessed
        self.order: list[str] = []

    def number(self, key: str) -> int:
        if key not in SOURCES:
            raise KeyError(f"unknown source '{key}' (known: {', '.join(SOURCES)})")
        if key not in self.order:
            self.order.append(key)
        return self.order.index(key) + 1

    def cite(self, *keys: str) -> Markup:
        nums = ", ".join(str(self.number(k)) for k in keys)
        return Markup('<a class="cite" href="#ref-{}">[{}]</a>').format(keys[0], Markup(escape(nums)))

    def cited(self) -> list[Cited]:
        return [Cited(k, i + 1, record(SOURCES[k], self.words, self.accessed)) for i, k in enumerate(self.order)]
