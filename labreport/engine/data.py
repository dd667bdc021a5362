"""CIFAR-10: find, download, verify and load it into tensors; batch and augment it on the device.

The data set is one uint8 tensor per split (airbench's `CifarLoader` idea): an epoch is a permutation
of indices; normalisation and augmentation are batched tensor ops on the device. No PIL, no workers.

Files are the canonical python layout (https://www.cs.toronto.edu/~kriz/cifar.html):
`cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`, pickles whose `data` is a
(N, 3072) uint8 array (1024 red, then green, then blue values, row-major) and `labels` a list.
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
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from labreport.errors import DataError

CIFAR_DIR = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ENV_VAR = "LABREPORT_DATA"  # overrides [data] root of experiments.toml, e.g. on a cluster node
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
FILES = TRAIN_FILES + (TEST_FILE, META_FILE)
# Per-channel mean / std of the 50,000 official training images, in [0, 1] pixel units.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
AUG_PAD = 4  # pixels of padding before the random crop (He et al. 2015, sec. 4.2)
IMAGE_SHAPE = (3, 32, 32)  # channels, height, width; a row of `data` holds 3 * 32 * 32 = 3072 bytes


def resolve_root(configured: str | Path | None, base: Path | None = None) -> Path:
    """The data folder: $LABREPORT_DATA, else `configured` (relative to `base`, the TOML's folder), else ./data."""
    if env := os.environ.get(ENV_VAR, "").strip():
        return Path(env).expanduser().absolute()
    if configured is None or not str(configured).strip():
        return Path("data").absolute()
    path = Path(configured).expanduser()
    return (Path(base) / path if base is not None and not path.is_absolute() else path).absolute()


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no useful ==; identity is what we want
class Cifar10:
    train_x: torch.Tensor = field(repr=False)  # uint8 (50000, 3, 32, 32), CPU
    train_y: torch.Tensor = field(repr=False)  # int64 (50000,), values in [0, 10)
    test_x: torch.Tensor = field(repr=False)  # uint8 (10000, 3, 32, 32), CPU
    test_y: torch.Tensor = field(repr=False)  # int64 (10000,)
    fingerprint: str  # first 16 hex chars of sha256 over the 7 files' names and bytes; provenance of results
    official: bool  # every file has the md5 torchvision lists for the official download
    root: Path  # the cifar-10-batches-py folder the tensors came from
    warnings: tuple[str, ...] = ()  # for the user and the report, e.g. "files differ from the official ..."


def _missing_message(root: Path) -> str:
    return f"put {TARBALL} or the {CIFAR_DIR}/ folder into {root} (or set {ENV_VAR})"


def _bad(path: Path, problem: str) -> DataError:
    """An error for a bad tarball or batch file, telling the user how to get a good copy."""
    target = path if path.name == TARBALL else path.parent  # a bad batch file spoils its whole folder
    return DataError(f"{path}: {problem}; delete {target} and {_missing_message(target.parent)}")


def _extract(tarball: Path, root: Path) -> None:
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
            raise _bad(tarball, f"unsafe member ({e})") from e
        except (tarfile.TarError, EOFError, OSError) as e:  # truncated gzip -> EOFError, bad gzip -> OSError
            raise _bad(tarball, f"truncated or corrupt ({e})") from e
        if not (tmp / CIFAR_DIR).is_dir():
            raise _bad(tarball, f"no {CIFAR_DIR}/ folder inside")
        try:
            (tmp / CIFAR_DIR).rename(root / CIFAR_DIR)  # atomic: readers never see a partial folder
        except OSError:
            if not (root / CIFAR_DIR).is_dir():
                raise
            # else another process (a parallel run) unpacked the same tarball first: use its folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def locate(root: Path, *, download: bool = True) -> Path:
    """Return root/cifar-10-batches-py, extracting root/cifar-10-python.tar.gz or downloading it if needed."""
    root = Path(root)
    folder = root / CIFAR_DIR
    if folder.is_dir():
        return folder
    if root.name == CIFAR_DIR and (root / TRAIN_FILES[0]).exists():  # the user pointed at the folder itself
        return root
    tarball = root / TARBALL
    if tarball.is_file():
        _extract(tarball, root)
        return folder
    if not download:
        raise DataError(f"CIFAR-10 not found and downloading is off: {_missing_message(root)}")
    from torchvision.datasets import CIFAR10
    from torchvision.datasets import utils as tv_utils  # looked up at call time so tests can monkeypatch it

    try:
        root.mkdir(parents=True, exist_ok=True)
        # download_url checks the tarball's md5 before torchvision extracts it, so its unfiltered
        # extraction only ever sees the official archive.
        tv_utils.download_and_extract_archive(URL, download_root=root, filename=TARBALL, md5=CIFAR10.tgz_md5)
    except Exception as e:  # offline (URLError), md5 mismatch (RuntimeError), disk full (OSError), ...
        tarball.unlink(missing_ok=True)  # a partial download would later read as a corrupt tarball
        problem = " ".join(str(e).split()) or type(e).__name__  # one line, whatever the exception holds
        raise DataError(f"CIFAR-10 not found and the download failed ({tarball}: {problem}): "
                        f"{_missing_message(root)}") from e
    if not folder.is_dir():
        raise DataError(f"the download did not produce {folder}: {_missing_message(root)}")
    return folder


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


def _unpickle(path: Path, raw: bytes) -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # pickle raises many types on garbage: UnpicklingError, EOFError, ValueError, ...
        raise _bad(path, f"not a readable CIFAR-10 pickle ({e})") from e
    if not isinstance(obj, dict):
        raise _bad(path, f"holds a {type(obj).__name__}, not a dict")
    return obj


def _batch_arrays(path: Path, batch: dict) -> tuple[np.ndarray, np.ndarray]:
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        raise _bad(path, "no 'data' or 'labels' entry")
    data, labels, width = np.asarray(data), np.asarray(labels), int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[0] == 0 or data.shape[1] != width:
        raise _bad(path, f"data is {data.dtype} {data.shape}, expected uint8 (10000, {width})")
    if labels.ndim != 1 or len(labels) != len(data):
        raise _bad(path, f"{labels.size} labels for {len(data)} images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise _bad(path, f"labels are {labels.dtype}, expected integers in [0, {len(CLASSES)})")
    if labels.min() < 0 or labels.max() >= len(CLASSES):
        raise _bad(path, f"labels span {labels.min()}..{labels.max()}, expected [0, {len(CLASSES)})")
    return data, labels.astype(np.int64)


def _stack(arrays: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.concatenate([a for a, _ in arrays]).reshape(-1, *IMAGE_SHAPE)  # one copy, no per-image objects
    return torch.from_numpy(x), torch.from_numpy(np.concatenate([b for _, b in arrays]))


def load_cifar10(root: Path, *, download: bool = True) -> Cifar10:
    """Find (see `locate`), validate and load CIFAR-10 as uint8 CPU tensors with its fingerprint."""
    folder = locate(Path(root), download=download)
    raw: dict[str, bytes] = {}
    for name in FILES:
        path = folder / name
        if not path.is_file():
            raise _bad(path, f"missing (a complete {CIFAR_DIR}/ holds {', '.join(FILES)})")
        raw[name] = path.read_bytes()
    # Hashing (~0.6 s for the real set) releases the GIL: overlap it with unpickling (~0.8 s).
    with ThreadPoolExecutor(max_workers=1) as pool:
        md5s = pool.submit(lambda: {n: hashlib.md5(b).hexdigest() for n, b in raw.items()})
        fingerprint_ = pool.submit(fingerprint, raw.items())
        names = _get(_unpickle(folder / META_FILE, raw[META_FILE]), "label_names") or ()
        if tuple(n.decode() if isinstance(n, bytes) else n for n in names) != CLASSES:
            # a different class order would silently mislabel every per-class result
            raise _bad(folder / META_FILE, f"label_names {names} are not CIFAR-10's {CLASSES}")
        train = [_batch_arrays(folder / n, _unpickle(folder / n, raw[n])) for n in TRAIN_FILES]
        test = [_batch_arrays(folder / TEST_FILE, _unpickle(folder / TEST_FILE, raw[TEST_FILE]))]
        # torchvision's md5 table, not a copy; imported here as it takes ~1.5 s and little else needs it
        from torchvision.datasets import CIFAR10

        official_md5 = dict(CIFAR10.train_list + CIFAR10.test_list, **{META_FILE: CIFAR10.meta["md5"]})
        differing = [n for n in FILES if md5s.result()[n] != official_md5[n]]
    warnings = ()
    if differing:
        warnings = (f"{', '.join(differing)} in {folder} differ from the official CIFAR-10 files (md5 check): "
                    "accepted, results may differ from the paper's data",)
    (train_x, train_y), (test_x, test_y) = _stack(train), _stack(test)
    return Cifar10(train_x, train_y, test_x, test_y, fingerprint=fingerprint_.result(),
                   official=not differing, root=folder, warnings=warnings)


# --- device-side batching -------------------------------------------------------------------------

def _affine(mean, std, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # (x / 255 - mean) / std == x * scale - shift. Made once per epoch: each host-to-GPU copy stalls the CPU.
    std_t = torch.tensor(std, dtype=torch.float64).view(-1, 1, 1)
    scale, shift = 1.0 / (255.0 * std_t), torch.tensor(mean, dtype=torch.float64).view(-1, 1, 1) / std_t
    return scale.to(device, dtype), shift.to(device, dtype)


def normalize(x_uint8: torch.Tensor, mean=MEAN, std=STD, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(..., 3, H, W) uint8 -> (x / 255 - mean) / std as `dtype`, on x's device."""
    if x_uint8.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {x_uint8.dtype}")
    scale, shift = _affine(mean, std, x_uint8.device, dtype)
    return x_uint8.to(dtype).mul_(scale).sub_(shift)


def _draw_crop_flip(n: int, pad: int, flip: bool, generator: torch.Generator, device: torch.device):
    # The only random draws of an augmented batch, always in this order (resuming replays them).
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=device)  # dy, dx
    flips = torch.rand(n, generator=generator, device=device) < 0.5 if flip else None  # p = 0.5
    return offsets, flips


def random_crop_flip(x: torch.Tensor, *, pad: int = AUG_PAD, generator: torch.Generator,
                     flip: bool = True) -> torch.Tensor:
    """He et al. 2015 (sec. 4.2): pad `pad` zeros per side, random crop back to H x W, mirror with p=0.5.

    Call it on normalised images: the zero padding is then the data set's mean colour, so the border
    carries no signal (torchvision's RandomCrop on raw pixels pads black instead). Crops and flips are
    one gather over the padded batch; `generator` must live on x's device. pad=0, flip=False returns x.
    """
    if generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device}, images on {x.device}: use one generator per device")
    n, c, h, w = x.shape
    offsets, flips = _draw_crop_flip(n, pad, flip, generator, x.device)
    if pad == 0 and not flip:
        return x
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (n, h) rows of the padded image
    cols = torch.arange(w, device=x.device).expand(n, w)
    if flips is not None:
        cols = torch.where(flips[:, None], (w - 1) - cols, cols)  # a mirrored crop reads columns right to left
    cols = offsets[1, :, None] + cols  # (n, w) columns of the padded image
    index = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)


def split_train_val(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint sorted (train, val) indices into range(n); val is a seeded random `val_size` of them."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def subset_indices(n: int, k: int, seed: int) -> torch.Tensor:
    """The first k of a seeded permutation of range(n): subsets for one seed are nested as k grows."""
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}], got {k}")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch of `iterate_batches` (for learning-rate schedules)."""
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(x_uint8: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool, augment: bool,
                    generator: torch.Generator | None, channels_last: bool = False,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (normalised float32 images, labels) on the device the images live on.

    Randomness comes only from `generator` (on that device), in a fixed order: one randperm of the
    epoch, then one crop/flip draw per batch. So the epoch is reproducible from the generator's state
    (a resumed run restores it from its checkpoint).
    """
    device = x_uint8.device
    if (shuffle or augment) and generator is None:
        raise ValueError("shuffle and augment need a torch.Generator")
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device}, batches are made on {device}")
    n, (scale, shift) = len(x_uint8), _affine(MEAN, STD, device, torch.float32)
    order = torch.randperm(n, generator=generator, device=device) if shuffle else torch.arange(n, device=device)
    for b in range(num_batches(n, batch_size, drop_last)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        xb = x_uint8[idx].float().mul_(scale).sub_(shift)  # = normalize()
        if augment:
            xb = random_crop_flip(xb, pad=AUG_PAD, generator=generator)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yield xb, y[idx]

