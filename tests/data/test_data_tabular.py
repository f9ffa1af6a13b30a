"""DeepBind .seq.gz, CRISPR csv/tsv, Office SURF .mat and MUiR pickles on fake files."""
from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from tessera.data import (load_crispr, load_deepbind, load_muir_synthetic, load_office_surf, muir_validation_indices,
                          one_hot_dna)
from tessera.data.safe_pickle import safe_load_file
from tessera.errors import DataError

ARID = "ARID3A_HepG2_ARID3A_(NB100-279)_Stanford_B"
GATA = "GATA3_SH-SY5Y_GATA3_(SC-269)_USC_B"


def _seq_gz(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "FoldID\tEventID\tseq\tBound\n" + "".join(f"A\tseq_{i}\t{s}\t{b}\n" for i, (s, b) in enumerate(rows))
    path.write_bytes(gzip.compress(text.encode()))


def test_one_hot_handles_n_and_padding():
    x = one_hot_dna(["ACGTN", "gt"])
    assert x.shape == (2, 4, 5) and x.dtype == torch.float32
    assert x[0, :, 4].sum() == 0 and x[1, :, 2:].sum() == 0
    assert x[1, :, :2].argmax(0).tolist() == [2, 3]


def test_deepbind_reads_header_and_filters_tf(tmp_path):
    d = tmp_path / "deepbind_encode" / "test"
    _seq_gz(d / f"{ARID}.seq.gz", [("ACGT", 1), ("NNGT", 0)])
    _seq_gz(d / f"{GATA}.seq.gz", [("TTTT", 0)])
    _seq_gz(d / "FOXM1_GM12878_FOXM1_(SC-502)_HudsonAlpha_B.seq.gz", [("CCCC", 1)])
    x, y = load_deepbind(tmp_path, split="test", verify=False)
    assert x.shape == (4, 4, 4) and y.tolist() == [1.0, 0.0, 1.0, 0.0]
    x, y = load_deepbind(tmp_path, tf="ARID3A", split="test", verify=False)
    assert x.shape == (2, 4, 4) and x[1, :, :2].sum() == 0 and y.dtype == torch.float32
    with pytest.raises(DataError, match="GATA3"):
        load_deepbind(tmp_path, tf="NOPE", split="test", verify=False)


def test_crispr_fc_res_and_v1(tmp_path):
    d = tmp_path / "crispr_doench"
    d.mkdir()
    m30 = "ACGT" * 7 + "AC"
    (d / "FC_plus_RES_withPredictions.csv").write_text(
        ",30mer,Target gene,score_drug_gene_rank,predictions\n"
        f"0,{m30},CD5,0.25,0.9\n1,{m30[::-1]},NF1,0.75,0.1\n")
    (d / "V1_suppl_data.txt").write_text(
        "Spacer Sequence\tExtended Spacer(NNNN[20nt]NGGNNNNNNN)\tActivity\tPercent Rank\r\n"
        f"x\t{m30}\t2.3\t0.5\r\n")
    x, y = load_crispr(tmp_path, "fc_res", verify=False)
    assert x.shape == (2, 4, 30) and y.tolist() == [0.25, 0.75] and x.sum() == 60
    x, y = load_crispr(tmp_path, "v1", verify=False)
    assert x.shape == (1, 4, 30) and y.tolist() == [0.5]
    assert load_crispr(tmp_path, "v1", target="Activity", verify=False)[1].item() == pytest.approx(2.3)
    with pytest.raises(DataError, match="fc_res"):
        load_crispr(tmp_path, "v2")


def test_office_surf(tmp_path):
    import scipy.io

    (tmp_path / "office_caltech10_surf").mkdir()
    fts = np.arange(3 * 800, dtype=np.uint8).reshape(3, 800)
    scipy.io.savemat(tmp_path / "office_caltech10_surf" / "dslr_SURF_L10.mat",
                     {"fts": fts, "labels": np.array([[1], [10], [4]], np.uint8)})
    x, y = load_office_surf("dslr", tmp_path, verify=False)
    assert x.shape == (3, 800) and x.dtype == torch.float32 and y.tolist() == [0, 9, 3]
    with pytest.raises(DataError, match="amazon"):
        load_office_surf("imagenet", tmp_path)


def _write_muir(root, evil=None):
    d = root / "muir_synthetic"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shapes = {"train_X": (30, 15, 20), "train_Y": (30, 15), "test_X": (30, 50, 20), "test_Y": (30, 50)}
    for k, s in shapes.items():
        for name in ([k, f"noisy_{k}"] if k.endswith("_Y") else [k]):
            (d / f"{name}.pkl").write_bytes(pickle.dumps(rng.standard_normal(s), protocol=2))
    if evil is not None:
        (d / "train_X.pkl").write_bytes(pickle.dumps(evil, protocol=2))


def test_muir_synthetic_shapes_and_noisy(tmp_path):
    _write_muir(tmp_path)
    clean = load_muir_synthetic(tmp_path, verify=False)
    noisy = load_muir_synthetic(tmp_path, noisy=True, verify=False)
    assert {k: v.shape for k, v in clean.items()} == {"train_X": (30, 15, 20), "train_Y": (30, 15),
                                                      "test_X": (30, 50, 20), "test_Y": (30, 50)}
    assert np.array_equal(clean["train_X"], noisy["train_X"]) and not np.array_equal(clean["test_Y"], noisy["test_Y"])
    assert muir_validation_indices().tolist() == [1, 3, 8, 6, 14]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_muir_refuses_malicious_pickles(tmp_path):
    _write_muir(tmp_path, evil=_Evil())
    with pytest.raises(DataError, match="system"):
        load_muir_synthetic(tmp_path, verify=False)


def test_restricted_unpickler_is_numpy_only(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps(np.arange(4.0), protocol=2))
    assert safe_load_file(p).tolist() == [0.0, 1.0, 2.0, 3.0]
    for payload in (_Evil(), {1, 2}, __import__("collections").OrderedDict(a=1), eval):
        p.write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(DataError):
            safe_load_file(p)
    p.write_bytes(pickle.dumps([1, 2], protocol=2))  # plain list: no globals needed, but not an array
    with pytest.raises(DataError, match="expected a numeric numpy array"):
        safe_load_file(p)
    p.write_bytes(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    with pytest.raises(DataError):
        safe_load_file(p)
    root = tmp_path / "r"
    _write_muir(root)
    (root / "muir_synthetic" / "test_Y.pkl").write_bytes(pickle.dumps(np.zeros((30, 49)), protocol=2))
    with pytest.raises(DataError, match=r"expected a float array \(30, 50\)"):
        load_muir_synthetic(root, verify=False)
