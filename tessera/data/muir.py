"""The MUiR synthetic multi-task regression benchmark (30 linear tasks in 3 groups), Python-2 numpy pickles.

Read with the restricted unpickler: only numpy array reconstruction is admitted.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import DataError
from .fetch import require
from .safe_pickle import safe_load_file

__all__ = ["load_muir_synthetic", "muir_validation_indices", "MUIR_SHAPES"]

MUIR_SHAPES = {"train_X": (30, 15, 20), "train_Y": (30, 15), "test_X": (30, 50, 20), "test_Y": (30, 50)}


def load_muir_synthetic(root: str | os.PathLike | None = None, noisy: bool = False, *, download: bool = False,
                        verify: bool = True) -> dict[str, np.ndarray]:
    """``{"train_X" (30,15,20), "train_Y" (30,15), "test_X" (30,50,20), "test_Y" (30,50)}`` float64.

    ``noisy=True`` gives the noisy targets (noise std ~0.31) under the same keys.

    >>> d = load_muir_synthetic()                        # doctest: +SKIP
    >>> d["train_X"].shape                               # doctest: +SKIP
    (30, 15, 20)
    """
    loc = require("muir_synthetic", "noisy" if noisy else "clean", root, download=download, verify=verify)
    out: dict[str, np.ndarray] = {}
    for key, shape in MUIR_SHAPES.items():
        fkey = f"noisy_{key}" if noisy and key.endswith("_Y") else key
        arr = safe_load_file(loc[fkey], containers=False, encoding="latin1")
        if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f" or arr.shape != shape:
            desc = f"{type(arr).__name__} {getattr(arr, 'shape', '')}"
            raise DataError(f"{loc[fkey]}: holds {desc}, expected a float array {shape}; delete it and download "
                            f"it again")
        out[key] = arr
    return out


def muir_validation_indices(n: int = 15, k: int = 5, seed: int = 301) -> np.ndarray:
    """The paper's validation samples per task: ``np.random.seed(301); np.random.choice(15, 5, replace=False)``.

    >>> muir_validation_indices().tolist()
    [1, 3, 8, 6, 14]
    """
    return np.random.RandomState(seed).choice(n, size=k, replace=False)
