"""CIFAR-10 and CIFAR-100: find, download, verify and load them into uint8 tensors.

Files are the canonical python layouts (https://www.cs.toronto.edu/~kriz/cifar.html), pickles whose
`data` is an (N, 3072) uint8 array (1024 red, then green, then blue values, row-major):

    cifar-10-batches-py/   data_batch_1..5, test_batch, batches.meta     labels, label_names (10)
    cifar-100-python/      train, test, meta                             fine_labels, fine_label_names (100)

CIFAR-100's 100 "fine" classes are the ones trained on (its 20 coarse superclasses are not used).
Device-side batching and augmentation: data.py.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from labreport.errors import DataError
from labreport.spec import DATASET_TITLES, NUM_CLASSES

ENV_VAR = "LABREPORT_DATA"  # overrides [data] root of experiments.toml, e.g. on a cluster node
IMAGE_SHAPE = (3, 32, 32)  # channels, height, width; a row of `data` holds 3 * 32 * 32 = 3072 bytes
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DatasetInfo:
    """Where a CIFAR data set lives and how its files are laid out (torchvision's md5s are the
    official files': `official_md5` looks them up)."""

    name: str  # the spec's `dataset`: "cifar10" | "cifar100"
    folder: str  # what the tarball unpacks to
    tarball: str
    url: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    labels_key: str  # the labels trained on
    names_key: str  # their class names, in the meta file
    torchvision: str  # the torchvision.datasets class with the official md5s
    mean: tuple[float, float, float]  # per channel, of the 50,000 training images, [0, 1] pixel units
    std: tuple[float, float, float]
    class_names: tuple[str, ...] | None = None  # the official order, where checked (a wrong order mislabels)

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.name]

    @property
    def title(self) -> str:  # "CIFAR-10"
        return DATASET_TITLES[self.name]

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)

    def official_md5(self) -> dict[str, str]:
        import torchvision.datasets  # ~1.5 s, and little else needs it

        tv = getattr(torchvision.datasets, self.torchvision)
        return dict(tv.train_list + tv.test_list, **{self.meta_file: tv.meta["md5"]})


DATASETS = {d.name: d for d in (
    DatasetInfo("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta", "labels", "label_names",
                "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_CLASSES),
    DatasetInfo("cifar100", "cifar-100-python", "cifar-100-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                ("train",), "test", "meta", "fine_labels", "fine_label_names",
                "CIFAR100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
)}
assert set(DATASETS) == set(NUM_CLASSES), "spec.NUM_CLASSES and DATASETS name the same data sets"


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no useful ==; identity is what we want
class CifarData:
    train_x: torch.Tensor = field(repr=False)  # uint8 (50000, 3, 32, 32), CPU
    train_y: torch.Tensor = field(repr=False)  # int64 (50000,), values in [0, num_classes)
    test_x: torch.Tensor = field(repr=False)  # uint8 (10000, 3, 32, 32), CPU
    test_y: torch.Tensor = field(repr=False)  # int64 (10000,)
    fingerprint: str  # first 16 hex chars of sha256 over the files' names and bytes; provenance of results
    official: bool  # every file has the md5 torchvision lists for the official download
    root: Path  # the folder the tensors came from
    warnings: tuple[str, ...] = ()  # for the user and the report, e.g. "files differ from the official ..."
    info: DatasetInfo = DATASETS["cifar10"]


def resolve_root(configured: str | Path | None, base: Path | None = None) -> Path:
    """The data folder: $LABREPORT_DATA, else `configured` (relative to `base`, the TOML's folder), else ./data."""
    if env := os.environ.get(ENV_VAR, "").strip():
        return Path(env).expanduser().absolute()
    if configured is None or not str(configured).strip():
        return Path("data").absolute()
    path = Path(configured).expanduser()
    return (Path(base) / path if base is not None and not path.is_absolute() else path).absolute()


def _missing_message(info: DatasetInfo, root: Path) -> str:
    return f"put {info.tarball} or the {info.folder}/ folder into {root} (or set {ENV_VAR})"


def _bad(info: DatasetInfo, path: Path, problem: str) -> DataError:
    """An error for a bad tarball or batch file, telling the user how to get a good copy."""
    target = path if path.name == info.tarball else path.parent  # a bad batch file spoils its whole folder
    return DataError(f"{path}: {problem}; delete {target} and {_missing_message(info, target.parent)}")


def _extract(info: DatasetInfo, tarball: Path, root: Path) -> None:
    """Unpack `tarball` into `root` through a temporary folder, so a failure leaves no half-written data."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    except OSError as e:  # e.g. a read-only shared data folder
        raise DataError(f"cannot unpack {tarball} into {root} ({e}): unpack it yourself, or set {ENV_VAR}") from e
    try:
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                tar.extractall(tmp, filter="data")  # rejects absolute paths, '..', links out of the tree
        except tarfile.FilterError as e:
            raise _bad(info, tarball, f"unsafe member ({e})") from e
        except (tarfile.TarError, EOFError, OSError) as e:  # truncated gzip -> EOFError, bad gzip -> OSError
            raise _bad(info, tarball, f"truncated or corrupt ({e})") from e
        if not (tmp / info.folder).is_dir():
            raise _bad(info, tarball, f"no {info.folder}/ folder inside")
        try:
            (tmp / info.folder).rename(root / info.folder)  # atomic: readers never see a partial folder
        except OSError:
            if not (root / info.folder).is_dir():
                raise
            # else another process (a parallel run) unpacked the same tarball first: use its folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def locate(root: Path, *, download: bool = True, dataset: str = "cifar10") -> Path:
    """root/<the data set's folder>, extracting its tarball in root or downloading it if needed."""
    info, root = DATASETS[dataset], Path(root)
    folder = root / info.folder
    if folder.is_dir():
        return folder
    if root.name == info.folder and (root / info.train_files[0]).exists():  # the user pointed at the folder itself
        return root
    tarball = root / info.tarball
    if tarball.is_file():
        _extract(info, tarball, root)
        return folder
    if not download:
        raise DataError(f"{info.title} not found and downloading is off: {_missing_message(info, root)}")
    _download(info, root, tarball)
    if not folder.is_dir():
        raise DataError(f"the download did not produce {folder}: {_missing_message(info, root)}")
    return folder


def _download(info: DatasetInfo, root: Path, tarball: Path) -> None:
    import torchvision.datasets
    from torchvision.datasets import utils as tv_utils  # looked up at call time so tests can monkeypatch it

    try:
        root.mkdir(parents=True, exist_ok=True)
        # download_url checks the tarball's md5 before torchvision extracts it, so its unfiltered
        # extraction only ever sees the official archive.
        tv_utils.download_and_extract_archive(info.url, download_root=root, filename=info.tarball,
                                              md5=getattr(torchvision.datasets, info.torchvision).tgz_md5)
    except Exception as e:  # offline (URLError), md5 mismatch (RuntimeError), disk full (OSError), ...
        tarball.unlink(missing_ok=True)  # a partial download would later read as a corrupt tarball
        problem = " ".join(str(e).split()) or type(e).__name__  # one line, whatever the exception holds
        raise DataError(f"{info.title} not found and the download failed ({tarball}: {problem}): "
                        f"{_missing_message(info, root)}") from e


def fingerprint(named_bytes: Iterable[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in sorted(named_bytes, key=lambda item: item[0]):  # sorted: independent of listing order
        # Length prefixes make the byte stream unambiguous (no two file sets hash the same stream).
        h.update(len(name).to_bytes(8, "little") + name.encode() + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]  # 64 bits: plenty to tell data sets apart, short enough for a report


class _SafeUnpickler(pickle.Unpickler):
    """Only what CIFAR pickles need (numpy arrays, py2-era bytes): a tampered file cannot run code."""

    _ALLOWED = {
        ("_codecs", "encode"),  # bytes written by pickle protocol 2 under Python 3
        ("numpy", "ndarray"), ("numpy", "dtype"),
        *((f"numpy.{core}.multiarray", n) for core in ("core", "_core") for n in ("_reconstruct", "scalar")),
        *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),  # pickle protocol 5
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _get(d: dict, key: str):
    # Official files are Python 2 pickles (str keys under latin1); files written by Python 3 have bytes keys.
    return d[key] if key in d else d.get(key.encode())


def _unpickle(info: DatasetInfo, path: Path, raw: bytes) -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # pickle raises many types on garbage: UnpicklingError, EOFError, ValueError, ...
        raise _bad(info, path, f"not a readable {info.title} pickle ({e})") from e
    if not isinstance(obj, dict):
        raise _bad(info, path, f"holds a {type(obj).__name__}, not a dict")
    return obj


def _batch_arrays(info: DatasetInfo, path: Path, batch: dict) -> tuple[np.ndarray, np.ndarray]:
    data, labels = _get(batch, "data"), _get(batch, info.labels_key)
    if data is None or labels is None:
        raise _bad(info, path, f"no 'data' or '{info.labels_key}' entry")
    data, labels, width, k = np.asarray(data), np.asarray(labels), int(np.prod(IMAGE_SHAPE)), info.num_classes
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[0] == 0 or data.shape[1] != width:
        raise _bad(info, path, f"data is {data.dtype} {data.shape}, expected uint8 (N, {width})")
    if labels.ndim != 1 or len(labels) != len(data):
        raise _bad(info, path, f"{labels.size} labels for {len(data)} images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise _bad(info, path, f"labels are {labels.dtype}, expected integers in [0, {k})")
    if labels.min() < 0 or labels.max() >= k:
        raise _bad(info, path, f"labels span {labels.min()}..{labels.max()}, expected [0, {k})")
    return data, labels.astype(np.int64)


def _check_names(info: DatasetInfo, folder: Path, meta: dict) -> None:
    """The meta file's class names: CIFAR-10's in the official order (another order would silently
    mislabel every per-class result); CIFAR-100's, 100 distinct ones."""
    names = tuple(n.decode() if isinstance(n, bytes) else n for n in _get(meta, info.names_key) or ())
    if info.class_names is not None and names != info.class_names:
        raise _bad(info, folder / info.meta_file, f"{info.names_key} {names} are not {info.title}'s {info.class_names}")
    if len(set(names)) != info.num_classes:
        raise _bad(info, folder / info.meta_file, f"{info.names_key} holds {len(set(names))} distinct names, "
                                                  f"{info.title} has {info.num_classes} classes")


def _stack(arrays: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.concatenate([a for a, _ in arrays]).reshape(-1, *IMAGE_SHAPE)  # one copy, no per-image objects
    return torch.from_numpy(x), torch.from_numpy(np.concatenate([b for _, b in arrays]))


def load(root: Path, *, download: bool = True, dataset: str = "cifar10") -> CifarData:
    """Find (see `locate`), validate and load a CIFAR data set as uint8 CPU tensors with its fingerprint."""
    info = DATASETS[dataset]
    folder = locate(Path(root), download=download, dataset=dataset)
    raw: dict[str, bytes] = {}
    for name in info.files:
        path = folder / name
        if not path.is_file():
            raise _bad(info, path, f"missing (a complete {info.folder}/ holds {', '.join(info.files)})")
        raw[name] = path.read_bytes()
    # Hashing (~0.6 s for the real set) releases the GIL: overlap it with unpickling (~0.8 s).
    with ThreadPoolExecutor(max_workers=1) as pool:
        md5s = pool.submit(lambda: {n: hashlib.md5(b).hexdigest() for n, b in raw.items()})
        fingerprint_ = pool.submit(fingerprint, raw.items())
        _check_names(info, folder, _unpickle(info, folder / info.meta_file, raw[info.meta_file]))
        train = [_batch_arrays(info, folder / n, _unpickle(info, folder / n, raw[n])) for n in info.train_files]
        test = [_batch_arrays(info, folder / info.test_file,
                              _unpickle(info, folder / info.test_file, raw[info.test_file]))]
        official = info.official_md5()
        differing = [n for n in info.files if md5s.result()[n] != official[n]]
    warnings = ()
    if differing:
        warnings = (f"{', '.join(differing)} in {folder} differ from the official {info.title} files (md5 check): "
                    "accepted, results may differ from the paper's data",)
    (train_x, train_y), (test_x, test_y) = _stack(train), _stack(test)
    return CifarData(train_x, train_y, test_x, test_y, fingerprint=fingerprint_.result(),
                     official=not differing, root=folder, warnings=warnings, info=info)

