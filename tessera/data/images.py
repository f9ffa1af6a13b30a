"""``load_images``: one call for every labelled image dataset, returning float32 [0, 1] NCHW + int64 labels.

Everything is decoded in memory from the released files (nothing is written to the data root, which may
be read-only). MNIST train loads in well under 2 s.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import DataError
from .cifar import read_cifar_batches, read_cifar_tar
from .fetch import require
from .idx import read_idx
from .registry import get_spec
from .stl10 import read_stl10_images, read_stl10_labels
from .svhn import read_svhn_mat
from .usps import read_usps_h5, read_usps_libsvm

__all__ = ["load_images", "IMAGE_DATASETS", "to_float_images"]

IMAGE_DATASETS = ("mnist", "fashion_mnist", "kmnist", "usps", "svhn", "cifar10", "cifar100", "stl10", "cifar_samples")


def to_float_images(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, C, H, W) -> float32 (N, C, H, W) in [0, 1]; float input is clipped to [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.dtype == torch.uint8:
        t = t.to(torch.float32).div_(255.0)
    else:
        t = t.to(torch.float32).clamp_(0.0, 1.0)
    return t.unsqueeze(1) if t.dim() == 3 else t  # (N, H, W) -> (N, 1, H, W)


def _read(name: str, split: str, root, download: bool, verify: bool, source: str | None, coarse: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    loc = require(name, split, root, download=download, verify=verify, source=source)
    spec = get_spec(name)
    if name in ("mnist", "fashion_mnist", "kmnist"):
        md5 = {f.key: f.md5 for f in spec.files_for(split)}
        return read_idx(loc["images"], md5["images"]), read_idx(loc["labels"], md5["labels"])
    if name == "usps":
        if loc.source == "h5":
            return read_usps_h5(loc["h5"], split)
        return read_usps_libsvm(loc["libsvm"])
    if name == "svhn":
        return read_svhn_mat(loc["mat"])
    if name in ("cifar10", "cifar100"):
        label_key = "labels" if name == "cifar10" else ("coarse_labels" if coarse else "fine_labels")
        if name == "cifar10":
            batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
            folder = "cifar-10-batches-py"
        else:
            batches, folder = [split], "cifar-100-python"
        if loc.source == "tar":
            return read_cifar_tar(loc["tar"], [f"{folder}/{b}" for b in batches], label_key)
        return read_cifar_batches([loc[b] for b in batches], label_key)
    if name == "stl10":
        return read_stl10_images(loc[f"{split}_X.bin"]), read_stl10_labels(loc[f"{split}_y.bin"])
    if name == "cifar_samples":
        from PIL import Image

        keys = sorted(loc)
        x = np.stack([np.asarray(Image.open(loc[k]).convert("RGB")) for k in keys]).transpose(0, 3, 1, 2)
        y = np.asarray([int(loc[k].stem.rsplit("_", 1)[1]) for k in keys], dtype=np.int64)
        return np.ascontiguousarray(x), y
    raise DataError(f"{name!r} is not an image dataset; choose one of: {', '.join(IMAGE_DATASETS)}")


def load_images(name: str, split: str = "train", root: str | os.PathLike | None = None, download: bool = False,
                *, source: str | None = None, verify: bool = True, coarse: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images float32 ``(N, C, H, W)`` in [0, 1] (C=1 for grey) and labels int64 ``(N,)`` in 0..classes-1.

    ``name``: mnist, fashion_mnist, kmnist, usps, svhn, cifar10, cifar100, stl10 (train/test), or
    cifar_samples (split cifar10 / cifar100: the 20+20 PNG smoke-test images).
    ``source``: usps ``"h5"`` (default) or ``"libsvm"``; cifar ``"batches"`` or ``"tar"`` (default: whichever
    is present). ``coarse``: CIFAR-100's 20 coarse labels instead of the 100 fine ones. ``verify``: md5-check
    the files first (cached per file, so repeated loads are cheap).

    >>> x, y = load_images("mnist", "test")            # doctest: +SKIP
    >>> x.shape, x.dtype, y.shape                       # doctest: +SKIP
    (torch.Size([10000, 1, 28, 28]), torch.float32, torch.Size([10000]))
    """
    if name not in IMAGE_DATASETS:
        raise DataError(f"{name!r} is not an image dataset; choose one of: {', '.join(IMAGE_DATASETS)}")
    x, y = _read(name, split, root, download, verify, source, coarse)
    if len(x) != len(y):
        raise DataError(f"{name} {split}: {len(x)} images but {len(y)} labels; a file is from another release, "
                        f"run `tessera data check` and re-download the mismatched file")
    return to_float_images(x), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
