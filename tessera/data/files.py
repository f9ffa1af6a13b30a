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

__all__ = ["file_md5", "verify_file", "download_url", "clear_md5_cache"]

_CHUNK = 1 << 20
_MD5_CACHE: dict[tuple[str, int, int], str] = {}
_MD5_CACHE_MAX = 1024
USER_AGENT = "tessera-data/0.1 (+python urllib)"


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def file_md5(path: str | os.PathLike) -> str:
    """Hex md5 of a file; cached per (path, size, mtime) so a second check of the same file is free."""
    path = Path(path)
    key = _key(path)
    hit = _MD5_CACHE.get(key)
    if hit is not None:
        return hit
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    digest = h.hexdigest()
    if len(_MD5_CACHE) >= _MD5_CACHE_MAX:
        _MD5_CACHE.pop(next(iter(_MD5_CACHE)))
    _MD5_CACHE[key] = digest
    return digest


def clear_md5_cache() -> None:
    _MD5_CACHE.clear()


def _where(url: str | None, path: Path) -> str:
    src = url or "the dataset's homepage"
    return f"get it from {src} into {path.parent}/, or pass download=True / set TESSERA_DATA"


def verify_file(path: str | os.PathLike, md5: str | None, *, dataset: str = "", url: str | None = None,
                size: int | None = None) -> None:
    """Raise :class:`DataError` unless ``path`` exists and (when ``md5`` is given) has that md5.

    The message names the file, the expected md5 (and the actual one on a mismatch) and where to get it.
    """
    path = Path(path)
    pre = f"{dataset}: " if dataset else ""
    if not path.is_file():
        exp = f"expected md5 {md5}; " if md5 else ""
        raise DataError(f"{pre}file {path} not found ({exp}{_where(url, path)})")
    if md5 is None:
        return
    if size is not None and path.stat().st_size != size:
        raise DataError(f"{pre}file {path} is corrupt: {path.stat().st_size} bytes, expected {size} "
                        f"(expected md5 {md5}, actual md5 {file_md5(path)}); delete it and {_where(url, path)}")
    actual = file_md5(path)
    if actual != md5:
        raise DataError(f"{pre}file {path} is corrupt: md5 {actual}, expected md5 {md5}; "
                        f"delete it and {_where(url, path)}")


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
