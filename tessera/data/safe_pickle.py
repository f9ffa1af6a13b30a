"""A restricted unpickler: numpy arrays (and plain containers) only, never arbitrary callables.

Pickle opcodes for dict / list / tuple / str / bytes / int / float need no imports, so the only globals
a numpy-array pickle needs are numpy's reconstruction helpers. Everything else raises DataError.

>>> import io, pickle, numpy as np
>>> safe_load(io.BytesIO(pickle.dumps({"x": np.arange(3)}, protocol=2)))["x"].tolist()
[0, 1, 2]
"""
from __future__ import annotations

import codecs
import importlib
import io
import os
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import DataError

__all__ = ["RestrictedUnpickler", "safe_load", "safe_load_file"]

# (module, name) as written in the pickle -> attribute path tried in order (numpy 2 moved core to _core).
_NUMPY_GLOBALS: dict[tuple[str, str], tuple[str, ...]] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY_GLOBALS[(_mod, "_reconstruct")] = ("numpy._core.multiarray:_reconstruct",
                                              "numpy.core.multiarray:_reconstruct")
    _NUMPY_GLOBALS[(_mod, "scalar")] = ("numpy._core.multiarray:scalar", "numpy.core.multiarray:scalar")
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _NUMPY_GLOBALS[(_mod, "_frombuffer")] = ("numpy._core.numeric:_frombuffer", "numpy.core.numeric:_frombuffer")
_NUMPY_GLOBALS[("numpy", "ndarray")] = ("numpy:ndarray",)
_NUMPY_GLOBALS[("numpy", "dtype")] = ("numpy:dtype",)


def _latin1_encode(obj: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` (how Python 3 writes bytes at protocol 2); text codecs only."""
    if codecs.lookup(encoding).name not in ("latin-1", "iso8859-1", "utf-8", "ascii"):
        raise DataError(f"pickle asks for codec {encoding!r}, which is not allowed; the file is not a plain data "
                        f"pickle")
    return obj.encode(encoding)


def _resolve(paths: tuple[str, ...]) -> Any:
    for p in paths:
        mod, attr = p.split(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
    raise DataError(f"numpy lacks {paths[0]}; upgrade numpy (pip install -U numpy)")


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only numpy's array/dtype/scalar reconstructors, and
    ``_codecs.encode`` restricted to text codecs (how Python 3 writes bytes at protocol 2).

    ``containers=False`` also requires the loaded object to be a numpy array (numeric, not object dtype);
    ``containers=True`` admits dicts / lists / str / bytes around arrays. ``what`` names the file in errors.
    """

    def __init__(self, file: IO[bytes], *, what: str = "pickle", containers: bool = False,
                 encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self.what = what
        self.containers = containers

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _NUMPY_GLOBALS:
            return _resolve(_NUMPY_GLOBALS[key])
        if key == ("_codecs", "encode"):
            return _latin1_encode
        raise DataError(f"{self.what}: refers to {module}.{name}, which a data file never needs "
                        f"(only numpy arrays and plain containers are read); the file is not genuine, delete it "
                        f"and re-download it")


def safe_load(file: IO[bytes], *, what: str = "pickle", containers: bool = True, encoding: str = "latin1") -> Any:
    """Unpickle from an open binary file with :class:`RestrictedUnpickler`."""
    try:
        obj = RestrictedUnpickler(file, what=what, containers=containers, encoding=encoding).load()
        return obj if containers else _check_array(obj, what)
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{what}: not a readable pickle ({type(e).__name__}: {e}); the file is corrupt, delete it "
                        f"and re-download it") from None


def safe_load_file(path: str | os.PathLike, *, containers: bool = False, encoding: str = "latin1") -> Any:
    """Read a pickle file from disk with the restricted unpickler (numpy arrays only unless ``containers``)."""
    path = Path(path)
    with open(path, "rb") as f:
        return safe_load(io.BufferedReader(f), what=str(path), containers=containers, encoding=encoding)


def _check_array(obj: Any, what: str) -> np.ndarray:
    if not isinstance(obj, np.ndarray) or obj.dtype == object:
        raise DataError(f"{what}: holds a {type(obj).__name__}, expected a numeric numpy array; the file is not "
                        f"genuine, delete it and re-download it")
    return obj
