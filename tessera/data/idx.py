"""IDX files (MNIST, Fashion-MNIST, KMNIST): parsed in memory with gzip + ``np.frombuffer``.

The IDX header is 0x00 0x00 <type code> <ndim>, then ndim big-endian uint32 sizes, then the data.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import file_md5

__all__ = ["read_idx", "parse_idx"]

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _corrupt(path: Path, why: str, md5: str | None) -> DataError:
    exp = f"expected md5 {md5}, " if md5 else ""
    return DataError(f"{path}: {why} ({exp}actual md5 {file_md5(path)}); the file is corrupt, delete it and "
                     f"download it again (download=True)")


def parse_idx(buf: bytes | bytearray, what: str = "IDX data") -> np.ndarray:
    """Decode an uncompressed IDX buffer (no copy: the array views ``buf``)."""
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _DTYPES or not 1 <= buf[3] <= 4:
        raise DataError(f"{what}: bad IDX magic {buf[:4].hex()}; not an IDX file")
    ndim = buf[3]
    shape = struct.unpack(f">{ndim}I", buf[4:4 + 4 * ndim])
    dtype = np.dtype(_DTYPES[buf[2]])
    off = 4 + 4 * ndim
    n = int(np.prod(shape))
    if len(buf) - off != n * dtype.itemsize:
        raise DataError(f"{what}: IDX header says shape {shape} ({n * dtype.itemsize} bytes) but "
                        f"{len(buf) - off} bytes follow (truncated or padded); not a complete IDX file")
    return np.frombuffer(buf, dtype=dtype, count=n, offset=off).reshape(shape)


def read_idx(path: str | os.PathLike, md5: str | None = None) -> np.ndarray:
    """Read a ``.gz`` (or plain) IDX file. Bad magic / truncation -> DataError naming the md5s.

    >>> import gzip, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte.gz")
    >>> with gzip.open(p, "wb") as f:
    ...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p).tolist()
    [7, 8, 9]
    """
    path = Path(path)
    raw: bytes | bytearray = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = bytearray(gzip.decompress(raw))  # writable, so torch.from_numpy needs no copy or warning
        except (OSError, EOFError, zlib.error) as e:
            raise _corrupt(path, f"gzip stream is broken ({e})", md5) from None
    try:
        return parse_idx(raw, str(path))
    except DataError as e:
        raise _corrupt(path, str(e).split(": ", 1)[1].split(";")[0], md5) from None
