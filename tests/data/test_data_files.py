"""Root resolution, md5 cache and verification, downloads (network monkeypatched), require()."""
from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import zipfile

import pytest

from tessera.data import files as files_mod
from tessera.data import registry
from tessera.data import require, resolve_root, verify_file
from tessera.data.files import download_url, file_md5
from tessera.errors import DataError


def test_resolve_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("TESSERA_DATA", str(tmp_path / "env"))
    assert resolve_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_root() == tmp_path / "env"
    monkeypatch.delenv("TESSERA_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_root() == tmp_path / "xdg" / "tessera" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_root() == tmp_path / "home" / ".cache" / "tessera" / "data"


def test_md5_cache_hits_and_invalidates(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert file_md5(p) == hashlib.md5(b"abc").hexdigest()
    calls = []
    real = hashlib.new
    monkeypatch.setattr(files_mod.hashlib, "new", lambda *a, **k: calls.append(a) or real(*a, **k))
    file_md5(p)
    assert calls == []  # cached
    p.write_bytes(b"abcd")  # size (and mtime) change -> recomputed
    assert file_md5(p) == hashlib.md5(b"abcd").hexdigest()
    assert len(calls) == 1


def test_verify_file_missing_and_corrupt(tmp_path):
    p = tmp_path / "mnist" / "x.gz"
    with pytest.raises(DataError) as e:
        verify_file(p, "f" * 32, dataset="mnist", url="https://example.org/x.gz")
    msg = str(e.value)
    assert str(p) in msg and "f" * 32 in msg and "https://example.org/x.gz" in msg and "\n" not in msg
    p.parent.mkdir()
    p.write_bytes(b"junk")
    with pytest.raises(DataError) as e:
        verify_file(p, "f" * 32)
    assert "f" * 32 in str(e.value) and hashlib.md5(b"junk").hexdigest() in str(e.value) and "x.gz" in str(e.value)
    verify_file(p, hashlib.md5(b"junk").hexdigest())  # ok


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def _serve(monkeypatch, table: dict[str, bytes]) -> list[str]:
    seen: list[str] = []

    def urlopen(req, timeout=None):
        url = req.full_url if hasattr(req, "full_url") else req
        seen.append(url)
        if url not in table:
            raise urllib.error.URLError("no route (test)")
        return _FakeResponse(table[url])

    monkeypatch.setattr(files_mod.urllib.request, "urlopen", urlopen)
    return seen


def test_download_atomic_md5_and_mirrors(tmp_path, monkeypatch):
    data = b"payload" * 1000
    md5 = hashlib.md5(data).hexdigest()
    seen = _serve(monkeypatch, {"https://mirror/f": data, "https://bad/f": b"tampered"})
    dest = tmp_path / "d" / "f"
    download_url("https://down/f", dest, md5, mirrors=("https://bad/f", "https://mirror/f"))
    assert dest.read_bytes() == data
    assert seen == ["https://down/f", "https://bad/f", "https://mirror/f"]
    assert sorted(os.listdir(dest.parent)) == ["f"]  # no temp files left
    with pytest.raises(DataError) as e:
        download_url("https://bad/f", tmp_path / "d" / "g", md5)
    assert "md5" in str(e.value) and md5 in str(e.value)
    assert sorted(os.listdir(dest.parent)) == ["f"]


def test_require_download_fetches_missing_files(tmp_path, monkeypatch, fakes):
    src = tmp_path / "src"
    fakes.write_idx_dataset(src, "mnist")
    spec = fakes.patch_md5s(monkeypatch, "mnist", src)
    _serve(monkeypatch, {f.url: (src / f.relpath).read_bytes() for f in spec.files})
    root = tmp_path / "root"
    with pytest.raises(DataError):
        require("mnist", "test", root)
    loc = require("mnist", "test", root, download=True)
    assert loc["images"] == root / "mnist" / "t10k-images-idx3-ubyte.gz" and loc["images"].is_file()
    assert not (root / "mnist" / "train-images-idx3-ubyte.gz").exists()  # only the split asked for
    # a corrupt file is replaced when download=True
    loc["labels"].write_bytes(b"corrupt")
    with pytest.raises(DataError, match="corrupt"):
        require("mnist", "test", root)
    require("mnist", "test", root, download=True)
    assert file_md5(loc["labels"]) == spec.file("mnist/t10k-labels-idx1-ubyte.gz").md5


def test_require_download_unpacks_archive_members(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for s in ("train", "valid", "test"):
            z.writestr(f"wikitext-2/wiki.{s}.tokens", f" = {s} = \n hello world \n")
    blob = buf.getvalue()
    spec = registry.DATASETS["wikitext2"]
    arch = spec.archives[0]
    new_arch = registry.ArchiveSpec(arch.relpath, hashlib.md5(blob).hexdigest(), "https://zip/w2.zip", arch.members)
    import dataclasses

    monkeypatch.setitem(registry.DATASETS, "wikitext2", dataclasses.replace(
        spec, archives=(new_arch,), files=tuple(dataclasses.replace(f, md5=None, sha1=None) for f in spec.files)))
    _serve(monkeypatch, {"https://zip/w2.zip": blob})
    loc = require("wikitext2", "train", tmp_path, download=True)
    assert loc["tokens"].read_text().startswith(" = train =")
    assert sorted(p.name for p in (tmp_path / "wikitext2").iterdir()) == ["wiki.test.tokens", "wiki.train.tokens",
                                                                          "wiki.valid.tokens"]


def test_require_unknown_split_and_dataset(tmp_path):
    with pytest.raises(DataError, match="choose one of: train, test"):
        require("mnist", "valid", tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        require("nope", "train", tmp_path)


def test_registry_is_consistent():
    for name, spec in registry.DATASETS.items():
        assert spec.name == name and spec.files and spec.homepage.startswith("http")
        for f in spec.files:
            assert f.relpath.split("/")[0] == name.replace("office_caltech10_surf", "office_caltech10_surf")
            assert f.md5 is None or len(f.md5) == 32
            assert f.optional or f.splits
        for s in spec.splits:
            assert spec.files_for(s)
    svhn = registry.DATASETS["svhn"].file("svhn/test_32x32.mat")
    assert svhn.md5 == "eb5a983be6a315427106f1b164d9cef3" and svhn.url.endswith("test_32x32.mat")


def test_require_download_extracts_tar_members(tmp_path, monkeypatch):
    import dataclasses
    import tarfile

    import numpy as np

    from tessera.data import load_images

    src = tmp_path / "src" / "stl10_binary"
    src.mkdir(parents=True)
    (src / "test_X.bin").write_bytes(np.zeros((2, 3, 96, 96), np.uint8).tobytes())
    (src / "test_y.bin").write_bytes(bytes([3, 4]))
    (src / "evil.sh").write_text("not extracted")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(src, arcname="stl10_binary")
    blob = buf.getvalue()
    spec = registry.DATASETS["stl10"]
    arch = dataclasses.replace(spec.archives[0], md5=hashlib.md5(blob).hexdigest(), url="https://tar/stl.tgz")
    monkeypatch.setitem(registry.DATASETS, "stl10", dataclasses.replace(
        spec, archives=(arch,), files=tuple(dataclasses.replace(f, md5=None) for f in spec.files)))
    _serve(monkeypatch, {"https://tar/stl.tgz": blob})
    root = tmp_path / "root"
    x, y = load_images("stl10", "test", root=root, download=True)
    assert x.shape == (2, 3, 96, 96) and y.tolist() == [2, 3]
    assert sorted(p.name for p in (root / "stl10").rglob("*")) == ["stl10_binary", "test_X.bin", "test_y.bin"]
