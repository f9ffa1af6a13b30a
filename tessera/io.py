"""Safe, atomic persistence: tensors as safetensors, everything else as JSON. Nothing is ever pickled.

Every writer goes through a temporary file in the destination folder followed by ``os.replace``, so a
crash leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from .errors import CheckpointError

__all__ = [
    "atomic_write_bytes", "save_json", "load_json", "save_tensors", "load_tensors", "atomic_dir",
    "tensors_to_bytes", "tensors_from_bytes", "fsync_dir", "discard_dir", "json_default", "previous_dir",
    "recover_dir",
]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file; pass a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for paths, tensors and numpy values."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def save_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Atomically write ``obj`` as JSON (numpy / torch scalars and arrays are converted)."""
    text = json.dumps(obj, indent=indent, default=json_default, sort_keys=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found; check the path (a run directory holds final.json, ckpt/)")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); the file is corrupt, delete it") from None
    except (UnicodeDecodeError, RecursionError):
        raise CheckpointError(f"{path}: not valid JSON (not UTF-8 text, or nested too deeply); the file is corrupt, "
                              "delete it") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str] | None = None) -> Path:
    """Atomically write a flat ``name -> tensor`` mapping as safetensors.

    Tensors are made contiguous and moved to CPU; tensors sharing storage are cloned (safetensors
    refuses shared storage).
    """
    return atomic_write_bytes(path, tensors_to_bytes(tensors, metadata))


def tensors_to_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The safetensors serialization :func:`save_tensors` writes (e.g. to checksum it first)."""
    seen: set[int] = set()
    flat: dict[str, torch.Tensor] = {}
    for k, t in tensors.items():
        t = t.detach().to("cpu")
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        if ptr in seen or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)
        if t.numel():
            seen.add(t.untyped_storage().data_ptr())
        flat[k] = t.contiguous()
    return _st_save(flat, metadata=dict(metadata) if metadata else None)


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file (never executes code). Raises CheckpointError on a missing/corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found; check the path")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    return tensors_from_bytes(data, path, device)


def tensors_from_bytes(data: bytes, path: str | os.PathLike = "<bytes>",
                       device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Parse safetensors ``data`` (read from ``path``, named in errors); CheckpointError when corrupt."""
    try:
        out = _st_load(data)
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e}); the file is corrupt, delete it") from None
    return {k: v.to(device) for k, v in out.items()}


def previous_dir(path: str | os.PathLike) -> Path:
    """Where :class:`atomic_dir` keeps the folder it replaces while it swaps the new one in (``.<name>.old``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.old")


def recover_dir(path: str | os.PathLike) -> None:
    """Finish what a killed :class:`atomic_dir` write left behind: the old folder is put back when the kill
    came between its two renames (``.<name>.old`` but no ``<name>``); a leftover ``.<name>.old`` and
    temporary folders ``.<name>.*`` are removed."""
    path = Path(path)
    old = previous_dir(path)
    if old.is_dir() and not path.exists():
        os.replace(old, path)
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            if p.name.startswith(f".{path.name}.") and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)


class atomic_dir:
    """Context manager that builds a directory under a temp name and renames it into place on success.

    A write killed at any instant leaves the old folder (at ``path``, or at :func:`previous_dir` for the
    instant between the two renames, which readers may fall back to); the next write recovers it and
    removes stale temporaries (:func:`recover_dir`).

    >>> with atomic_dir("run/ckpt/step_100") as d:   # doctest: +SKIP
    ...     save_tensors(d / "model.safetensors", sd)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        recover_dir(self.path)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.path.exists():
            old = previous_dir(self.path)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.path)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (renames) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def discard_dir(path: str | os.PathLike) -> None:
    """Remove a folder (or a link / file) so that no half-deleted folder ever carries its name: it is
    renamed into a temporary sibling first (``.<name>.tmp-*``), then deleted."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        os.replace(path, trash / "x")
        shutil.rmtree(trash, ignore_errors=True)
