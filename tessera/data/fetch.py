"""Find (and on request download) the verified files a reader needs: one call per (dataset, split).

>>> import tempfile
>>> try:
...     require("mnist", "test", root=tempfile.mkdtemp())
... except DataError as e:
...     print("t10k-images-idx3-ubyte.gz not found (expected md5 9fb629c4189551a2d022fa330f9573f3" in str(e))
True
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from ..errors import DataError
from .files import download_url, file_digest, verify_file
from .registry import ArchiveSpec, DatasetSpec, FileSpec, get_spec
from .root import resolve_root

__all__ = ["require", "file_status", "source_hint", "extract_archive", "Located"]


class Located(dict):
    """``{file key: Path}`` for one split, plus ``.source`` (which source was used) and ``.root``."""

    source: str
    root: Path


def _ok(path: Path, f: FileSpec, verify: bool) -> bool:
    if not path.is_file():
        return False
    if not verify or not (f.md5 or f.sha1):
        return True
    algo, want = ("md5", f.md5) if f.md5 else ("sha1", f.sha1)
    return file_digest(path, algo) == want


def file_status(root: Path, f: FileSpec, verify: bool = True, url: str | None = None) -> dict:
    """Per-file report: present, verified (None when unchecked or no checksum), md5, expected_md5, bytes."""
    path = root / f.relpath
    present = path.is_file()
    out = {"present": present, "verified": None, "md5": None, "expected_md5": f.md5,
           "bytes": path.stat().st_size if present else None, "expected_bytes": f.bytes, "split": f.split,
           "url": url if url is not None else f.url}
    if f.sha1 and not f.md5:
        out["expected_sha1"] = f.sha1
    if present and verify:
        out["md5"] = file_digest(path, "md5")
        if f.md5:
            out["verified"] = out["md5"] == f.md5
        elif f.sha1:
            out["sha1"] = file_digest(path, "sha1")
            out["verified"] = out["sha1"] == f.sha1
    return out


def _download_file(spec: DatasetSpec, root: Path, f: FileSpec) -> None:
    dest = root / f.relpath
    if f.url:
        download_url(f.url, dest, f.md5, mirrors=f.mirrors)
        return
    arch = spec.archive_for(f.relpath)
    if arch is None:
        raise DataError(f"{spec.name}: {f.relpath} has no public download URL; get it from {spec.homepage} "
                        f"into {dest.parent}/")
    extract_archive(spec, root, arch)


def extract_archive(spec: DatasetSpec, root: Path, arch: ArchiveSpec) -> None:
    """Download ``arch`` to a temp folder under the dataset folder, unpack only its listed members (each by
    temp file + rename), then delete the archive."""
    folder = root / arch.relpath.split("/", 1)[0]
    folder.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=".download.", dir=folder))
    try:
        local = download_url(arch.url, tmpdir / Path(arch.relpath).name, arch.md5, mirrors=arch.mirrors)
        wanted = dict(arch.members)
        if local.name.endswith(".zip"):
            with zipfile.ZipFile(local) as z:
                for member, target in wanted.items():
                    try:
                        with z.open(member) as src:
                            _write_atomic(src, root / target)
                    except KeyError:
                        raise DataError(f"{spec.name}: {arch.url} lacks {member}; the release changed, "
                                        f"get the files from {spec.homepage}") from None
        else:
            with tarfile.open(local, "r:*") as t:
                for m in t:  # one streaming pass; only regular files we asked for, by exact name
                    if m.name in wanted and m.isfile():
                        src = t.extractfile(m)
                        assert src is not None
                        _write_atomic(src, root / wanted.pop(m.name))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _write_atomic(src, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def source_hint(spec: DatasetSpec, f: FileSpec) -> str:
    """Where a file comes from, for error messages: its URL, else its archive's URL, else the homepage."""
    if f.url:
        return f.url
    arch = spec.archive_for(f.relpath)
    if arch is not None:
        member = next(m for m, t in arch.members if t == f.relpath)
        return f"{arch.url} (member {member})"
    return spec.homepage


def _can_download(spec: DatasetSpec, f: FileSpec) -> bool:
    return bool(f.url) or spec.archive_for(f.relpath) is not None


def _missing(spec: DatasetSpec, rootp: Path, split: str, groups: list[tuple[str, list[FileSpec]]]) -> DataError:
    """The error for the first missing file of the preferred source (+ how many more, + other sources)."""
    missing = [f for f in groups[0][1] if not (rootp / f.relpath).is_file()]
    f = missing[0]
    more = f" and {len(missing) - 1} more file(s) of split {split!r}" if len(missing) > 1 else ""
    alt = f"; other sources for {split!r}: {', '.join(x for x, _ in groups[1:])}" if len(groups) > 1 else ""
    try:
        verify_file(rootp / f.relpath, f.md5, dataset=spec.name, url=source_hint(spec, f), sha1=f.sha1)
    except DataError as e:
        return DataError(f"{e}{more}{alt}")
    return DataError(f"{spec.name}: split {split!r} is incomplete under {rootp}; run `tessera data check`")


def require(name: str, split: str, root: str | os.PathLike | None = None, *, download: bool = False,
            verify: bool = True, source: str | None = None) -> Located:
    """Paths of every file needed for ``split`` of dataset ``name``, present and (by default) md5-verified.

    Sources are tried in registry order (or only ``source``); the first complete one wins. With
    ``download=True`` missing or corrupt files of the first downloadable source are fetched. Otherwise a
    missing file raises DataError naming the file, its expected md5 and its URL; a corrupt one names the
    expected and actual md5.
    """
    spec = get_spec(name)
    rootp = resolve_root(root)
    if split not in spec.splits:
        raise DataError(f"{name}: unknown split {split!r}; choose one of: {', '.join(spec.splits)}")
    sources = (source,) if source else spec.sources_for(split)
    groups = [(s, spec.files_for(split, s)) for s in sources]
    chosen = None
    for s, files in groups:  # a source whose files are all present wins (verified below)
        if all((rootp / f.relpath).is_file() for f in files):
            chosen = (s, files)
            break
    if chosen is not None and download and not all(_ok(rootp / f.relpath, f, verify) for f in chosen[1]):
        for f in chosen[1]:
            if not _ok(rootp / f.relpath, f, verify) and _can_download(spec, f):
                _download_file(spec, rootp, f)
    if chosen is None and download:
        for s, files in groups:
            if all(_can_download(spec, f) or (rootp / f.relpath).is_file() for f in files):
                for f in files:
                    if not _ok(rootp / f.relpath, f, verify):
                        _download_file(spec, rootp, f)
                chosen = (s, files)
                break
    if chosen is None:
        raise _missing(spec, rootp, split, groups)
    s, files = chosen
    out = Located()
    out.source, out.root = s, rootp
    for f in files:
        path = rootp / f.relpath
        if verify:
            verify_file(path, f.md5, dataset=name, url=source_hint(spec, f), sha1=f.sha1)
        out[f.key] = path
    return out
