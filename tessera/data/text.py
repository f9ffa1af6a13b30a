"""Word-level language-model corpora: Penn Treebank (Mikolov) and WikiText-2, ``<eos>`` after every line.

The vocabulary comes from the train split when it is present; otherwise from all available splits, and a
warning says so (WikiText-2's train file is not in ``../shared/data``).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from ..errors import DataError
from .fetch import require
from .files import file_digest
from .registry import get_spec
from .root import resolve_root

__all__ = ["Vocab", "load_text", "tokenize_file", "TEXT_DATASETS"]

TEXT_DATASETS = ("ptb", "wikitext2")
EOS = "<eos>"
UNK = "<unk>"

_TOKEN_CACHE: dict[tuple[str, str], list[str]] = {}


@dataclass
class Vocab:
    """Word <-> id maps, ids in order of first appearance.

    >>> v = Vocab.build([["a", "b", "a"], ["c"]])
    >>> v.itos, v.stoi["c"], len(v)
    (['a', 'b', 'c'], 2, 3)
    """

    itos: list[str] = field(default_factory=list)
    stoi: dict[str, int] = field(default_factory=dict)
    source: str = ""  # which splits it was built from

    @classmethod
    def build(cls, corpora: Iterable[Iterable[str]], source: str = "") -> "Vocab":
        v = cls(source=source)
        for tokens in corpora:
            for w in tokens:
                if w not in v.stoi:
                    v.stoi[w] = len(v.itos)
                    v.itos.append(w)
        return v

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, w: object) -> bool:
        return w in self.stoi

    def encode(self, tokens: list[str]) -> torch.Tensor:
        """int64 ``(len(tokens),)``; unknown words map to ``<unk>`` (DataError if the vocab has none)."""
        stoi = self.stoi
        unk = stoi.get(UNK)
        try:
            ids = [stoi[w] for w in tokens]
        except KeyError:
            if unk is None:
                missing = next(w for w in tokens if w not in stoi)
                raise DataError(f"word {missing!r} is not in the vocabulary and it has no {UNK}; build the vocab "
                                f"from the split that holds it") from None
            ids = [stoi.get(w, unk) for w in tokens]
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids: torch.Tensor | list[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]


def tokenize_file(path: str | os.PathLike) -> list[str]:
    """Whitespace tokens with ``<eos>`` after each line (blank lines give a lone ``<eos>``, as in the
    standard PyTorch word-LM recipe). Cached per file content."""
    path = Path(path)
    key = (str(path.resolve()), file_digest(path, "md5"))
    hit = _TOKEN_CACHE.get(key)
    if hit is not None:
        return hit
    toks: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            toks.extend(line.split())
            toks.append(EOS)
    if len(_TOKEN_CACHE) > 8:
        _TOKEN_CACHE.pop(next(iter(_TOKEN_CACHE)))
    _TOKEN_CACHE[key] = toks
    return toks


def _split_tokens(name: str, split: str, root, verify: bool, download: bool) -> list[str]:
    return tokenize_file(require(name, split, root, download=download, verify=verify)["tokens"])


def load_text(name: str, split: str = "train", root: str | os.PathLike | None = None, *, vocab: Vocab | None = None,
              download: bool = False, verify: bool = True) -> tuple[torch.Tensor, Vocab]:
    """Token ids int64 ``(T,)`` of one split, and the vocabulary (train split's, or the one passed in).

    >>> ids, vocab = load_text("ptb", "valid")            # doctest: +SKIP
    >>> len(vocab), vocab.itos[ids[0]]                    # doctest: +SKIP
    (10000, 'consumers')
    """
    if name not in TEXT_DATASETS:
        raise DataError(f"{name!r} is not a text dataset; choose one of: {', '.join(TEXT_DATASETS)}")
    spec = get_spec(name)
    if split not in spec.splits:
        raise DataError(f"{name}: unknown split {split!r}; choose one of: {', '.join(spec.splits)}")
    tokens = _split_tokens(name, split, root, verify, download)
    if vocab is None:
        vocab = _default_vocab(name, root, verify, download)
    return vocab.encode(tokens), vocab


def _default_vocab(name: str, root, verify: bool, download: bool) -> Vocab:
    spec = get_spec(name)
    rootp = resolve_root(root)
    train = spec.files_for("train")[0]
    if (rootp / train.relpath).is_file() or download:
        return Vocab.build([_split_tokens(name, "train", root, verify, download)], source="train")
    have = [s for s in spec.splits if all((rootp / f.relpath).is_file() for f in spec.files_for(s))]
    warnings.warn(f"{name}: train split missing ({rootp / train.relpath}); vocabulary built from "
                  f"{'+'.join(have)} instead, so ids differ from the standard train-split vocabulary",
                  stacklevel=3)
    return Vocab.build([_split_tokens(name, s, root, verify, download) for s in have], source="+".join(have))
