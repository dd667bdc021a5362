"""Helpers for tests of labreport and of a user's own code around it: small learnable CIFAR-10 and
CIFAR-100 look-alikes in the official file formats, a TrainSpec from its dictionary, and a made-up
full-size run store. Not used by labreport itself."""

from __future__ import annotations

import gzip
import io
import math
import pickle
import tarfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np

from labreport.engine.datasets import DATASETS, IMAGE_SHAPE, DatasetInfo, fingerprint
from labreport.spec import TrainSpec
from labreport.version import __version__


def spec_from_dict(d: dict[str, Any]) -> TrainSpec:
    """A TrainSpec from TrainSpec.to_dict() (spec.json, result.json's "spec")."""
    d = dict(d)
    d["milestones"] = tuple(d.get("milestones", ()))
    return TrainSpec(**d)


def fingerprint_files(paths: Iterable[str | Path]) -> str:
    """The data fingerprint of files on disk: sha256 over (file name, bytes) pairs sorted by name;
    folders do not matter, so it is stable across machines (what datasets.load records)."""
    return fingerprint((Path(p).name, Path(p).read_bytes()) for p in paths)


def synthetic_images(labels: np.ndarray, rng: np.random.Generator, styles: np.ndarray) -> np.ndarray:
    """Learnable images: a class colour plus class stripes (survive crop and flip) plus pixel noise."""
    n = len(labels)
    yy, xx = np.mgrid[0:32, 0:32]
    img = np.empty((n, 3, 32, 32), np.float32)
    for k in range(len(styles)):
        period = 4 + 2 * (k % 5)  # pixels; five periods, horizontal for classes 0-4 (mod 10), vertical for 5-9
        coord = yy if k % 10 < 5 else xx
        stripes = 40.0 * np.sign(np.sin(2 * np.pi * coord / period))  # +-40 grey levels
        img[labels == k] = styles[k][:, None, None] + stripes[None]
    img += rng.normal(0.0, 30.0, img.shape)  # noise std 30 grey levels: not trivially separable by one pixel
    return np.clip(img, 0, 255).astype(np.uint8).reshape(n, -1)


def write_synthetic_cifar10(root: Path, *, n_train: int = 500, n_test: int = 100, seed: int = 0,
                            tar: bool | Literal["only"] = False) -> Path:
    """Write a small learnable CIFAR-10 look-alike in the official pickle layout; deterministic for `seed`.

    n_train is split evenly over the 5 data_batch files. tar=True also writes root/cifar-10-python.tar.gz;
    tar="only" writes only the tarball. Returns the folder written, or the tarball for tar="only".
    """
    return write_synthetic_cifar(root, "cifar10", n_train=n_train, n_test=n_test, seed=seed, tar=tar)


def write_synthetic_cifar(root: Path, dataset: str = "cifar10", *, n_train: int = 500, n_test: int = 100,
                          seed: int = 0, tar: bool | Literal["only"] = False) -> Path:
    """A small learnable look-alike of `dataset` ("cifar10", "cifar100") in its official layout:
    CIFAR-100's one train file with fine and coarse labels and a meta file of 100 fine and 20 coarse
    names. Deterministic for `seed`; `tar` as for write_synthetic_cifar10."""
    info = DATASETS[dataset]
    if n_train < len(info.train_files) or n_test < 1:
        raise ValueError(f"need n_train >= {len(info.train_files)} (one per batch file) and n_test >= 1")
    rng = np.random.default_rng(seed)
    styles = rng.uniform(60, 195, size=(info.num_classes, 3))  # grey levels; room for stripes and noise
    blobs: dict[str, bytes] = {}
    for i, part in enumerate(np.array_split(np.arange(n_train), len(info.train_files))):
        label = f"training batch {i + 1} of {len(info.train_files)} (synthetic)"
        blobs[info.train_files[i]] = _synthetic_batch(info, label, len(part), rng, styles)
    blobs[info.test_file] = _synthetic_batch(info, "testing batch 1 of 1 (synthetic)", n_test, rng, styles)
    blobs[info.meta_file] = pickle.dumps(_synthetic_meta(info, n_train), protocol=2)
    return _write_blobs(Path(root), info, blobs, tar)


def _class_names(info: DatasetInfo) -> tuple[str, ...]:
    return info.class_names or tuple(f"class_{k:02d}" for k in range(info.num_classes))


def _synthetic_batch(info: DatasetInfo, label: str, n: int, rng, styles) -> bytes:
    labels = rng.permutation(np.arange(n) % info.num_classes)  # balanced classes, shuffled
    names = [f"synthetic_{_class_names(info)[y]}_{rng.integers(1 << 30):09d}.png".encode() for y in labels]
    obj = {b"batch_label": label.encode(), info.labels_key.encode(): labels.tolist(),
           b"data": synthetic_images(labels, rng, styles), b"filenames": names}
    if info.name == "cifar100":
        obj[b"coarse_labels"] = (labels // 5).tolist()  # 20 superclasses of 5 classes each
    return pickle.dumps(obj, protocol=2)  # protocol 2, like the official (Python 2 era) files


def _synthetic_meta(info: DatasetInfo, n_train: int) -> dict:
    names = [c.encode() for c in _class_names(info)]
    if info.name == "cifar100":
        return {b"fine_label_names": names, b"coarse_label_names": [f"superclass_{k:02d}".encode() for k in range(20)]}
    return {b"num_cases_per_batch": n_train // len(info.train_files), b"label_names": names,
            b"num_vis": int(np.prod(IMAGE_SHAPE))}


def _write_blobs(root: Path, info: DatasetInfo, blobs: dict[str, bytes], tar: bool | str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if tar:  # mtime 0 in gzip and tar headers: the tarball's bytes are deterministic too
        with open(root / info.tarball, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w") as t:
            for name, blob in blobs.items():
                member = tarfile.TarInfo(f"{info.folder}/{name}")
                member.size, member.mode = len(blob), 0o644
                t.addfile(member, io.BytesIO(blob))
        if tar == "only":
            return root / info.tarball
    folder = root / info.folder
    folder.mkdir(exist_ok=True)
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
    return folder


# --------------------------------------------------------------------------------------------
# A full-size study, made up: the store a GPU run of the lab leaves, for tests and benches
# --------------------------------------------------------------------------------------------
# Final test accuracy of each model at the lab's budget (50 epochs of Adam at lr 1e-4), roughly as
# this machine's JPEG copy of CIFAR-10 gives them: made-up numbers of a plausible size, not results.
FINAL_ACC = {"resnet18": 0.76, "cifarnet": 0.80, "resnet20": 0.84, "resnet110": 0.86}
EPOCH_S = {"resnet18": 31.0, "cifarnet": 8.0, "resnet20": 12.0, "resnet110": 58.0}  # seconds per epoch, a T4's order
PEAK_MIB = {"resnet18": 1450.0, "cifarnet": 420.0, "resnet20": 610.0, "resnet110": 2900.0}
TRAINS = {"he": 0.1, "torch": 0.8, "fixup": 1.0}  # share of BN-less seeds that train, per init (the claim: <= 10 %)


def write_study_store(root: Path, config_path: Path, profiles: tuple[str | None, ...] = (None, "bn-claim"), *,
                      n_test: int = 10_000, seed: int = 0) -> list[str]:
    """A run store with a made-up, plausible result of every run of `profiles` of the matrix at
    `config_path` (the lab's: 27 runs, 33 with the bn-claim arms, 47 distinct in all), laid out as
    the trainer lays it out (spec.json, history.json, result.json; no checkpoints), with `n_test`
    per-image test predictions each, correlated between runs as real models' are, and a gradient-
    flow measurement. Deterministic for `seed`. Returns the run keys written."""
    import random

    from labreport.config import load_config
    from labreport.store import RunStore

    rng = random.Random(seed)
    runs = {r.key: r for p in profiles for r in load_config(config_path, p).runs}
    labels = [i % 10 for i in range(n_test)]
    rng.shuffle(labels)
    hardness = [rng.random() for _ in range(n_test)]  # shared by every model: hard images are hard for all
    store = RunStore(root)
    for key, run in runs.items():
        _write_made_up_run(store, run.spec, labels, hardness, rng)
    _write_made_up_gradflow(Path(root), load_config(config_path).gradflow, rng)
    return list(runs)


def _made_up_target(spec: TrainSpec, rng) -> tuple[float, str]:
    """The run's final test accuracy and its fate: "trains", "stuck" (at chance) or "diverges"."""
    acc = FINAL_ACC[spec.model] - 0.006 * spec.dropout / 0.15 * (spec.model == "resnet20") - 20 * spec.weight_decay
    if spec.norm == "none":
        fate = "trains" if rng.random() < TRAINS[spec.init] else rng.choice(("stuck", "stuck", "diverges"))
        acc = {"he": 0.55, "torch": 0.62, "fixup": 0.80}[spec.init] if fate == "trains" else 0.10
        return acc + rng.gauss(0, 0.01) * (fate == "trains"), fate
    return acc + rng.gauss(0, 0.004), "trains"


def _made_up_history(spec: TrainSpec, target: float, fate: str, rng) -> list[dict]:
    epochs = 3 if fate == "diverges" else spec.epochs
    history = []
    for e in range(1, epochs + 1):
        test = 0.1 if fate != "trains" else target - (target - 0.1) * 0.92 ** (e * 1.6) + rng.gauss(0, 0.004)
        val = 0.1 + rng.gauss(0, 0.002) if fate != "trains" else test + rng.gauss(0, 0.006)
        train = min(0.999, test + 0.12 * e / epochs) if fate == "trains" else 0.1
        t = EPOCH_S[spec.model] * (1 + rng.gauss(0, 0.02))
        history.append({
            "epoch": e, "lr": spec.lr, "train_loss": -math.log(max(train, 0.1)) * 1.1, "train_acc": train,
            "val_loss": -math.log(max(val, 0.05)), "val_acc": val, "test_loss": -math.log(max(test, 0.05)),
            "test_acc": test, "train_time_s": 0.85 * t, "epoch_time_s": t, "images_per_s": 45_000 / (0.85 * t),
            "grad_norm_mean": 1.5, "grad_norm_max": 4.0, "steps": e * (45_000 // spec.batch_size),
            "mem_alloc_mib": PEAK_MIB[spec.model], "mem_reserved_mib": 1.2 * PEAK_MIB[spec.model],
            "micro_batch": spec.batch_size, "precision": "fp16" if spec.norm == "batch" else "fp32",
            "skipped_steps": 0, "loss_scale": 65536.0 if spec.norm == "batch" else None})
    return history


def _predictions(acc: float, labels: list[int], hardness: list[float], rng) -> str:
    """Per-image predicted classes with accuracy `acc` exactly: the images easiest for this run
    (shared hardness plus the run's own noise) right, the others a wrong class."""
    n = len(labels)
    order = sorted(range(n), key=lambda i: hardness[i] + rng.gauss(0, 0.15))
    right = set(order[:round(acc * n)])
    return "".join(str(labels[i] if i in right else (labels[i] + 1 + rng.randrange(9)) % 10) for i in range(n))


def _write_made_up_run(store, spec: TrainSpec, labels: list[int], hardness: list[float], rng) -> None:
    from labreport.engine.trainer import summarize

    target, fate = _made_up_target(spec, rng)
    history = _made_up_history(spec, target, fate, rng)
    n = len(labels)
    if fate == "diverges":
        result = summarize(spec, history, "diverged", 3, "non-finite loss at epoch 3, step 1024")
    else:
        best = max(history, key=lambda h: (h["val_acc"], -h["epoch"]))
        best["test_acc"] = round(best["test_acc"] * n) / n  # the predictions below score exactly this
        result = summarize(spec, history, "completed", None)
    result.update(provenance={"labreport": __version__, "train_version": 1, "device": "Tesla T4 (made up)",
                              "device_type": "cuda", "precision": history[-1]["precision"], "data_official": False,
                              "data_fingerprint": "made-up-study", "threads": 4, "torch": "2.14.1"},
                  oom_events=[], params=0, steps=history[-1]["steps"] if history else 0, skipped_steps=0,
                  n_train=45_000, n_val=5_000, n_test=n)
    from labreport.models import MODELS

    result["params"] = MODELS[spec.model].params
    if result["test_acc_at_best"] is not None:
        result.update(test_predictions=_predictions(result["test_acc_at_best"], labels, hardness, rng),
                      test_labels="".join(map(str, labels)))
    store.write_spec(spec.key, spec.to_dict(), 1)
    store.write_history(spec.key, history)
    store.write_result(spec.key, result)


def _write_made_up_gradflow(root: Path, settings, rng) -> None:
    """A measurement of every gradient-flow cell the settings ask for: the plain nets' gradients
    fall by orders of magnitude towards the first layer, the ResNets' do not, the BN-less ResNet
    under He init explodes."""

    from labreport.store import atomic_write_json
    from labreport.store.gradflow import GRADFLOW_VERSION, cell_dir, cells

    for cell in cells(settings):
        layers = cell.depth  # conv layers and the classifier
        fall = {("resnet", "batch"): 0.2, ("resnet", "none"): -6.0 if cell.init == "he" else 0.3,
                ("plain", "batch"): 2.5, ("plain", "none"): 9.0}[(cell.family, cell.norm)]
        grads = [10 ** (-fall * (1 - i / (layers - 1)) + rng.gauss(0, 0.05)) for i in range(layers)]
        trained = [g * 0.3 for g in grads]
        atomic_write_json(cell_dir(root, cell) / "result.json", {
            "key": cell.key, "cell": asdict(cell), "version": GRADFLOW_VERSION,
            "layers": [{"name": f"layer{i}", "kind": "conv", "numel": 2304} for i in range(layers)],
            "grad_init": grads, "loss_init": 2.3, "logits_std_init": 1.6e8 if fall < 0 else 0.3,
            "grad_trained": trained, "loss_trained": 2.0, "logits_std_trained": 1.0, "diverged_at_step": None,
            "time_s": 4.0, "provenance": {"labreport": __version__, "device": "made up"}})
