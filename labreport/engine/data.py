"""Batches on the device: normalise, augment (pad + random crop + flip), split and subset indices.

The data set is one uint8 tensor per split (airbench's `CifarLoader` idea): an epoch is a permutation
of indices; normalisation and augmentation are batched tensor ops on the device. No PIL, no workers.
Finding and loading the files: datasets.py.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from labreport.engine.datasets import DATASETS

MEAN, STD = DATASETS["cifar10"].mean, DATASETS["cifar10"].std  # the lab's data set; others pass their own
AUG_PAD = 4  # pixels of padding before the random crop (He et al. 2015, sec. 4.2)


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
                    generator: torch.Generator | None, channels_last: bool = False, drop_last: bool = False,
                    mean=MEAN, std=STD) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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
    n, (scale, shift) = len(x_uint8), _affine(mean, std, device, torch.float32)
    order = torch.randperm(n, generator=generator, device=device) if shuffle else torch.arange(n, device=device)
    for b in range(num_batches(n, batch_size, drop_last)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        xb = x_uint8[idx].float().mul_(scale).sub_(shift)  # = normalize()
        if augment:
            xb = random_crop_flip(xb, pad=AUG_PAD, generator=generator)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yield xb, y[idx]

