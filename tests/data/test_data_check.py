"""check_datasets / format_check_table on a temporary root."""
from __future__ import annotations

import json

import pytest

from tessera.data import check_datasets, format_check_table
from tessera.errors import DataError


def test_check_complete_partial_missing_corrupt(tmp_path, fakes, monkeypatch):
    fakes.write_idx_dataset(tmp_path, "mnist")
    fakes.patch_md5s(monkeypatch, "mnist", tmp_path)
    fakes.write_idx_dataset(tmp_path, "kmnist", skip=("train-images-idx3-ubyte.gz",))
    fakes.patch_md5s(monkeypatch, "kmnist", tmp_path)
    fakes.write_idx_dataset(tmp_path, "fashion_mnist")  # fake bytes: canonical md5s cannot match
    r = check_datasets(tmp_path, names=["mnist", "kmnist", "fashion_mnist", "svhn"])
    json.dumps(r)  # JSON-serialisable as is
    d = r["datasets"]
    assert r["root"] == str(tmp_path)
    assert d["mnist"]["present"] and d["mnist"]["verified"] and d["mnist"]["status"] == "complete"
    assert d["mnist"]["usable_splits"] == ["train", "test"]
    k = d["kmnist"]
    assert k["present"] and k["verified"] and k["status"] == "partial" and k["partial"]
    assert k["usable_splits"] == ["test"] and k["missing_splits"] == ["train"]
    assert k["files"]["kmnist/train-images-idx3-ubyte.gz"]["present"] is False
    assert k["files"]["kmnist/train-images-idx3-ubyte.gz"]["expected_md5"] == "bdb82020997e1d708af4cf47b453dcf7"
    assert "train-images-idx3-ubyte.gz" in k["note"] and "kmnist_classmap.csv" in k["note"]
    f = d["fashion_mnist"]
    assert f["status"] == "corrupt" and f["verified"] is False and f["usable_splits"] == []
    assert f["files"]["fashion_mnist/t10k-labels-idx1-ubyte.gz"]["md5"] != "bb300cfdad3c16e7a12a480ee83cd310"
    assert d["svhn"]["present"] is False and d["svhn"]["status"] == "missing"
    table = format_check_table(r)
    lines = table.splitlines()
    assert lines[0] == f"data root: {tmp_path}" and len(lines) == 1 + 2 + 4
    assert "partial" in table and "corrupt" in table and "missing" in table


def test_check_multi_source_and_no_verify(tmp_path, fakes):
    fakes.write_usps(tmp_path)
    r = check_datasets(tmp_path, names=["usps"], verify=False)["datasets"]["usps"]
    assert r["status"] == "complete" and r["verified"] is None
    assert r["sources"] == {"train": ["h5"], "test": ["h5", "libsvm"]}
    assert "usps.bz2" in r["note"]


def test_check_errors(tmp_path):
    with pytest.raises(DataError, match="unknown dataset"):
        check_datasets(tmp_path, names=["nope"])
    with pytest.raises(DataError, match="does not exist"):
        check_datasets(tmp_path / "absent")
