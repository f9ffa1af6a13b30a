"""File integrity and fetching: md5 with a small (path, size, mtime) cache, verification, downloads.

Downloads stream to a temporary file in the destination folder, are md5-checked, then renamed into
place (``os.replace``), so an interrupted or corrupt download never leaves a file under its real name.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from ..errors import DataError

__all__ = ["file_md5", "file_digest", "verify_file", "download_url", "clear_md5_cache"]

_CHUNK = 1 << 20
_CACHE: dict[tuple[str, int, int, str], str] = {}
_CACHE_MAX = 1024
USER_AGENT = "tessera-data/0.1 (+python urllib)"


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def file_digest(path: str | os.PathLike, algo: str = "md5") -> str:
    """Hex digest of a file; cached per (path, size, mtime, algo) so a second check of the same file is free."""
    path = Path(path)
    key = (*_key(path), algo)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    digest = h.hexdigest()
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = digest
    return digest


def file_md5(path: str | os.PathLike) -> str:
    """Hex md5 of a file (cached, see :func:`file_digest`)."""
    return file_digest(path, "md5")


def clear_md5_cache() -> None:
    _CACHE.clear()


def _where(url: str | None, path: Path) -> str:
    src = url or "the dataset's homepage"
    return f"get it from {src} into {path.parent}/, or pass download=True / set TESSERA_DATA"


def verify_file(path: str | os.PathLike, md5: str | None, *, dataset: str = "", url: str | None = None,
                sha1: str | None = None) -> None:
    """Raise :class:`DataError` unless ``path`` exists and has the expected md5 (or SHA-1 when only that is known).

    The message names the file, the expected and the actual checksum, and where to get the file.

    >>> verify_file("/nonexistent/x.gz", "0" * 32, dataset="demo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tessera.errors.DataError: demo: file /nonexistent/x.gz not found (expected md5 000...000; get it from ...)
    """
    path = Path(path)
    pre = f"{dataset}: " if dataset else ""
    algo, want = ("md5", md5) if md5 else ("sha1", sha1)
    if not path.is_file():
        exp = f"expected {algo} {want}; " if want else ""
        raise DataError(f"{pre}file {path} not found ({exp}{_where(url, path)})")
    if not want:
        return
    actual = file_digest(path, algo)
    if actual != want:
        raise DataError(f"{pre}file {path} is corrupt: {algo} {actual} ({path.stat().st_size} bytes), "
                        f"expected {algo} {want}; delete it and {_where(url, path)}")


def download_url(url: str, dest: str | os.PathLike, md5: str | None = None, *, mirrors: Sequence[str] = (),
                 timeout: float = 60.0, progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Fetch ``url`` (then each mirror) to ``dest``: temp file in dest's folder, md5 check, atomic rename.

    Raises :class:`DataError` naming every URL tried when none gives a file with the expected md5.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for u in (url, *mirrors):
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            h = hashlib.md5()
            req = urllib.request.Request(u, headers={"User-Agent": USER_AGENT})
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
                total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
                total_n = int(total) if total and str(total).isdigit() else None
                done = 0
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(block)
                    h.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total_n)
                out.flush()
                os.fsync(out.fileno())
            got = h.hexdigest()
            if md5 is not None and got != md5:
                errors.append(f"{u}: md5 {got}, expected {md5}")
                continue
            os.replace(tmp, dest)
            return dest
        except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
            errors.append(f"{u}: {getattr(e, 'reason', None) or e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"download of {dest.name} failed ({'; '.join(errors)}); check the network or fetch "
                    f"the file by hand into {dest.parent}/")
