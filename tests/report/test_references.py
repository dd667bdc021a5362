"""The list of sources: ГОСТ Р 7.0.100-2018 records, numbered in the order of first citation."""

from __future__ import annotations

import pytest

from labreport.report.i18n import Lang
from labreport.report.references import SOURCES, Citations, access_date, record


def test_he_2015_as_the_lab_cites_it():
    text = record(SOURCES["he2015"], Lang("ru"), "01.12.2026")
    assert text == ("He, K. Deep Residual Learning for Image Recognition / K. He, X. Zhang, S. Ren, J. Sun. – "
                    "Текст : электронный // arXiv.org : [сайт]. – 2015. – arXiv:1512.03385. – "
                    "URL: https://arxiv.org/abs/1512.03385 (дата обращения: 01.12.2026).")
    journal = record(SOURCES["holm1979"], Lang("ru"), "01.12.2026")
    assert journal.endswith("– Текст : непосредственный // Scandinavian Journal of Statistics. – 1979. – "
                            "Vol. 6, No. 2. – P. 65–70.")
    site = record(SOURCES["torchvision"], Lang("en"), "01.12.2026")
    assert site == ("TorchVision: PyTorch's Computer Vision library : [site]. – URL: https://github.com/pytorch/vision "
                    "(accessed: 01.12.2026). – Text : electronic.")


def test_sources_are_numbered_by_first_citation_and_only_cited_ones_are_listed():
    c = Citations(Lang("en"), "01.12.2026")
    assert str(c.cite("cifar10")) == '<a class="cite" href="#ref-cifar10">[1]</a>'
    assert "[2]" in c.cite("he2015") and "[1]" in c.cite("cifar10")  # cited again: the same number
    assert "[1, 2]" in c.cite("cifar10", "he2015")
    assert [(r.number, r.key) for r in c.cited()] == [(1, "cifar10"), (2, "he2015")]
    with pytest.raises(KeyError, match="unknown source"):
        c.cite("nobody2020")


def test_access_date(monkeypatch):
    assert access_date("05.03.2026") == "05.03.2026"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764547200")  # 2025-12-01 00:00 UTC
    assert access_date("") == "01.12.2025"
