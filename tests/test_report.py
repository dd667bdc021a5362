"""`labreport build`: a PDF from a run store, with the numbers of summary.json, escaped and local-only.

The run stores here are written by hand through RunStore (made-up accuracies with a known answer),
so that the report's text can be checked against numbers chosen for the test; test_cli.py covers
a store produced by real training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pypdf import PdfReader

from labreport.config import load_config
from labreport.report import _LocalOnlyFetcher, build
from labreport.store import RunStore

TOML = """
[report]
title = "{title}"
student = "Иванов И. И."
language = "{lang}"
[defaults]
epochs = 3
[analysis]
trained_threshold = 0.2
[[experiment]]
name = "base"
task = 3
model = "cifarnet"
[[experiment]]
name = "r20"
task = 4
model = "resnet20"
dropout = [0.0, 0.3]
weight_decay = [0.0, 1e-4]
[[experiment]]
name = "r110-bn"
task = 5
model = "resnet110"
seeds = 2
[[experiment]]
name = "r110-nobn"
task = 5
model = "resnet110"
norm = "none"
seeds = 4
[[experiment]]
name = "extra"
model = "resnet32"
"""


def fake_result(run, test_acc: float, val_acc: float, status="completed") -> tuple[dict, list]:
    hist = [{"epoch": e, "lr": 1e-4, "train_loss": 1.0, "train_acc": test_acc + 0.05 * e / 3,
             "val_loss": 1.0, "val_acc": val_acc * e / 3, "test_loss": 1.0, "test_acc": test_acc * e / 3,
             "train_time_s": 1.0, "epoch_time_s": 1.5, "images_per_s": 300.0, "grad_norm_mean": 1.0,
             "grad_norm_max": 2.0, "mem_alloc_mib": None, "mem_reserved_mib": None, "micro_batch": 128}
            for e in (1, 2, 3)]
    res = {"key": run.key, "spec": run.spec.to_dict(), "status": status, "epochs_run": 3,
           "diverged_at_epoch": 2 if status == "diverged" else None, "best_epoch": 3, "selected_by": "val_acc",
           "best_val_acc": val_acc, "test_acc_at_best": test_acc, "final_test_acc": test_acc,
           "final_train_acc": test_acc + 0.05, "final_val_acc": val_acc, "total_time_s": 4.5,
           "mean_epoch_time_s": 1.5, "peak_mem_alloc_mib": None, "peak_mem_reserved_mib": None,
           "params": 1000, "provenance": {"device": "cpu", "torch": "2.x", "cuda": None, "precision": "fp32",
                                          "data_fingerprint": "abcd", "data_official": False, "threads": 2}}
    return res, hist


def make_study(tmp_path: Path, title="Исследование ResNet", lang="ru", skip=()) -> tuple:
    cfg_path = tmp_path / "experiments.toml"
    cfg_path.write_text(TOML.format(title=title, lang=lang), encoding="utf-8")
    config = load_config(cfg_path)
    store = RunStore(tmp_path / "runs")
    accs = iter([0.61, 0.71, 0.72, 0.69, 0.74, 0.80, 0.82, 0.5, 0.1, 0.1, 0.1, 0.66])
    for run in config.runs:
        acc = next(accs)
        if run.experiment in skip:
            continue
        store.write_spec(run.key, run.spec.to_dict(), 1)
        status = "diverged" if run.experiment == "r110-nobn" and acc == 0.1 and run.spec.seed == 3 else "completed"
        res, hist = fake_result(run, acc, acc, status)
        store.write_history(run.key, hist)
        store.write_result(run.key, res)
    return config, store


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    config, store = make_study(tmp)
    out = tmp / "report.pdf"
    result = build(config, store, out, tmp / "report.html")
    return result, out, pdf_text(out), json.loads(result.summary.read_text())


def test_pdf_has_every_section(built):
    _, out, text, _ = built
    for title in ("Содержание", "Цель и постановка задачи", "Остаточный блок", "Методика", "Результаты",
                  "Выводы", "Все запуски", "Сравнение с He et al. 2015", "Дополнительные эксперименты"):
        assert title in text, title
    reader = PdfReader(out)
    assert reader.metadata.title == "Исследование ResNet"
    assert reader.metadata.author == "Иванов И. И."
    assert len(reader.outline) >= 4  # bookmarks


def test_pdf_numbers_are_the_summary_numbers(built):
    result, _, text, summary = built
    best = summary["best"]
    assert best["labels"] == ["r110-bn"] and best["mean_test_acc"] == pytest.approx(0.81)
    assert f"{100 * best['mean_test_acc']:.2f}" in text  # 81.00
    claim = summary["claim"]["arms"][0]
    assert (claim["k"], claim["n"]) == (1, 4)
    assert f"{claim['k']} из {claim['n']}" in text
    assert f"{claim['p_value']:.3f}" in text
    t4 = next(t for t in summary["tasks"] if t["task"] == "4")
    assert t4["heatmap"] == ["dropout", "weight_decay"]
    assert t4["best"]["labels"] == ["r20[dropout=0.3, weight_decay=0.0001]"]
    resnet20 = next(p for p in summary["paper"] if p["model"] == "resnet20")
    assert f"{resnet20['ours_error']:.2f}" in text and "8.75" in text
    assert "Рисунок 1 –" in text and "Таблица 1 –" in text


def test_figures_written_next_to_the_pdf(built):
    result, out, _, _ = built
    files = {p.name for p in result.summary.parent.iterdir()}
    assert {"curves_4.svg", "curves_4.png", "heatmap_4.svg", "bn_seeds.svg", "resources.svg",
            "summary.json"} <= files


def test_english_report(tmp_path):
    config, store = make_study(tmp_path, title="ResNet study", lang="en")
    build(config, store, tmp_path / "r.pdf")
    text = pdf_text(tmp_path / "r.pdf")
    for title in ("Contents", "Goal and tasks", "Method", "Results", "Conclusions", "Figure 1"):
        assert title in text


def test_hostile_title_is_escaped(tmp_path):
    title = "<script>alert(1)</script><img src=file:///etc/passwd>"
    config, store = make_study(tmp_path, title=title.replace('"', "'"), skip=("r20", "r110-bn", "r110-nobn"))
    html = tmp_path / "r.html"
    build(config, store, tmp_path / "r.pdf", html)
    page = html.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img src=file:///etc/passwd>" not in page
    assert "<script>alert(1)</script>" in pdf_text(tmp_path / "r.pdf")  # shown as text


def test_fetcher_serves_only_allowed_folders(tmp_path):
    allowed = tmp_path / "ok"
    allowed.mkdir()
    (allowed / "a.svg").write_text("<svg/>")
    fetch = _LocalOnlyFetcher([allowed])
    assert fetch.fetch((allowed / "a.svg").as_uri()).body if hasattr(fetch.fetch((allowed / "a.svg").as_uri()), "body") else True
    for url in ("file:///etc/passwd", "http://example.com/x.png", "https://example.com/",
                (allowed / ".." / "x").as_uri()):
        with pytest.raises(ValueError, match="blocked"):
            fetch.fetch(url)


def test_partial_and_empty_store(tmp_path):
    config, store = make_study(tmp_path, skip=("r110-nobn",))
    built = build(config, store, tmp_path / "partial.pdf")
    text = pdf_text(tmp_path / "partial.pdf")
    assert "не запускался" in text
    assert built.study.counts["missing"] == 4
    empty = build(config, RunStore(tmp_path / "nothing"), tmp_path / "empty.pdf")
    assert empty.study.counts["missing"] == len(config.runs)
    assert "labreport run" in pdf_text(tmp_path / "empty.pdf")


def test_two_builds_same_bytes(tmp_path):
    config, store = make_study(tmp_path, skip=("r20",))
    a, b = tmp_path / "a" / "r.pdf", tmp_path / "b" / "r.pdf"
    build(config, store, a)
    build(config, store, b)
    assert pdf_text(a) == pdf_text(b)
    for name in ("curves_5.svg", "bn_seeds.svg", "resources.png"):
        assert (a.parent / "r_files" / name).read_bytes() == (b.parent / "r_files" / name).read_bytes()
    assert a.read_bytes() == b.read_bytes()


def test_failed_build_keeps_previous_pdf(tmp_path, monkeypatch):
    config, store = make_study(tmp_path, skip=("r20", "r110-bn", "r110-nobn"))
    out = tmp_path / "r.pdf"
    build(config, store, out)
    before = out.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr("weasyprint.HTML.write_pdf", boom)
    with pytest.raises(RuntimeError):
        build(config, store, out)
    assert out.read_bytes() == before


def test_user_templates_override_file_by_file(tmp_path):
    config, store = make_study(tmp_path, skip=("r20", "r110-bn", "r110-nobn"))
    (tmp_path / "mytpl").mkdir()
    (tmp_path / "mytpl" / "title.html.j2").write_text("<section><p>МОЙ ТИТУЛЬНЫЙ ЛИСТ {{ r.title }}</p></section>")
    text = (tmp_path / "experiments.toml").read_text().replace('language = "ru"', 'language = "ru"\ntemplates = "mytpl"')
    (tmp_path / "experiments.toml").write_text(text)
    config = load_config(tmp_path / "experiments.toml")
    build(config, store, tmp_path / "r.pdf", tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "МОЙ ТИТУЛЬНЫЙ ЛИСТ Исследование ResNet" in html  # the user's title page ...
    assert "Цель и постановка задачи" in html  # ... and the shipped sections around it


def test_an_added_experiment_appears_without_template_changes(tmp_path):
    config, store = make_study(tmp_path, skip=("r20", "r110-bn", "r110-nobn"))
    text = (tmp_path / "experiments.toml").read_text() + '\n[[experiment]]\nname = "my-new-one"\ntask = 7\nmodel = "resnet44"\n'
    (tmp_path / "experiments.toml").write_text(text)
    config = load_config(tmp_path / "experiments.toml")
    run = next(r for r in config.runs if r.experiment == "my-new-one")
    res, hist = fake_result(run, 0.93, 0.93)
    store.write_history(run.key, hist)
    store.write_result(run.key, res)
    built = build(config, store, tmp_path / "r.pdf")
    text = pdf_text(tmp_path / "r.pdf")
    assert "Задание 7" in text and "my-new-one" in text  # its own task section and the tables
    assert built.study.ranking.best.label == "my-new-one"  # and the best-model conclusion
    assert "curves_7.svg" in {p.name for p in built.summary.parent.iterdir()}
