"""USPS digits (16x16 grey): ``usps.h5`` (train/test groups) or the LIBSVM ``usps.bz2`` / ``usps.t.bz2``.

The two releases are preprocessed differently (LIBSVM is smoothed, correlation ~0.96 to the h5 pixels),
so they are not interchangeable within one experiment.
"""
from __future__ import annotations

import bz2
import os
import re
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["read_usps_h5", "read_libsvm_dense", "read_usps_libsvm"]

_PAIR = re.compile(r"(\d+):(\S+)")


def read_usps_h5(path: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images float32 (N, 16, 16) in [0, 1], labels int64 (N,))`` from the Kaggle h5 file."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            g = f[split]
            x = np.asarray(g["data"], dtype=np.float32)   # (N, 256) in [0, 1]
            y = np.asarray(g["target"], dtype=np.int64)   # (N,) 0..9
    except (OSError, KeyError) as e:
        raise DataError(f"{path}: not a USPS h5 file with group {split}/data, {split}/target ({e}); "
                        f"delete it and download it again") from None
    side = int(round(x.shape[1] ** 0.5))
    return np.clip(x.reshape(-1, side, side), 0.0, 1.0), y


def read_libsvm_dense(text: str, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse LIBSVM ``label idx:val ...`` lines (1-based indices) into a dense float32 matrix.

    >>> x, y = read_libsvm_dense("2 1:0.5 3:-1\\n1 2:1\\n")
    >>> x.tolist(), y.tolist()
    ([[0.5, 0.0, -1.0], [0.0, 1.0, 0.0]], [2, 1])
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    labels = np.asarray([int(float(ln.split(None, 1)[0])) for ln in lines], dtype=np.int64)
    counts = np.asarray([ln.count(":") for ln in lines], dtype=np.int64)
    pairs = _PAIR.findall("\n".join(ln.split(None, 1)[1] if " " in ln.strip() else "" for ln in lines))
    idx = np.asarray([p[0] for p in pairs], dtype=np.int64)
    val = np.asarray([p[1] for p in pairs], dtype=np.float32)
    if len(idx) != counts.sum():
        raise DataError("LIBSVM text: malformed idx:value pairs; the file is corrupt, delete it and download it again")
    d = n_features or int(idx.max(initial=0))
    x = np.zeros((len(lines), d), dtype=np.float32)
    x[np.repeat(np.arange(len(lines)), counts), idx - 1] = val
    return x, labels


def read_usps_libsvm(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """LIBSVM USPS: labels 1..10 -> 0..9, features [-1, 1] -> [0, 1], shape (N, 16, 16)."""
    path = Path(path)
    try:
        text = bz2.decompress(path.read_bytes()).decode("ascii")
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable bz2 LIBSVM file ({e}); delete it and download it again") from None
    x, y = read_libsvm_dense(text, 256)
    return np.clip((x.reshape(-1, 16, 16) + 1.0) / 2.0, 0.0, 1.0), y - 1
