"""Fixtures for tessera.data tests: tiny fake files in the released formats, and the shared data root."""
from __future__ import annotations

import bz2
import dataclasses
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from tessera.data import registry
from tessera.data.files import clear_md5_cache, file_md5


def shared_data_root() -> Path | None:
    """``$TESSERA_DATA`` if set, else ``../shared/data`` beside the repo; None when neither holds data."""
    env = os.environ.get("TESSERA_DATA")
    cand = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return cand if (cand / "mnist").is_dir() else None


@pytest.fixture
def shared_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("shared data absent: set TESSERA_DATA or place the datasets at ../shared/data")
    return root


@pytest.fixture(autouse=True)
def _fresh_md5_cache():
    clear_md5_cache()
    yield
    clear_md5_cache()


def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}[arr.dtype.type]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_gz(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data))
    return path


def write_idx_dataset(root: Path, folder: str, n_train: int = 12, n_test: int = 6, seed: int = 0,
                      skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """MNIST-layout fake: random uint8 images (n, 28, 28) and labels 0..9."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        out[split] = (x, y)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            name = f"{prefix}-{kind}-ubyte.gz"
            if name not in skip:
                write_gz(root / folder / name, idx_bytes(arr))
    return out


def write_usps(root: Path, n_train: int = 7, n_test: int = 5) -> dict:
    import h5py

    rng = np.random.default_rng(1)
    (root / "usps").mkdir(parents=True, exist_ok=True)
    data = {}
    with h5py.File(root / "usps" / "usps.h5", "w") as f:
        for split, n in (("train", n_train), ("test", n_test)):
            x = rng.random((n, 256), dtype=np.float32)
            y = (np.arange(n) % 10).astype(np.int32)
            f.create_dataset(f"{split}/data", data=x)
            f.create_dataset(f"{split}/target", data=y)
            data[split] = (x, y)
    x, y = data["test"]
    lines = [f"{lab + 1} " + " ".join(f"{i + 1}:{2 * v - 1:.6f}" for i, v in enumerate(row)) for row, lab in zip(x, y)]
    (root / "usps" / "usps.t.bz2").write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    return data


def patch_md5s(monkeypatch, name: str, root: Path) -> registry.DatasetSpec:
    """Point the registry's checksums for ``name`` at the fake files under ``root`` (so verify=True passes)."""
    spec = registry.DATASETS[name]
    files = []
    for f in spec.files:
        p = root / f.relpath
        files.append(dataclasses.replace(f, md5=file_md5(p), sha1=None, bytes=p.stat().st_size) if p.is_file() else f)
    new = dataclasses.replace(spec, files=tuple(files))
    monkeypatch.setitem(registry.DATASETS, name, new)
    return new


def py2_style_pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


@pytest.fixture
def fakes():
    """The fake-file writers above (``fakes.write_idx_dataset(root, "mnist")`` ...)."""
    import types

    return types.SimpleNamespace(idx_bytes=idx_bytes, write_gz=write_gz, write_idx_dataset=write_idx_dataset,
                                 write_usps=write_usps, patch_md5s=patch_md5s, py2_style_pickle=py2_style_pickle)
