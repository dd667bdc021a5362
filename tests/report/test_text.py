"""The report's text as a teacher reads it, at full size (a made-up study of the lab's matrix: 27 runs
of 50 epochs, 10,000 test predictions each, and the bn-claim arms), in Russian and in English: one
test per class of slip a red pen would mark."""
from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path

import lxml.html
import pytest
from babel import Locale

from labreport.config import load_config
from labreport.report.build import build
from labreport.report.document import is_identifier, tidy_punctuation, unquoted
from labreport.report.pdf import bind_identifiers
from labreport.report.labels import MAX_NAMED, Labels
from labreport.report.i18n import Lang
from labreport.science.conclusions import group_runs
from labreport.store import RunStore
from labreport.report.study import collect
from labreport.testing import write_study_store

ROOT = Path(__file__).resolve().parents[2]
LANGS = ("ru", "en")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("study")
    shutil.copy(ROOT / "experiments.toml", folder)
    write_study_store(folder / "runs", folder / "experiments.toml")
    toml = (folder / "experiments.toml").read_text(encoding="utf-8")
    (folder / "en.toml").write_text(toml.replace('language = "ru"', 'language = "en"'), encoding="utf-8")
    (folder / "ru.toml").write_text(toml, encoding="utf-8")
    return folder


@pytest.fixture(scope="module", params=LANGS)
def report(request, study) -> tuple[str, lxml.html.HtmlElement, list[str]]:
    """(language, the report's HTML, the human names of its configurations)."""
    lang = request.param
    config = load_config(study / f"{lang}.toml", "bn-claim" if lang == "en" else None)
    store = RunStore(study / "runs")
    html = study / f"{lang}.html"
    build(config, store, None, html)
    names = Labels(group_runs(collect(config, store)), Lang(lang))
    return lang, lxml.html.fromstring(html.read_text(encoding="utf-8")), list(names.by_raw.values())


def running_text(doc) -> list[str]:
    """Every paragraph and list item of the body (not the title page, the contents, tables, captions
    or the bibliography)."""
    out = []
    for el in doc.iter("p", "li"):
        if el.get("class") in ("table-caption",) or el.getparent().get("class") == "references":
            continue
        if any(a.get("class") in ("title-page", "toc") for a in el.iterancestors()):
            continue
        out.append(" ".join(el.text_content().split()))
    return [t for t in out if t]


def sentences(paragraph: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+(?=[A-ZА-ЯЁ«“(0-9])", paragraph)


def all_text(doc) -> str:
    return " ".join(doc.find("body").text_content().split())


def test_no_doubled_punctuation(report):
    """No "п. п.." or "60 p.." (an abbreviation's period ends the sentence too), no ",," or ": ." (a
    value that went missing between a colon and the period). "п. п.;" is right and stays."""
    _, doc, _ = report
    text = all_text(doc)
    assert not re.findall(r".{20}(?:(?<!\.)\.\.(?!\.)|,,|;;|::|[,;:]\s*[.,;:]).{5}", text)


def test_a_p_value_is_never_equal_to_a_comparison(report):
    _, doc, _ = report
    assert not re.findall(r".{30}=\s*[<>].{10}", all_text(doc))


def test_negative_numbers_have_the_minus_sign(report):
    _, doc, _ = report
    text = all_text(doc)
    assert not re.findall(r".{20}(?:^|[\s(\[;:])-\d.{10}", text)
    assert "−" in text  # the made-up study has negative differences somewhere (the paper table)


def test_no_sentence_is_said_twice_in_a_paragraph(report):
    _, doc, _ = report
    for p in running_text(doc):
        said = [s.rstrip(".").lower() for s in sentences(p)]
        assert len(said) == len(set(said)), p
        # nor the same conclusion in other words: "every other configuration is worse" once
        worse = len(re.findall(r"significantly worse|beyond the noise|значимо хуже|сверх шума", p))
        assert worse <= 1, p


def test_running_text_names_at_most_four_configurations_at_a_time(report):
    _, doc, names = report
    longest = sorted(names, key=len, reverse=True)  # "ResNet-20, dropout 0,15, L2 0" before "ResNet-20"
    for p in running_text(doc):
        for s in sentences(p):
            found, rest = 0, s
            for n in longest:
                found += rest.count(n)
                rest = rest.replace(n, "")
            assert found <= MAX_NAMED + 1, s  # the best one, and at most MAX_NAMED others


NOUNS = {  # the forms for Babel's plural categories one / few / many, of the nouns the report counts
    "ru": {"запуск": ("запуск", "запуска", "запусков"), "эпох": ("эпоха", "эпохи", "эпох"),
           "конфигурац": ("конфигурация", "конфигурации", "конфигураций"), "шаг": ("шаг", "шага", "шагов"),
           "изображени": ("изображение", "изображения", "изображений"), "стади": ("стадия", "стадии", "стадий"),
           "зер": ("зерно", "зерна", "зёрен"), "друг": ("другая", "другие", "других")},
    "en": {"run": ("run", "runs", "runs"), "epoch": ("epoch", "epochs", "epochs"), "step": ("step", "steps", "steps"),
           "configuration": ("configuration", "configurations", "configurations"),
           "image": ("image", "images", "images"), "seed": ("seed", "seeds", "seeds")},
}
CATEGORY = {"one": 0, "few": 1, "many": 2, "other": 1}
PREPOSITIONS = {"из", "по", "на", "от", "до", "в", "с", "к", "о", "около", "после", "для", "без", "у", "против",
                "of", "by"}  # they govern the case, not the number


def test_numerals_agree_with_their_nouns(report):
    """Babel's (CLDR's) plural rule of the language picks the noun's form for every count in the
    text: "1 запуск", "3 запуска", "10 запусков", "1 run", "3 runs"."""
    lang, doc, _ = report
    rule = Locale.parse(lang).plural_form
    forms = {form: (stem, i) for stem, fs in NOUNS[lang].items() for i, form in enumerate(fs)}
    checked = 0
    for p in running_text(doc):
        for m in re.finditer(r"(?<![\d,.\w])(\w+\s)?(\d+)\s(\w+)", p):
            before, n, word = (m.group(1) or "").strip().lower(), int(m.group(2)), m.group(3).lower()
            if before in PREPOSITIONS or word not in forms or m.group(0)[-1:].isdigit():
                continue
            stem, _ = forms[word]
            want = NOUNS[lang][stem][CATEGORY[rule(n)]]
            assert word == want, f"{n} {word} (want {n} {want}): {p}"
            checked += 1
    assert checked >= 5


def test_the_russian_report_has_no_english_sentences(study):
    config = load_config(study / "ru.toml")
    build(config, RunStore(study / "runs"), None, study / "ru-check.html")
    doc = lxml.html.fromstring((study / "ru-check.html").read_text(encoding="utf-8"))
    english = [p for p in running_text(doc) if re.search(r"\b(?:the|and|of|with|was|were|non-finite)\b", p)]
    assert not english


def test_the_test_set_and_the_statistical_test_are_different_words(study):
    html = (study / "ru.html").read_text(encoding="utf-8") if (study / "ru.html").exists() else ""
    doc = lxml.html.fromstring(html or (study / "ru-check.html").read_text(encoding="utf-8"))
    splits = next(t for t in doc.iter("table") if "splits" in (t.getprevious().get("id") or ""))
    assert [th.text_content() for th in splits.iter("th")][-1] == "Тестовая"


def test_no_sentence_begins_with_a_digit(report):
    """A sentence that starts with a figure ("2 запуска разошлись") is rephrased so that a word
    comes first ("Из запусков этого варианта разошлись 2")."""
    _, doc, _ = report
    starts = [s for p in running_text(doc) for s in sentences(p) if s[:1].isdigit()]
    assert not starts


def test_a_lone_other_configuration_is_named_not_called_every_other(study):
    """Task 3 compares two networks: the loser is "the other configuration (ResNet-18)", never
    "every other configuration"; with more than one other the summary stays (task 6)."""
    for lang in LANGS:
        build(load_config(study / f"{lang}.toml"), RunStore(study / "runs"), None, study / f"{lang}-lab.html")
        doc = lxml.html.fromstring((study / f"{lang}-lab.html").read_text(encoding="utf-8"))
        lone = {"ru": "Другая конфигурация (ResNet-18) значимо хуже.",
                "en": "The other configuration (ResNet-18) is significantly worse."}[lang]
        every = {"ru": "Все остальные конфигурации значимо хуже.",
                 "en": "Every other configuration is significantly worse."}[lang]
        task3 = next(p for p in running_text(doc) if "CIFARNet: 80" in p)  # its ranking paragraph
        assert lone in task3 and every not in task3
        assert every in all_text(doc)  # task 6 ranks 16 configurations


def test_overfitting_is_concluded_only_over_configurations_that_trained(report):
    """ResNet-110 without BN trains in 1 of 10 made-up runs: its small train-test gap is a network
    at chance, not a network that generalises, so the overfitting conclusion leaves it out."""
    lang, doc, _ = report
    item = next(li.text_content() for li in doc.iter("li") if re.search("Overfitting|Переобучение", li.text_content()))
    assert not re.search(r"без BN(?!,)|no BN, He init|no BN(?!,)", item), item  # the He-init arm at chance


@pytest.mark.parametrize("html, want", [
    ("на 1,63 п. п..", "на 1,63 п.\u00a0п."),  # one period ends both the abbreviation and the sentence
    ("60 p.</a>.", "60 p.</a>"),  # across a tag too
    ("6,61 ± 0,16 %", "6,61\u00a0±\u00a00,16 %"),
    ("не запускались – 0. «узкое место» – блок. Рисунок 5 – Точность",
     "не запускались\u00a0– 0. «узкое место»\u00a0– блок. Рисунок 5 – Точность"),  # a dash never starts a line
    ("J. Sun. – Текст. – 1979. – Vol. 6", "J. Sun.\u00a0– Текст.\u00a0– 1979.\u00a0– Vol. 6"),  # a bibliography's too
    ("(σ = √(2/fan_in)), init", "(σ = √(2/\u2060fan_in)), init"),  # a formula never breaks at its slash
    ("factors (F′ + 1), F(x) − x, 6n + 2", "factors (F′\u00a0+\u00a01), F(x)\u00a0−\u00a0x, 6n\u00a0+\u00a02"),
    ('<a href="x/y">2/3</a>', '<a href="x/y">2/3</a>'),  # attributes and plain fractions untouched
    ("task is <b>CIFAR</b>: 80", "task is<b> CIFAR</b>: 80"),  # the space goes into the element
    ("task is <b>CIFARNet</b>: 80", 'task is<b> <span class="id">CIFARNet</span></b>: 80'),  # a name is marked
    ('dropout <a class="cite" href="#r">[4]</a>', 'dropout<a class="cite" href="#r"> [4]</a>'),
    ("<td>1</td> <b>2</b>", "<td>1</td> <b>2</b>"),  # after a tag: no text to move it from
    ("worse.\n\n\n</p>\n<p>Next </li>", "worse.</p>\n<p>Next</li>"),  # no text ends a block with a space
    ("<style>h2 + p { x: 1 ± 2 }</style><p>6n + 2</p>", "<style>h2 + p { x: 1 ± 2 }</style><p>6n\u00a0+\u00a02</p>"),
])
def test_tidy_punctuation(html, want):
    assert tidy_punctuation(html) == want


def _text_of(box) -> str:
    from weasyprint.formatting_structure import boxes
    return box.text if isinstance(box, boxes.TextBox) else "".join(_text_of(c) for c in getattr(box, "children", ()))


@functools.cache
def laid_out(html: Path) -> tuple[tuple[int, tuple[str, ...], bool], ...]:
    """The report's HTML laid out by WeasyPrint as the PDF is (names and identifiers bound, pdf.py):
    per block of text, (its page, its lines, whether it is justified)."""
    weasyprint = pytest.importorskip("weasyprint")
    from weasyprint.formatting_structure import boxes

    doc = weasyprint.HTML(string=bind_identifiers(html.read_text(encoding="utf-8")),
                          base_url=html.parent.as_uri() + "/").render()
    blocks = []
    for number, page in enumerate(doc.pages):
        for block in page._page_box.descendants():
            if isinstance(block, boxes.BlockBox):
                texts = tuple(_text_of(ln).strip() for ln in block.children if isinstance(ln, boxes.LineBox))
                blocks.append((number, texts, block.style["text_align_all"] == "justify"))
    return tuple(blocks)


def test_no_justified_line_is_left_with_a_word_or_two(report, study):
    """Laid out by WeasyPrint, every line of a justified paragraph but its last is full: never
    "is                CIFARNet:" with the rest of the sentence on the next line (a text that
    ended in a space before an inline element or the paragraph's end; see document.py)."""
    lang, _, _ = report
    blocks = laid_out(study / f"{lang}.html")
    lines = [t for _, texts, justified in blocks if justified for t in texts[:-1]]
    every = [t for _, texts, _ in blocks for t in texts]
    assert len(lines) > 100
    assert not [t for t in lines if len(t) < 40]  # a full line of 14 pt text holds 70-90 characters
    assert not [t for t in every if t.startswith("– ")]  # nor does a line start with a dash (bibliography too)


# --- names, identifiers and quotes, at full size and in a preview ------------------------------------------
TITLE_PAGE = {"university": "Федеральное государственное бюджетное образовательное учреждение высшего образования "
                            "«Новосибирский государственный технический университет»",
              "title": "«Исследование архитектуры ResNet на датасете CIFAR»", "group": "АВТ-213"}


@functools.cache
def preview(study: Path, lang: str) -> Path:
    """The HTML of the smoke profile's report (1 epoch, 256 images) of a made-up smoke store, with a
    long university name, a title already in quotes and a group with a hyphen."""
    if not (study / "smoke-runs").exists():
        write_study_store(study / "smoke-runs", study / "experiments.toml", ("smoke",), n_test=256)
    toml = (study / f"{lang}.toml").read_text(encoding="utf-8")
    for key, value in TITLE_PAGE.items():
        toml = re.sub(rf'(?m)^{key} = ".*"', f"{key} = {json.dumps(value, ensure_ascii=False)}", toml)
    (study / f"{lang}-smoke.toml").write_text(toml, encoding="utf-8")
    html = study / f"{lang}-smoke.html"
    build(load_config(study / f"{lang}-smoke.toml", "smoke"), RunStore(study / "smoke-runs"), None, html)
    return html


def broken_names(blocks) -> list[str]:
    """Line ends inside a name or identifier: hyphenated ("res‐" / "net110", WeasyPrint's hyphen is
    U+2010) or broken at its own hyphen ("resnet110-" / "nobn", "АВТ-" / "213")."""
    found = []
    for _, lines, _ in blocks:
        for line, following in zip(lines, lines[1:]):
            if not line.endswith(("-", "\u2010")) or not following:
                continue
            word = (line.split()[-1].removesuffix("\u2010") + following.split()[0]).strip("«»“”„()[],.;:")
            if is_identifier(word) or "://" in word:  # nor is an address hyphenated
                found.append(word)
    return found


DOUBLED_QUOTES = re.compile(r"««|»»|““|””|„„|\"\"")


def test_no_name_or_identifier_is_hyphenated_nor_a_quote_doubled(report, study):
    """At full size and in a preview, in both languages: no line ends inside "ResNet-110",
    "resnet110-nobn", "CIFARNet" or the group "АВТ-213"; the title page hyphenates nothing, not
    even the university's long name; a title written in quotes gets one pair of them."""
    lang, _, _ = report
    for blocks in (laid_out(study / f"{lang}.html"), laid_out(preview(study, lang))):
        assert not broken_names(blocks)
        text = " ".join(t for _, texts, _ in blocks for t in texts)
        assert not DOUBLED_QUOTES.search(text)
    title_page = [t for page, texts, _ in laid_out(preview(study, lang)) if page == 0 for t in texts]
    assert not [t for t in title_page if t.endswith(("-", "\u2010"))], title_page
    assert {"ru": "«Исследование архитектуры ResNet на датасете CIFAR»",
            "en": "“Исследование архитектуры ResNet на датасете CIFAR”"}[lang] in " ".join(title_page)


def test_the_layout_check_finds_a_broken_name():
    blocks = ((3, ("the configuration resnet110-", "nobn trained", "the res\u2010", "net110 and the pre-",
                   "activation of из-", "за"), True),)
    assert broken_names(blocks) == ["resnet110-nobn", "resnet110", "pre-activation"]


@pytest.mark.parametrize("token, want", [
    ("ResNet-110", True), ("resnet110-nobn", True), ("CIFARNet", True), ("АВТ-213", True), ("1e-05", True),
    ("weight_decay", True), ("BatchNorm", True), ("из-за", False), ("Liberation", False), ("ResNet", False),
    ("CIFAR", False), ("2015", False),
])
def test_what_is_a_name_or_identifier(token, want):
    assert bool(is_identifier(token)) is want


@pytest.mark.parametrize("title, want", [
    ("«Исследование ResNet»", "Исследование ResNet"), ("“ResNet on CIFAR”", "ResNet on CIFAR"),
    ('"ResNet"', "ResNet"), ("„ResNet“", "ResNet"), ("Исследование ResNet", "Исследование ResNet"),
    ("«A» и «B»", "«A» и «B»"), ("Исследование «ResNet»", "Исследование «ResNet»"), ('"A" and "B"', '"A" and "B"'),
    ("«Исследование «ResNet»»", "Исследование «ResNet»"), ("", ""),
])
def test_a_title_in_quotes_loses_them_once(title, want):
    assert unquoted(title) == want


# ---- what the data cannot carry, and phrases a red pen marked -------------------------------------
CAPITAL_AFTER_COLON = re.compile(r".{0,30}: [А-ЯЁ][а-яё]+.{0,20}")  # Russian goes on in lower case after a colon


def test_no_russian_sentence_goes_on_with_a_capital_after_a_colon(report):
    _, doc, _ = report
    assert not [m.group() for t in running_text(doc) for m in CAPITAL_AFTER_COLON.finditer(t)]


@pytest.fixture(scope="module")
def unfinished(study, tmp_path_factory) -> Path:
    """The bn-claim study with one arm not finished (PyTorch's default init) and a gradient flow in which
    the BN-less ResNet's gradient changes with depth more than the plain network's under He init."""
    from labreport.store.gradflow import cell_dir, cells

    folder = tmp_path_factory.mktemp("unfinished")
    shutil.copytree(study, folder, dirs_exist_ok=True)
    for lang in LANGS:
        config = load_config(folder / f"{lang}.toml", "bn-claim")
        for run in config.runs:
            if run.experiment == "resnet110-nobn-torch":
                (folder / "runs" / run.key / "result.json").unlink(missing_ok=True)
    settings = load_config(folder / "ru.toml").gradflow
    (cell,) = [c for c in cells(settings) if (c.model, c.norm, c.init) == ("resnet110", "none", "he")]
    path = cell_dir(folder / "runs", cell) / "result.json"
    res = json.loads(path.read_text())
    n = len(res["grad_init"])
    res["grad_init"] = [10 ** (-12 * (1 - i / (n - 1))) for i in range(n)]  # 12 orders of magnitude, the plain net's 9
    path.write_text(json.dumps(res))
    return folder


@pytest.mark.parametrize("lang, cases, arm", [
    ("ru", ("объясняет измерение не полностью: без BN до обучения норма градиента ResNet меняется с глубиной не "
            "меньше, чем у плоской сети."),
     "Без BatchNorm, инициализация PyTorch по умолчанию: ни один запуск этого варианта ещё не завершён."),
    ("en", ("does not explain all of the measurement: without BN before training, the gradient norm of ResNet "
            "changes with depth no less than the plain network's."),
     "Without BatchNorm, PyTorch's default init: no run of this arm has finished yet."),
])
def test_the_cases_the_argument_misses_and_an_unfinished_arm_read_as_sentences(unfinished, lang, cases, arm):
    """Once «…не меньше, чем у плоской сети, в вариантах: без BN при инициализации» and «инициализация He:
    Ни один запуск этого варианта…»."""
    out = unfinished / f"unfinished-{lang}.html"
    build(load_config(unfinished / f"{lang}.toml", "bn-claim"), RunStore(unfinished / "runs"), None, out)
    doc = lxml.html.fromstring(out.read_text(encoding="utf-8"))
    text = " ".join(running_text(doc))
    assert cases in text and arm in text
    assert "в вариантах" not in text and "при инициализации." not in text
    assert not [m.group() for t in running_text(doc) for m in CAPITAL_AFTER_COLON.finditer(t)]


COLLAPSED = """
experiment = [
  {{ name = "r20", task = 4, model = "resnet20", dropout = [0.0, 0.3], weight_decay = [0.0, 1e-4] }},
  {{ name = "r110", task = 5, model = "resnet110", norm = ["batch", "none"], seeds = 3 }},
]
[report]
language = "{lang}"
[defaults]
epochs = 1
test_subset = 500
"""


@pytest.mark.parametrize("lang", LANGS)
def test_networks_collapsed_onto_one_class_agree_on_every_image_and_no_detectable_difference_is_quoted(tmp_path,
                                                                                                        lang):
    """Every run answers class 0 for every image (as BN-less ResNet-110 runs do): both arms of every
    comparison get the same 50 of 500 images right. No "a difference of about 0.00 points could be
    detected"; instead, the configurations agree on every image."""
    (tmp_path / "experiments.toml").write_text(COLLAPSED.format(lang=lang), encoding="utf-8")
    config = load_config(tmp_path / "experiments.toml")
    store = RunStore(tmp_path / "runs")
    labels = "".join(str(i % 10) for i in range(500))
    for run in config.runs:
        hist = [{"epoch": 1, "val_acc": 0.1, "test_acc": 0.1, "train_acc": 0.1, "epoch_time_s": 1.0}]
        store.write_history(run.key, hist)
        store.write_result(run.key, {
            "key": run.key, "spec": run.spec.to_dict(), "status": "completed", "epochs_run": 1, "best_epoch": 1,
            "best_val_acc": 0.1, "test_acc_at_best": 0.1, "final_test_acc": 0.1, "final_train_acc": 0.1,
            "final_val_acc": 0.1, "mean_epoch_time_s": 1.0, "params": 1000, "n_test": 500,
            "test_predictions": "0" * 500, "test_labels": labels, "provenance": {}})
    built = build(config, store, None, tmp_path / "r.html")
    text = " ".join(lxml.html.fromstring((tmp_path / "r.html").read_text(encoding="utf-8")).text_content().split())
    for phrase in {"ru": ("обнаружимо различие", "позволил бы обнаружить различие", "отличимы лишь различия"),
                   "en": ("could detect about", "could have detected a difference", "only differences of about")}[lang]:
        assert phrase not in text
    assert {"ru": "на всех его уровнях верно классифицируются в точности одни и те же тестовые изображения",
            "en": "every level of it gets exactly the same test images right"}[lang] in text
    assert {"ru": "верно классифицирует в точности те же тестовые изображения, что и",
            "en": "gets exactly the same test images right as"}[lang] in text
    assert {"ru": "эпох: 1 против примерно 182", "en": "1 epoch against about 182"}[lang] in text  # not "1 epochs"
    summary = json.loads(built.summary.read_text())
    detectable = [c["detectable"] for t in summary["tasks"] for c in (t["best"] or {}).get("comparisons", [])]
    detectable += [e["detectable"] for t in summary["tasks"] for e in t["factors"]]
    assert detectable and all(d is None for d in detectable)
