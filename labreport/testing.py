"""Helpers for tests of labreport and of a user's own code around it: a small learnable CIFAR-10
look-alike in the official file format, and a TrainSpec from its dictionary. Not used by labreport
itself."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np

from labreport.engine.data import (CIFAR_DIR, CLASSES, IMAGE_SHAPE, META_FILE, TARBALL, TEST_FILE, TRAIN_FILES,
                                   fingerprint)
from labreport.spec import TrainSpec


def spec_from_dict(d: dict[str, Any]) -> TrainSpec:
    """A TrainSpec from TrainSpec.to_dict() (spec.json, result.json's "spec")."""
    d = dict(d)
    d["milestones"] = tuple(d.get("milestones", ()))
    return TrainSpec(**d)


def fingerprint_files(paths: Iterable[str | Path]) -> str:
    """The data fingerprint of files on disk: sha256 over (file name, bytes) pairs sorted by name;
    folders do not matter, so it is stable across machines (what load_cifar10 records)."""
    return fingerprint((Path(p).name, Path(p).read_bytes()) for p in paths)


def synthetic_images(labels: np.ndarray, rng: np.random.Generator, styles: np.ndarray) -> np.ndarray:
    """Learnable images: a class colour plus class stripes (survive crop and flip) plus pixel noise."""
    n = len(labels)
    yy, xx = np.mgrid[0:32, 0:32]
    img = np.empty((n, 3, 32, 32), np.float32)
    for k in range(len(CLASSES)):
        period = 4 + 2 * (k % 5)  # pixels; five periods, horizontal for classes 0-4, vertical for 5-9
        coord = yy if k < 5 else xx
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
    if n_train < len(TRAIN_FILES) or n_test < 1:
        raise ValueError(f"need n_train >= {len(TRAIN_FILES)} (one per batch file) and n_test >= 1")
    rng = np.random.default_rng(seed)
    styles = rng.uniform(60, 195, size=(len(CLASSES), 3))  # grey levels; room for stripes and noise
    blobs: dict[str, bytes] = {}

    def batch(label: str, n: int) -> bytes:
        labels = rng.permutation(np.arange(n) % len(CLASSES))  # balanced classes, shuffled
        names = [f"synthetic_{CLASSES[y]}_{rng.integers(1 << 30):09d}.png".encode() for y in labels]
        obj = {b"batch_label": label.encode(), b"labels": labels.tolist(),
               b"data": synthetic_images(labels, rng, styles), b"filenames": names}
        return pickle.dumps(obj, protocol=2)  # protocol 2, like the official (Python 2 era) files

    for i, part in enumerate(np.array_split(np.arange(n_train), len(TRAIN_FILES))):
        blobs[TRAIN_FILES[i]] = batch(f"training batch {i + 1} of 5 (synthetic)", len(part))
    blobs[TEST_FILE] = batch("testing batch 1 of 1 (synthetic)", n_test)
    meta = {b"num_cases_per_batch": n_train // len(TRAIN_FILES), b"label_names": [c.encode() for c in CLASSES],
            b"num_vis": int(np.prod(IMAGE_SHAPE))}
    blobs[META_FILE] = pickle.dumps(meta, protocol=2)

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if tar:  # mtime 0 in gzip and tar headers: the tarball's bytes are deterministic too
        with open(root / TARBALL, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w") as t:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(f"{CIFAR_DIR}/{name}")
                info.size, info.mode = len(blob), 0o644
                t.addfile(info, io.BytesIO(blob))
        if tar == "only":
            return root / TARBALL
    folder = root / CIFAR_DIR
    folder.mkdir(exist_ok=True)
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
    return folder
