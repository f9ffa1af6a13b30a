"""load_images on tiny fake files in every supported release format."""
from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from tessera.data import load_images
from tessera.data.files import file_md5
from tessera.errors import DataError


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist"])
def test_idx_datasets(tmp_path, fakes, monkeypatch, name):
    data = fakes.write_idx_dataset(tmp_path, name)
    fakes.patch_md5s(monkeypatch, name, tmp_path)
    for split in ("train", "test"):
        x, y = load_images(name, split, root=tmp_path)
        xr, yr = data[split]
        assert x.shape == (len(xr), 1, 28, 28) and x.dtype == torch.float32
        assert y.dtype == torch.int64 and y.tolist() == yr.tolist()
        assert torch.equal(x[:, 0], torch.from_numpy(xr).float() / 255)


def test_idx_md5_mismatch_names_file_and_md5s(tmp_path, fakes):
    fakes.write_idx_dataset(tmp_path, "mnist")  # fake content: the canonical md5 cannot match
    with pytest.raises(DataError) as e:
        load_images("mnist", "test", root=tmp_path)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "9fb629c4189551a2d022fa330f9573f3" in msg
    assert file_md5(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz") in msg
    x, _ = load_images("mnist", "test", root=tmp_path, verify=False)
    assert x.shape == (6, 1, 28, 28)


def test_idx_missing_file_message(tmp_path, fakes):
    fakes.write_idx_dataset(tmp_path, "kmnist", skip=("train-images-idx3-ubyte.gz",))
    with pytest.raises(DataError) as e:
        load_images("kmnist", "train", root=tmp_path, verify=False)
    msg = str(e.value)
    assert str(tmp_path / "kmnist" / "train-images-idx3-ubyte.gz") in msg
    assert "bdb82020997e1d708af4cf47b453dcf7" in msg and "codh.rois.ac.jp" in msg and "download=True" in msg
    assert load_images("kmnist", "test", root=tmp_path, verify=False)[0].shape[0] == 6


def test_idx_bad_magic_and_truncation(tmp_path, fakes):
    fakes.write_gz(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", b"\x12\x34\x08\x03" + b"\0" * 20)
    fakes.write_gz(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", fakes.idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match="bad IDX magic") as e:
        load_images("mnist", "test", root=tmp_path, verify=False)
    assert "9fb629c4189551a2d022fa330f9573f3" in str(e.value) and "actual md5" in str(e.value)
    good = fakes.idx_bytes(np.zeros((3, 28, 28), np.uint8))
    fakes.write_gz(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", good[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_images("mnist", "test", root=tmp_path, verify=False)


def test_usps_h5_and_libsvm(tmp_path, fakes):
    data = fakes.write_usps(tmp_path)
    x, y = load_images("usps", "train", root=tmp_path, verify=False)
    assert x.shape == (7, 1, 16, 16) and y.tolist() == data["train"][1].tolist()
    assert torch.allclose(x.flatten(1), torch.from_numpy(data["train"][0]))
    xt, yt = load_images("usps", "test", root=tmp_path, verify=False, source="libsvm")
    xh, yh = load_images("usps", "test", root=tmp_path, verify=False)
    assert torch.equal(yt, yh) and torch.allclose(xt, xh, atol=1e-5)
    with pytest.raises(DataError, match="usps.bz2"):
        load_images("usps", "train", root=tmp_path, verify=False, source="libsvm")


def test_svhn_mat(tmp_path):
    import scipy.io

    n = 4
    x = np.zeros((32, 32, 3, n), np.uint8)
    for i in range(n):
        x[i, 2 * i, i % 3, i] = 200  # row i, col 2i, channel i%3 of image i
    (tmp_path / "svhn").mkdir()
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": x, "y": np.array([[10], [1], [9], [10]], np.uint8)})
    xs, ys = load_images("svhn", "test", root=tmp_path, verify=False)
    assert xs.shape == (n, 3, 32, 32) and ys.tolist() == [0, 1, 9, 0]
    for i in range(n):
        assert xs[i, i % 3, i, 2 * i] == pytest.approx(200 / 255)
        assert xs[i].sum() == pytest.approx(200 / 255)


def _cifar_batch(n: int, label_key: str, seed: int, bytes_keys: bool) -> tuple[bytes, np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    d = {"batch_label": "fake", "data": data, label_key: labels, "filenames": [f"f{i}.png" for i in range(n)]}
    if bytes_keys:
        d = {k.encode(): v for k, v in d.items()}
    return pickle.dumps(d, protocol=2), data, labels


def test_cifar10_batches_and_tar(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    want_x, want_y = [], []
    for i, b in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        blob, x, y = _cifar_batch(3, "labels", i, bytes_keys=i % 2 == 0)
        (folder / b).write_bytes(blob)
        want_x.append(x)
        want_y.append(y)
    x, y = load_images("cifar10", "train", root=tmp_path, verify=False)
    assert x.shape == (15, 3, 32, 32) and y.tolist() == sum(want_y[:5], [])
    assert torch.equal((x * 255).round().to(torch.uint8).reshape(15, -1), torch.from_numpy(np.concatenate(want_x[:5])))
    # the release tarball, read in memory
    tar_root = tmp_path / "t"
    (tar_root / "cifar10").mkdir(parents=True)
    with tarfile.open(tar_root / "cifar10" / "cifar-10-python.tar.gz", "w:gz") as t:
        t.add(folder, arcname="cifar-10-batches-py")
    xt, yt = load_images("cifar10", "test", root=tar_root, verify=False)
    assert yt.tolist() == want_y[5] and xt.shape == (3, 3, 32, 32)
    assert sorted(os.listdir(tar_root / "cifar10")) == ["cifar-10-python.tar.gz"]  # nothing extracted


def test_cifar100_fine_and_coarse(tmp_path):
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    d = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "fine_labels": [5, 99, 0, 42],
         "coarse_labels": [1, 19, 0, 7]}
    (folder / "test").write_bytes(pickle.dumps(d, protocol=2))
    assert load_images("cifar100", "test", root=tmp_path, verify=False)[1].tolist() == [5, 99, 0, 42]
    assert load_images("cifar100", "test", root=tmp_path, verify=False, coarse=True)[1].tolist() == [1, 19, 0, 7]


def test_cifar_refuses_malicious_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    (folder / "test").write_bytes(pickle.dumps({"data": Evil(), "fine_labels": [1]}, protocol=2))
    with pytest.raises(DataError, match="system"):
        load_images("cifar100", "test", root=tmp_path, verify=False)


def test_stl10_binary(tmp_path):
    folder = tmp_path / "stl10" / "stl10_binary"
    folder.mkdir(parents=True)
    img = np.zeros((2, 3, 96, 96), np.uint8)  # (N, C, H, W)
    img[0, 0, 5, 70] = 255                      # row 5, col 70 of channel 0
    img[1, 2, 90, 1] = 128
    (folder / "test_X.bin").write_bytes(img.transpose(0, 1, 3, 2).tobytes())  # stored column-major
    (folder / "test_y.bin").write_bytes(bytes([1, 10]))
    x, y = load_images("stl10", "test", root=tmp_path, verify=False)
    assert x.shape == (2, 3, 96, 96) and y.tolist() == [0, 9]
    assert x[0, 0, 5, 70] == 1.0 and x[1, 2, 90, 1] == pytest.approx(128 / 255)
    assert x.sum() == pytest.approx(1 + 128 / 255)


def test_unknown_image_dataset(tmp_path):
    with pytest.raises(DataError, match="not an image dataset"):
        load_images("ptb", root=tmp_path)
