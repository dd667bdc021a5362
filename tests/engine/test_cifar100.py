"""CIFAR-100: `dataset = "cifar100"` in [defaults] or per experiment. Loaded from the official layout
(one train file, fine and coarse labels, a meta file), downloaded and verified like CIFAR-10, a
100-way classifier, and a report that says so (100 classes, chance 1 %, "trained" above 2 %)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner

from labreport import testing
from labreport.api import Lab
from labreport.models import MODELS
from labreport.cli import main
from labreport.config import load_config
from labreport.engine import datasets
from labreport.errors import ConfigError, DataError
from procs import tiny_toml

C100 = datasets.DATASETS["cifar100"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Both data sets in one folder, as [data] root holds them."""
    root = tmp_path_factory.mktemp("data")
    testing.write_synthetic_cifar10(root, n_train=500, n_test=100)
    testing.write_synthetic_cifar(root, "cifar100", n_train=600, n_test=200)
    return root


def test_loads_the_fine_labels_of_the_official_layout(data_root):
    d = datasets.load(data_root, dataset="cifar100", download=False)
    assert d.train_x.shape == (600, 3, 32, 32) and d.test_x.shape == (200, 3, 32, 32)
    assert d.train_y.min() == 0 and d.train_y.max() == 99 and d.info.num_classes == 100
    raw = pickle.loads((data_root / C100.folder / "train").read_bytes(), encoding="latin1")
    assert d.train_y.tolist() == raw[b"fine_labels"] != raw[b"coarse_labels"]
    assert d.root == data_root / "cifar-100-python" and not d.official  # synthetic: md5s differ, said so
    assert "official CIFAR-100 files" in d.warnings[0]
    assert datasets.load(data_root, download=False).info.name == "cifar10"  # the other one beside it


def test_a_tarball_is_unpacked(tmp_path):
    testing.write_synthetic_cifar(tmp_path, "cifar100", n_train=100, n_test=20, tar="only")
    assert (tmp_path / "cifar-100-python.tar.gz").is_file() and not (tmp_path / C100.folder).exists()
    assert datasets.load(tmp_path, dataset="cifar100", download=False).train_x.shape[0] == 100


def test_the_download_is_the_official_archive_checked_by_md5(tmp_path, no_download):
    from torchvision.datasets import CIFAR100

    with pytest.raises(DataError) as e:
        datasets.load(tmp_path, dataset="cifar100")
    assert "CIFAR-100 not found and the download failed" in str(e.value)
    assert f"put {C100.tarball} or the {C100.folder}/ folder into {tmp_path}" in str(e.value)
    (args, kwargs), = no_download
    assert args[0] == CIFAR100.url and kwargs["md5"] == CIFAR100.tgz_md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert kwargs["filename"] == "cifar-100-python.tar.gz"


@pytest.mark.parametrize("damage, message", [
    (lambda b: {**b, b"fine_labels": [100] * len(b[b"fine_labels"])}, "labels span 100..100, expected [0, 100)"),
    (lambda b: {k: v for k, v in b.items() if k != b"fine_labels"}, "no 'data' or 'fine_labels' entry"),
])
def test_bad_labels_are_refused(tmp_path, damage, message):
    folder = testing.write_synthetic_cifar(tmp_path, "cifar100", n_train=100, n_test=20)
    batch = pickle.loads((folder / "train").read_bytes())
    (folder / "train").write_bytes(pickle.dumps(damage(batch), protocol=2))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        datasets.load(tmp_path, dataset="cifar100", download=False)


def test_a_meta_file_without_100_classes_is_refused(tmp_path):
    folder = testing.write_synthetic_cifar(tmp_path, "cifar100", n_train=100, n_test=20)
    meta = pickle.loads((folder / "meta").read_bytes())
    meta[b"fine_label_names"] = meta[b"fine_label_names"][:20]
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    with pytest.raises(DataError, match="holds 20 distinct names, CIFAR-100 has 100 classes"):
        datasets.load(tmp_path, dataset="cifar100", download=False)


# ---- the setting --------------------------------------------------------------------------------
def toml(tmp_path: Path, data_root: Path, experiments: str, more: str = "") -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(tiny_toml(data_root, epochs=2, more=more).replace("[defaults]\n", "[defaults]\n") + experiments)
    return path


def test_dataset_in_defaults_and_per_experiment(tmp_path, data_root):
    cfg = load_config(toml(tmp_path, data_root, '[[experiment]]\nname = "a"\nmodel = "resnet20"\ndataset = "cifar100"\n'
                                                '[[experiment]]\nname = "b"\nmodel = "resnet20"\n'))
    assert [r.spec.dataset for r in cfg.runs] == ["cifar100", "cifar10"]
    assert cfg.runs[0].key != cfg.runs[1].key
    with pytest.raises(ConfigError, match=r"'dataset' must be one of 'cifar10', 'cifar100', got 'cifar1000'"):
        load_config(toml(tmp_path, data_root,
                         '[[experiment]]\nname = "a"\nmodel = "resnet20"\ndataset = "cifar1000"\n'))


def test_a_catalogue_models_run_key_on_cifar10_is_unchanged():
    from labreport.spec import TrainSpec

    assert TrainSpec(model="resnet20").key == "e96da77a29adb522"  # as in every store written before CIFAR-100


# ---- training and the report ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("lab")
    path = toml(root, data_root, '[[experiment]]\nname = "cnn-10"\ntask = 3\nmodel = "cifarnet"\n'
                                 '[[experiment]]\nname = "r20-100"\ntask = 4\nmodel = "resnet20"\n'
                                 'dataset = "cifar100"\ndropout = [0.0, 0.1]\n',
                more='[report]\nlanguage = "en"\n')
    res = CliRunner().invoke(main, ["--config", str(path), "--runs", str(root / "runs"), "run", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return path, root / "runs"


def test_a_cifar100_run_has_a_100_way_classifier(trained):
    path, runs = trained
    rows = Lab(path, runs=runs).results(as_frame=False)
    r100 = [r for r in rows if r["dataset"] == "cifar100"]
    # ResNet-20's classifier: 64 features -> 100 classes instead of 10: 90 x (64 + 1) more parameters
    assert {r["params"] for r in r100} == {MODELS["resnet20"].params + 90 * 65}
    store_preds = [json.loads((runs / r["key"] / "result.json").read_text()) for r in r100]
    assert all(res["status"] == "completed" for res in store_preds)


def test_the_report_says_which_data_set_and_its_chance(trained, tmp_path):
    path, runs = trained
    lab = Lab(path, runs=runs)
    lab.build(tmp_path / "r.docx", html=tmp_path / "r.html")
    from lxml import html

    text = " ".join(html.fromstring((tmp_path / "r.html").read_text()).text_content().split())
    assert "The experiment r20-100 uses CIFAR-100 instead: images of the same format in 100 classes" in text
    assert "exceeds 20% on CIFAR-10 and 2% on CIFAR-100 (chance is 10% on CIFAR-10 and 1% on CIFAR-100)" in text
    assert "ResNet-20 (CIFAR-100)" in text and f"{MODELS['resnet20'].params + 90 * 65:,}" in text
    c = lab.conclusions()
    assert c["thresholds"] == {"cifar100": 0.02, "cifar10": 0.2}
    # the overall ranking is over the first data set's configurations only: test sets differ;
    # within task 4 (all CIFAR-100) the two dropouts are compared
    assert c["best"]["labels"] == ["cnn-10"] and c["best"]["comparisons"] == [] and c["best"]["considered"] == 1
    (task4,) = [t for t in c["tasks"] if t["task"] == "4"]
    assert len(task4["best"]["comparisons"]) == 1 and [f["factor"] for f in task4["factors"]] == ["dropout"]
