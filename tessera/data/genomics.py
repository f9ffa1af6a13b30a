"""DNA readers: DeepBind ``.seq.gz`` (ENCODE ChIP-seq) and Doench CRISPR guide activity, as one-hot (N, 4, L).

Bases map to channels A, C, G, T; anything else (N, gaps, padding of shorter sequences) is all zeros.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import random
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .fetch import require
from .registry import get_spec

__all__ = ["one_hot_dna", "read_seq_gz", "load_deepbind", "deepbind_tfs", "load_crispr", "dinucleotide_shuffle"]

_LUT = np.full(256, 4, dtype=np.int64)  # 4 = "no base" (an extra row that is dropped)
for _i, _b in enumerate("ACGT"):
    _LUT[ord(_b)] = _i
    _LUT[ord(_b.lower())] = _i


def one_hot_dna(seqs: list[str], length: int | None = None) -> torch.Tensor:
    """float32 ``(N, 4, L)``; L = ``length`` or the longest sequence (shorter ones are zero-padded on the right).

    >>> one_hot_dna(["ACGTN"])[0].int().tolist()
    [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]]
    """
    n = len(seqs)
    L = length if length is not None else max((len(s) for s in seqs), default=0)
    codes = np.full((n, L), 4, dtype=np.int64)
    for i, s in enumerate(seqs):
        b = np.frombuffer(s[:L].encode("ascii", "replace"), dtype=np.uint8)
        codes[i, : len(b)] = _LUT[b]
    eye = np.eye(5, 4, dtype=np.float32)            # row 4 is all zeros
    return torch.from_numpy(np.ascontiguousarray(eye[codes].transpose(0, 2, 1)))  # (N, L, 4) -> (N, 4, L)


def dinucleotide_shuffle(seq: str, rng: random.Random) -> str:
    """A uniformly random sequence with the same dinucleotide counts, first and last letter (Altschul &
    Erickson 1985): a random Eulerian path of the sequence's transition multigraph. DeepBind's negatives
    for bound-only ChIP-seq files are such shuffles of the positives.

    >>> s = "ACGTTGCAACGGTA"
    >>> t = dinucleotide_shuffle(s, random.Random(0))
    >>> sorted(zip(s, s[1:])) == sorted(zip(t, t[1:])) and t[0] == s[0] and t[-1] == s[-1]
    True
    """
    if len(seq) < 3:
        return seq
    edges: dict[str, list[str]] = {}
    for a, b in zip(seq, seq[1:]):
        edges.setdefault(a, []).append(b)
    last = seq[-1]
    while True:   # each vertex's last exit, uniformly; accept when they form a tree into `last`
        exit_ = {v: rng.randrange(len(e)) for v, e in edges.items() if v != last}
        ok = True
        for v in exit_:
            seen, u = set(), v
            while u != last and ok:
                if u in seen:
                    ok = False
                seen.add(u)
                u = edges[u][exit_[u]]
            if not ok:
                break
        if ok:
            break
    order: dict[str, list[str]] = {}
    for v, e in edges.items():
        e = list(e)
        tail = [e.pop(exit_[v])] if v in exit_ else []
        rng.shuffle(e)
        order[v] = e + tail
    out, pos, u = [seq[0]], {v: 0 for v in order}, seq[0]
    for _ in range(len(seq) - 1):
        v = order[u][pos[u]]
        pos[u] += 1
        out.append(v)
        u = v
    return "".join(out)


def read_seq_gz(path: str | os.PathLike) -> tuple[list[str], np.ndarray, list[str]]:
    """A DeepBind file: header line naming the columns (``FoldID EventID seq Bound``), tab separated.

    Returns ``(sequences, bound float32 (N,), event ids)``; columns are found by header name.
    """
    path = Path(path)
    try:
        text = gzip.decompress(path.read_bytes()).decode("ascii")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable DeepBind .seq.gz ({e}); delete it and download it again") from None
    lines = text.splitlines()
    header = lines[0].split("\t") if lines else []
    try:
        i_seq, i_lab = header.index("seq"), header.index("Bound")
        i_id = header.index("EventID") if "EventID" in header else None
    except ValueError:
        raise DataError(f"{path}: header {header} lacks 'seq' / 'Bound'; not a DeepBind file") from None
    seqs, labels, ids = [], [], []
    for ln in lines[1:]:
        if not ln:
            continue
        cols = ln.split("\t")
        seqs.append(cols[i_seq])
        labels.append(float(cols[i_lab]))
        ids.append(cols[i_id] if i_id is not None else "")
    return seqs, np.asarray(labels, dtype=np.float32), ids


def deepbind_tfs(split: str = "train") -> list[str]:
    """File stems of the registered DeepBind experiments of a split (the TF name comes first)."""
    return [f.key for f in get_spec("deepbind_encode").files_for(split)]


def load_deepbind(root: str | os.PathLike | None = None, tf: str | None = None, split: str = "train", *,
                  download: bool = False, verify: bool = True, length: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot sequences float32 ``(N, 4, L)`` and Bound labels float32 ``(N,)`` of a DeepBind split.

    ``split``: ``train`` (``_AC`` files: positives only; DeepBind makes negatives by dinucleotide shuffling),
    ``test`` or ``ood`` (``_B`` files: 500 bound + 500 unbound each). ``tf``: a TF name (``"ARID3A"``) or a
    file stem; None concatenates every file of the split.

    >>> x, y = load_deepbind(tf="GATA3", split="test")    # doctest: +SKIP
    >>> tuple(x.shape), float(y.mean())                   # doctest: +SKIP
    ((1000, 4, 101), 0.5)
    """
    loc = require("deepbind_encode", split, root, download=download, verify=verify)
    keys = list(loc)
    if tf is not None:
        keys = [k for k in keys if k == tf or k.split("_", 1)[0] == tf]
        if not keys:
            names = sorted({k.split("_", 1)[0] for k in loc})
            raise DataError(f"deepbind_encode: no {split} file for TF {tf!r}; choose one of: {', '.join(names)}")
    seqs: list[str] = []
    labels = []
    for k in keys:
        s, y, _ = read_seq_gz(loc[k])
        seqs += s
        labels.append(y)
    return one_hot_dna(seqs, length), torch.from_numpy(np.concatenate(labels))


_CRISPR_COLUMNS = {"fc_res": ("30mer", "score_drug_gene_rank", ","),
                   "v1": ("Extended Spacer(NNNN[20nt]NGGNNNNNNN)", "Percent Rank", "\t")}


def load_crispr(root: str | os.PathLike | None = None, which: str = "fc_res", *, target: str | None = None,
                download: bool = False, verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Doench sgRNA data: one-hot 30-mers float32 ``(N, 4, 30)`` and a float32 target ``(N,)``.

    ``which="fc_res"`` (Doench 2016, 5310 guides, target ``score_drug_gene_rank`` in [0, 1]) or ``"v1"``
    (Doench 2014, 2144 guides, target ``Percent Rank``). ``target`` picks another numeric column.
    """
    if which not in _CRISPR_COLUMNS:
        raise DataError(f"crispr_doench: unknown set {which!r}; choose one of: {', '.join(_CRISPR_COLUMNS)}")
    path = next(iter(require("crispr_doench", which, root, download=download, verify=verify).values()))
    seq_col, tgt_col, delim = _CRISPR_COLUMNS[which]
    tgt_col = target or tgt_col
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(io.StringIO(f.read().replace("\r\n", "\n")), delimiter=delim))
    if not rows or seq_col not in rows[0] or tgt_col not in rows[0]:
        cols = list(rows[0]) if rows else []
        raise DataError(f"{path}: columns {seq_col!r} / {tgt_col!r} not found (have {cols}); pass target= one of them")
    try:
        y = np.asarray([float(r[tgt_col]) for r in rows], dtype=np.float32)
    except ValueError as e:
        raise DataError(f"{path}: column {tgt_col!r} is not numeric ({e}); pass a numeric target= column") from None
    return one_hot_dna([r[seq_col] for r in rows], 30), torch.from_numpy(y)
