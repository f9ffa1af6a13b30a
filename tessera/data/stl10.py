"""STL-10 binary release: ``{train,test}_X.bin`` uint8 images stored column-major, ``*_y.bin`` labels 1..10."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["read_stl10_images", "read_stl10_labels"]


def read_stl10_images(path: str | os.PathLike, side: int = 96) -> np.ndarray:
    """uint8 ``(N, 3, side, side)``; the file holds each channel column by column, hence the transpose."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    per = 3 * side * side
    if raw.size % per:
        raise DataError(f"{path}: {raw.size} bytes is not a multiple of {per} (3x{side}x{side}); the file is "
                        f"truncated, delete it and download it again")
    return np.ascontiguousarray(raw.reshape(-1, 3, side, side).transpose(0, 1, 3, 2))


def read_stl10_labels(path: str | os.PathLike) -> np.ndarray:
    """int64 ``(N,)`` in 0..9 (the file stores 1..10)."""
    y = np.fromfile(Path(path), dtype=np.uint8).astype(np.int64) - 1
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{path}: labels outside 1..10; not an STL-10 label file, delete it and download it again")
    return y
