"""CIFAR-10/100 python release, read with the restricted unpickler (dicts, lists, bytes, numpy only).

Either the extracted folder (``cifar-10-batches-py/`` / ``cifar-100-python/``) or the release tarball,
read in memory without extracting anything into the data root.
"""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError
from .safe_pickle import safe_load

__all__ = ["read_cifar_batch", "read_cifar_batches", "read_cifar_tar"]


def _get(d: dict, key: str) -> Any:
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    raise KeyError(key)


def read_cifar_batch(file: io.BufferedIOBase | bytes, what: str, label_key: str = "labels"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> ``(uint8 (N, 3, 32, 32), int64 (N,))``."""
    f = io.BytesIO(file) if isinstance(file, (bytes, bytearray)) else file
    d = safe_load(f, what=what, containers=True, encoding="latin1")
    try:
        if not isinstance(d, dict):
            raise KeyError("top level is not a dict")
        data = np.asarray(_get(d, "data"), dtype=np.uint8)
        labels = np.asarray(_get(d, label_key), dtype=np.int64)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{what}: not a CIFAR batch (missing {e}); delete it and download it again") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{what}: CIFAR batch has data {data.shape} and {len(labels)} labels, expected (N, 3072) "
                        f"and N labels; delete it and download it again")
    return data.reshape(-1, 3, 32, 32), labels  # rows are R(1024) G(1024) B(1024), row-major


def read_cifar_batches(paths: Sequence[str | os.PathLike], label_key: str = "labels"
                       ) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        with open(p, "rb") as f:
            x, y = read_cifar_batch(f, str(p), label_key)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def read_cifar_tar(path: str | os.PathLike, members: Sequence[str], label_key: str = "labels"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Read the named batch members (e.g. ``cifar-10-batches-py/test_batch``) straight from the tarball."""
    path = Path(path)
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(path, "r:*") as t:
            for m in t:
                if m.name in members and m.isfile():
                    f = t.extractfile(m)
                    assert f is not None
                    found[m.name] = read_cifar_batch(f.read(), f"{path}:{m.name}", label_key)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable tar.gz ({e}); delete it and download it again") from None
    missing = [m for m in members if m not in found]
    if missing:
        raise DataError(f"{path}: archive lacks {', '.join(missing)}; it is not the CIFAR python release, "
                        f"delete it and download it again")
    xs, ys = zip(*(found[m] for m in members))
    return np.concatenate(xs), np.concatenate(ys)
