"""SVHN cropped digits (``{train,test,extra}_32x32.mat``): X (32, 32, 3, N) uint8, y (N, 1) with 10 = digit 0."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["read_svhn_mat"]


def read_svhn_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,) in 0..9)``."""
    import scipy.io

    path = Path(path)
    try:
        m = scipy.io.loadmat(path, variable_names=["X", "y"])
        x, y = m["X"], m["y"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not an SVHN .mat file with X and y ({e}); delete it and download it again") from None
    x = np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)))  # (H, W, C, N) -> (N, C, H, W)
    y = y.reshape(-1).astype(np.int64)
    y[y == 10] = 0
    return x, y
