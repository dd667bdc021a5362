"""Tests for labreport.engine.data: finding, validating and loading CIFAR-10, and device-side batching.

All data is generated (write_synthetic_cifar10); nothing is downloaded (see the `no_download` fixture).
"""
from __future__ import annotations

import io
import pickle
import shutil
import tarfile
from pathlib import Path, PurePosixPath

import pytest
import torch
import torch.nn.functional as F

from labreport import testing
from labreport.engine import data, datasets
from labreport.errors import DataError

C10 = datasets.DATASETS["cifar10"]


@pytest.fixture(autouse=True)
def _offline(no_download):
    """Every test here runs offline; a test that expects a download attempt inspects `no_download`."""


def _copy(cifar_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(cifar_dir / C10.folder, tmp_path / C10.folder)
    return tmp_path


def _rewrite(path: Path, change) -> None:
    batch = pickle.loads(path.read_bytes())
    change(batch)
    path.write_bytes(pickle.dumps(batch, protocol=2))


# --- loading --------------------------------------------------------------------------------------

def test_synthetic_round_trip(cifar_dir):
    d = datasets.load(cifar_dir, download=False)
    assert d.train_x.shape == (500, 3, 32, 32) and d.train_x.dtype == torch.uint8
    assert d.train_y.shape == (500,) and d.train_y.dtype == torch.int64
    assert d.test_x.shape == (100, 3, 32, 32) and d.test_x.dtype == torch.uint8
    assert d.test_y.shape == (100,) and d.test_y.dtype == torch.int64
    assert d.train_x.device.type == "cpu"
    for y in (d.train_y, d.test_y):
        assert int(y.min()) >= 0 and int(y.max()) < 10
    assert torch.bincount(d.train_y, minlength=10).tolist() == [50] * 10  # balanced by construction
    assert d.root == cifar_dir / C10.folder
    assert d.official is False
    assert len(d.warnings) == 1 and "data_batch_1" in d.warnings[0] and "official" in d.warnings[0]
    assert len(d.fingerprint) == 16 and int(d.fingerprint, 16) >= 0
    assert datasets.load(cifar_dir, download=False).fingerprint == d.fingerprint
    assert testing.fingerprint_files(sorted(d.root.iterdir(), reverse=True)) == d.fingerprint


def test_fingerprint_changes_with_one_byte(cifar_dir, tmp_path):
    root = _copy(cifar_dir, tmp_path)
    before = datasets.load(root, download=False).fingerprint
    path = root / C10.folder / "data_batch_3"
    raw = path.read_bytes()
    at = raw.index(b"synthetic_")  # inside a file name: the pickle stays valid
    path.write_bytes(raw[:at] + b"S" + raw[at + 1:])
    after = datasets.load(root, download=False)
    assert after.fingerprint != before
    assert after.train_x.shape == (500, 3, 32, 32)


def test_synthetic_is_deterministic(tmp_path):
    a = testing.write_synthetic_cifar10(tmp_path / "a", n_train=50, n_test=10, seed=3, tar=True)
    b = testing.write_synthetic_cifar10(tmp_path / "b", n_train=50, n_test=10, seed=3, tar=True)
    c = testing.write_synthetic_cifar10(tmp_path / "c", n_train=50, n_test=10, seed=4)
    for name in C10.files:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "data_batch_1").read_bytes() != (c / "data_batch_1").read_bytes()
    assert (tmp_path / "a" / C10.tarball).read_bytes() == (tmp_path / "b" / C10.tarball).read_bytes()
    # n_train is split evenly over the five batch files
    sizes = [len(pickle.loads((a / n).read_bytes())[b"labels"]) for n in C10.train_files]
    assert sizes == [10] * 5


def test_synthetic_images_are_learnable(cifar_dir):
    """Class mean colours alone, after augmentation, separate the classes far above chance (10%)."""
    d = datasets.load(cifar_dir, download=False)
    g = torch.Generator().manual_seed(0)
    train = data.random_crop_flip(data.normalize(d.train_x), generator=g).mean((2, 3))
    test = data.normalize(d.test_x).mean((2, 3))
    centroids = torch.stack([train[d.train_y == k].mean(0) for k in range(10)])
    accuracy = (torch.cdist(test, centroids).argmin(1) == d.test_y).float().mean().item()
    assert accuracy > 0.5


def test_load_from_tarball_only(cifar_dir, tmp_path):
    tarball = testing.write_synthetic_cifar10(tmp_path, n_train=500, n_test=100, seed=0, tar="only")
    assert tarball == tmp_path / C10.tarball and not (tmp_path / C10.folder).exists()
    d = datasets.load(tmp_path, download=False)
    assert d.root == tmp_path / C10.folder and d.root.is_dir()
    assert d.fingerprint == datasets.load(cifar_dir, download=False).fingerprint  # same seed, same files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([C10.folder, C10.tarball])  # no temp left


def test_root_may_be_the_batches_folder_itself(cifar_dir):
    assert datasets.locate(cifar_dir / C10.folder, download=False) == cifar_dir / C10.folder


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_tarball(tmp_path, damage):
    tarball = testing.write_synthetic_cifar10(tmp_path, n_train=50, n_test=10, tar="only")
    raw = tarball.read_bytes()
    tarball.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"this is not a gzip file" * 10)
    with pytest.raises(DataError, match="truncated or corrupt") as e:
        datasets.load(tmp_path, download=False)
    assert str(tarball) in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [C10.tarball]  # no half-extracted folder


def test_unsafe_tarball_is_rejected(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / C10.tarball, "w:gz") as t:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DataError, match="unsafe"):
        datasets.load(root, download=False)
    assert not (tmp_path / "escaped.txt").exists()


def test_missing_batch_file_is_named(cifar_dir, tmp_path):
    root = _copy(cifar_dir, tmp_path)
    (root / C10.folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match="data_batch_4: missing"):
        datasets.load(root, download=False)


@pytest.mark.parametrize("change, problem", [
    (lambda b: b.update({b"data": b[b"data"][:, :-1]}), "expected uint8"),
    (lambda b: b.update({b"data": b[b"data"].astype("float32")}), "expected uint8"),
    (lambda b: b[b"labels"].__setitem__(0, 10), "labels span"),
    (lambda b: b[b"labels"].__setitem__(0, -1), "labels span"),
    (lambda b: b.update({b"labels": b[b"labels"][:-1]}), "labels for"),
    (lambda b: b.update({b"labels": [str(x) for x in b[b"labels"]]}), "expected integers"),
    (lambda b: b.pop(b"data"), "no 'data'"),
])
def test_malformed_batch_is_rejected(cifar_dir, tmp_path, change, problem):
    root = _copy(cifar_dir, tmp_path)
    _rewrite(root / C10.folder / "data_batch_2", change)
    with pytest.raises(DataError, match=problem) as e:
        datasets.load(root, download=False)
    assert "data_batch_2" in str(e.value)


@pytest.mark.parametrize("content", [
    b"definitely not a pickle",
    b"",
    pickle.dumps([1, 2, 3]),  # a pickle, but not a dict
    pickle.dumps({b"data": PurePosixPath("x")}),  # a class CIFAR pickles never contain: refused, not run
])
def test_unreadable_batch_is_rejected(cifar_dir, tmp_path, content):
    root = _copy(cifar_dir, tmp_path)
    (root / C10.folder / "test_batch").write_bytes(content)
    with pytest.raises(DataError, match="test_batch"):
        datasets.load(root, download=False)


def test_wrong_class_names_are_rejected(cifar_dir, tmp_path):
    root = _copy(cifar_dir, tmp_path)
    _rewrite(root / C10.folder / "batches.meta", lambda m: m[b"label_names"].reverse())
    with pytest.raises(DataError, match="label_names"):
        datasets.load(root, download=False)


def test_reads_python2_style_pickles(cifar_dir, tmp_path):
    """Official files are Python 2 pickles: str keys once read with latin1. Both key kinds load."""
    root = _copy(cifar_dir, tmp_path)
    _rewrite(root / C10.folder / "data_batch_1",
             lambda b: [b.update({k.decode(): b.pop(k)}) for k in list(b)])
    d = datasets.load(root, download=False)
    assert d.train_x.shape == (500, 3, 32, 32)


# --- finding and downloading ----------------------------------------------------------------------

def test_offline_and_nothing_present(tmp_path, no_download):
    root = tmp_path / "empty"
    with pytest.raises(DataError) as e:
        datasets.load(root)
    message = str(e.value)
    assert f"put {C10.tarball} or the {C10.folder}/ folder into {root} (or set LABREPORT_DATA)" in message
    assert "network is unreachable" in message
    assert len(no_download) == 1
    from torchvision.datasets import CIFAR10
    args, kwargs = no_download[0]
    assert C10.url in args and kwargs["md5"] == CIFAR10.tgz_md5 and kwargs["filename"] == C10.tarball


def test_download_false_never_tries(tmp_path, no_download):
    with pytest.raises(DataError, match=str(tmp_path)):
        datasets.locate(tmp_path, download=False)
    assert no_download == []


def test_download_success_is_used(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):
        testing.write_synthetic_cifar10(Path(download_root), n_train=50, n_test=10)

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    assert datasets.load(tmp_path / "new").train_x.shape == (50, 3, 32, 32)


def test_resolve_root_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LABREPORT_DATA", raising=False)
    assert datasets.resolve_root(None) == tmp_path / "data"
    assert datasets.resolve_root("") == tmp_path / "data"
    assert datasets.resolve_root("cfg", base=Path("/etc/lab")) == Path("/etc/lab/cfg")
    assert datasets.resolve_root("/abs/cfg", base=Path("/etc/lab")) == Path("/abs/cfg")
    assert datasets.resolve_root("cfg") == tmp_path / "cfg"
    monkeypatch.setenv("LABREPORT_DATA", "/from/env")
    assert datasets.resolve_root("cfg", base=Path("/etc/lab")) == Path("/from/env")
    assert datasets.resolve_root(None) == Path("/from/env")
    monkeypatch.setenv("LABREPORT_DATA", "")  # an empty variable counts as unset
    assert datasets.resolve_root(None) == tmp_path / "data"


# --- batching and augmentation --------------------------------------------------------------------

def test_normalize():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2)
    out = data.normalize(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    mean, std = torch.tensor(data.MEAN).view(3, 1, 1), torch.tensor(data.STD).view(3, 1, 1)
    torch.testing.assert_close(out[0], (-mean / std).expand(3, 2, 2))
    torch.testing.assert_close(out[1], ((1 - mean) / std).expand(3, 2, 2))
    assert data.normalize(x, dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(TypeError):
        data.normalize(out)


def _images(n=16, seed=0):
    return data.normalize(torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed),
                                        dtype=torch.uint8))


def test_random_crop_flip_shape_and_determinism():
    x = _images(64)
    a = data.random_crop_flip(x, generator=torch.Generator().manual_seed(1))
    b = data.random_crop_flip(x, generator=torch.Generator().manual_seed(1))
    c = data.random_crop_flip(x, generator=torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_crop_flip_outputs_are_crops_of_the_padded_input():
    x, pad = _images(16), 4
    out = data.random_crop_flip(x, pad=pad, generator=torch.Generator().manual_seed(0))
    padded = F.pad(x, (pad,) * 4)
    seen_flip = seen_plain = False
    for i in range(len(x)):
        crops = [(padded[i, :, dy:dy + 32, dx:dx + 32], dy, dx) for dy in range(9) for dx in range(9)]
        plain = any(torch.equal(out[i], c) for c, _, _ in crops)
        flipped = any(torch.equal(out[i], c.flip(-1)) for c, _, _ in crops)
        assert plain or flipped, f"image {i} is not a (flipped) crop"
        seen_plain |= plain
        seen_flip |= flipped
    assert seen_plain and seen_flip


def test_random_crop_flip_identity_and_flip_only_paths():
    x = _images(32)
    g = torch.Generator().manual_seed(0)
    assert data.random_crop_flip(x, pad=0, flip=False, generator=g) is x
    out = data.random_crop_flip(x, pad=0, generator=g)
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped | kept).all()) and 0 < int(flipped.sum()) < len(x)


def test_split_train_val():
    train, val = data.split_train_val(100, 20, seed=0)
    assert len(train) == 80 and len(val) == 20
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(100))
    again = data.split_train_val(100, 20, seed=0)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert not torch.equal(val, data.split_train_val(100, 20, seed=1)[1])
    train, val = data.split_train_val(100, 0, seed=0)
    assert len(val) == 0 and torch.equal(train, torch.arange(100))
    with pytest.raises(ValueError):
        data.split_train_val(10, 10, seed=0)


def test_subset_indices():
    small, large = data.subset_indices(100, 10, seed=5), data.subset_indices(100, 30, seed=5)
    assert len(small) == 10 and len(set(large.tolist())) == 30
    assert torch.equal(small, large[:10])  # nested: growing k only adds examples
    assert not torch.equal(small, data.subset_indices(100, 10, seed=6))
    with pytest.raises(ValueError):
        data.subset_indices(5, 6, seed=0)


def _epoch(x, y, seed, **kwargs):
    options = dict(shuffle=True, augment=True, generator=torch.Generator().manual_seed(seed)) | kwargs
    return list(data.iterate_batches(x, y, 32, **options))


@pytest.mark.parametrize("drop_last", [False, True])
def test_iterate_batches_covers_every_index_once(drop_last):
    n = 100
    x, y = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.arange(n)  # label = index
    batches = _epoch(x, y, seed=0, drop_last=drop_last)
    assert len(batches) == data.num_batches(n, 32, drop_last) == (3 if drop_last else 4)
    seen = torch.cat([yb for _, yb in batches])
    if drop_last:
        assert len(seen) == 96 and len(set(seen.tolist())) == 96
    else:
        assert torch.equal(seen.sort().values, torch.arange(n)) and not torch.equal(seen, torch.arange(n))
    assert all(xb.dtype == torch.float32 and xb.shape[1:] == (3, 32, 32) for xb, _ in batches)


def test_iterate_batches_is_reproducible_from_the_generator_state():
    n = 100
    x, y = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.arange(n)
    a, b, c = _epoch(x, y, seed=0), _epoch(x, y, seed=0), _epoch(x, y, seed=1)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(a[0][1], c[0][1])
    # generator state, not the seed, is what matters: a restored state replays the epoch
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    first = [yb for _, yb in data.iterate_batches(x, y, 32, shuffle=True, augment=True, generator=g)]
    g.set_state(state)
    second = [yb for _, yb in data.iterate_batches(x, y, 32, shuffle=True, augment=True, generator=g)]
    assert all(torch.equal(p, q) for p, q in zip(first, second))


def test_iterate_batches_plain_order_and_options():
    x, y = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8), torch.arange(10)
    batches = list(data.iterate_batches(x, y, 4, shuffle=False, augment=False, generator=None, channels_last=True))
    assert [yb.tolist() for _, yb in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    torch.testing.assert_close(batches[0][0], data.normalize(x[:4]))
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="Generator"):
        next(data.iterate_batches(x, y, 4, shuffle=True, augment=False, generator=None))


@pytest.mark.gpu
def test_iterate_batches_on_cuda():
    x, y = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8), torch.arange(100)
    g = torch.Generator(device="cuda").manual_seed(0)
    batches = list(data.iterate_batches(x.cuda(), y.cuda(), 32, shuffle=True, augment=True, generator=g))
    assert batches[0][0].device.type == "cuda"
    assert torch.equal(torch.cat([yb for _, yb in batches]).sort().values.cpu(), torch.arange(100))
