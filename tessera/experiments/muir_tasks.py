"""The three (architecture, task) pairs of the MUiR cross-modal experiments as engine :class:`Task` s.

* **L** - LeNet (:class:`tessera.hyper.models.LeNet`) on Fashion-MNIST, test error %, batch 128.
* **S** - 2-layer LSTM LM (tied, dropout 0.2) on Penn Treebank, test perplexity; batch 20, truncated
  BPTT of 35 tokens with the hidden state carried from batch to batch (:mod:`tessera.train.bptt`).
* **D** - DeepBind (1-D CNN, 24-wide motif filters) on one ENCODE ChIP-seq TF, test AUC, batch 256;
  negatives are dinucleotide shuffles of the bound training sequences
  (:func:`tessera.data.genomics.dinucleotide_shuffle`).

Each pair builds its model (``model()``) and its engine task (``task(pick)``): ``pick=None`` trains the
model itself, ``pick=i`` trains ``model[i]`` of a joint :class:`~tessera.hyper.MuirModels`.
``score(final_metrics)`` turns the engine's evaluation into the reported number.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..hyper.models import DeepBind, LeNet, LSTMLanguageModel, TransformerLM
from ..train import Task
from ..train.bptt import CarriedState, TokenStream, stream_perplexity

__all__ = ["VisionTask", "LanguageTask", "TransformerTask", "DnaTask", "load_tasks", "synthetic_tasks", "DNA_TF"]


class _Pick:
    """``fn(model) -> model[i]`` (picklable)."""

    def __init__(self, i: int):
        self.i = i

    def __call__(self, model: nn.Module) -> nn.Module:
        return model[self.i]  # type: ignore[index]


class _Forward:
    """``Task.forward`` running ``model[i](x)``."""

    def __init__(self, i: int):
        self.i = i

    def __call__(self, model: nn.Module, x: Tensor) -> Tensor:
        return model[self.i](x)  # type: ignore[index]


class VisionTask:
    """LeNet on an image classification set; metric: test error in %."""

    short, name, metric, lower_is_better = "L", "lenet", "test_error_pct", True

    def __init__(self, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, *, dataset: str,
                 batch: int = 128):
        self.x, self.y, self.xt, self.yt = x_train, y_train, x_test, y_test
        self.dataset, self.batch = dataset, batch
        self.classes = int(max(int(y_train.max()), int(y_test.max())) + 1)

    def model(self) -> nn.Module:
        return LeNet(self.x.shape[1], self.classes, self.x.shape[-1])

    def describe(self) -> dict[str, Any]:
        return {"data": self.dataset, "model": "LeNet 16-16-128-96", "batch": self.batch, "train": len(self.y),
                "test": len(self.yt), "loss": "cross-entropy"}

    def task(self, pick: int | None = None) -> Task:
        return Task(self.short, train=(self.x, self.y), eval=(self.xt, self.yt), metrics=["error"],
                    batch_size=self.batch, forward=None if pick is None else _Forward(pick))

    @staticmethod
    def score(metrics: dict[str, float]) -> float:
        return 100.0 * metrics["error"]


class LanguageTask:
    """Word-level LSTM LM with truncated BPTT; metric: test perplexity."""

    short, name, metric, lower_is_better = "S", "lstm", "test_perplexity", True

    def __init__(self, train: Tensor, test: Tensor, vocab: int, *, dataset: str = "ptb", hidden: int = 128,
                 batch: int = 20, bptt: int = 35, eval_batch: int = 10, embed: int | None = None,
                 dropout: float = 0.2, layers: int = 2):
        self.train_tokens, self.test_tokens, self.vocab, self.dataset = train, test, vocab, dataset
        self.hidden, self.embed, self.batch, self.bptt, self.eval_batch = hidden, embed, batch, bptt, eval_batch
        self.dropout, self.layers = dropout, layers

    def model(self) -> nn.Module:
        return LSTMLanguageModel(self.vocab, self.hidden, layers=self.layers, dropout=self.dropout, tie=True,
                                 embed=self.embed)

    def describe(self) -> dict[str, Any]:
        size = (f"{self.layers}x{self.hidden}" if self.embed in (None, self.hidden)
                else "-".join(map(str, [self.embed] + [self.hidden] * (self.layers - 1) + [self.embed])))
        return {"data": self.dataset, "model": f"{size} LSTM, tied, dropout {self.dropout:g}", "batch": self.batch,
                "bptt": self.bptt, "vocab": self.vocab, "train_tokens": self.train_tokens.numel(),
                "test_tokens": self.test_tokens.numel(), "loss": "cross-entropy"}

    def task(self, pick: int | None = None) -> Task:
        sel = None if pick is None else _Pick(pick)
        test, eb, bptt = self.test_tokens, self.eval_batch, self.bptt

        def evaluate(model: nn.Module) -> dict[str, float]:
            return stream_perplexity(model if sel is None else sel(model), test, batch=eb, bptt=bptt)
        return Task(self.short, train=TokenStream(self.train_tokens, self.batch, self.bptt), order="sequential",
                    batch_size=self.batch, forward=CarriedState(sel), evaluate=evaluate, metrics=[])

    @staticmethod
    def score(metrics: dict[str, float]) -> float:
        return metrics["perplexity"]


class TransformerTask(LanguageTask):
    """A small causal transformer LM (:class:`~tessera.hyper.models.TransformerLM`: pre-norm
    ``nn.TransformerEncoderLayer`` s, tied embedding / decoder, dropout 0.2) on the same token streams as
    :class:`LanguageTask`; its state is the last ``memory`` tokens, so truncated BPTT and the streamed
    evaluation run unchanged. Metric: test perplexity."""

    short, name = "T", "transformer"

    def __init__(self, train: Tensor, test: Tensor, vocab: int, *, heads: int = 4, memory: int = 32, **kw: Any):
        super().__init__(train, test, vocab, **kw)
        self.heads, self.memory = heads, memory

    def model(self) -> nn.Module:
        return TransformerLM(self.vocab, self.hidden, layers=self.layers, heads=self.heads, dropout=self.dropout,
                             memory=self.memory, max_len=self.memory + self.bptt)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model": f"{self.layers}-layer causal transformer, d={self.hidden}, "
                f"{self.heads} heads, memory {self.memory} tokens, tied, dropout {self.dropout:g}"}


class DnaTask:
    """DeepBind on one ENCODE ChIP-seq TF (positives + dinucleotide-shuffled negatives); metric: test AUC."""

    short, name, metric, lower_is_better = "D", "deepbind", "test_auc", False

    def __init__(self, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, *, dataset: str,
                 channels: int = 32, batch: int = 256):
        self.x, self.y, self.xt, self.yt = x_train, y_train, x_test, y_test
        self.dataset, self.channels, self.batch = dataset, channels, batch

    def model(self) -> nn.Module:
        return DeepBind(self.channels, self.channels, kernel=24)

    def describe(self) -> dict[str, Any]:
        return {"data": self.dataset, "model": f"DeepBind-{self.channels} (k=24)", "batch": self.batch,
                "train": len(self.y), "test": len(self.yt), "loss": "binary cross-entropy",
                "negatives": "one dinucleotide shuffle of each training positive"}

    def task(self, pick: int | None = None) -> Task:
        return Task(self.short, train=(self.x, self.y), eval=(self.xt, self.yt), loss="bce", metrics=["auc"],
                    batch_size=self.batch, forward=None if pick is None else _Forward(pick))

    @staticmethod
    def score(metrics: dict[str, float]) -> float:
        return metrics["auc"]


DNA_TF = "GATA3"
"""ENCODE TF used for the DNA task (its _AC training file has 15k bound sequences)."""


def load_tasks(root: Path, *, train_fraction: float = 1.0, eval_images: int | None = None,
               eval_tokens: int | None = None, hidden: int = 128, channels: int = 32, embed: int | None = None,
               seed: int = 0, vision: str = "fashion_mnist", tf: str = DNA_TF,
               parts: Sequence[str] = ("L", "S", "D")) -> list[Any]:
    """The real tasks from the data root, in the order of ``parts``: L, S, D (the three of Table 3) and
    T (a transformer LM on S's token streams)."""
    unknown = set(parts) - {"L", "S", "D", "T"}
    if unknown or not parts:
        raise ConfigError(f"load_tasks: parts must be a non-empty subset of L, S, D, T; got {list(parts)}")
    out: dict[str, Any] = {}
    from ..data import dinucleotide_shuffle, load_deepbind, load_images, load_text
    from ..data.fetch import require
    from ..data.genomics import one_hot_dna, read_seq_gz

    if "L" in parts:
        x, y = load_images(vision, "train", root)
        xt, yt = load_images(vision, "test", root)
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))[: int(len(y) * train_fraction)]
        x, y = x[keep], y[keep]
        if eval_images is not None:
            xt, yt = xt[:eval_images], yt[:eval_images]
        out["L"] = VisionTask(x, y, xt, yt, dataset=vision)

    if "S" in parts or "T" in parts:
        tr, vocab = load_text("ptb", "train", root)
        te, _ = load_text("ptb", "test", root, vocab=vocab)
        tr = tr[: int(len(tr) * train_fraction)]
        if eval_tokens is not None:
            te = te[:eval_tokens]
        out["S"] = LanguageTask(tr, te, len(vocab), hidden=hidden, embed=embed)
        out["T"] = TransformerTask(tr, te, len(vocab), hidden=hidden)

    if "D" in parts:
        files = require("deepbind_encode", "train", root)
        key = next(k for k in files if k.split("_", 1)[0] == tf)
        seqs, _, _ = read_seq_gz(files[key])
        seqs = seqs[: int(len(seqs) * train_fraction)]
        rng = random.Random(1000 + seed)
        neg = [dinucleotide_shuffle(s, rng) for s in seqs]
        L = max(len(s) for s in seqs)
        xd = one_hot_dna(seqs + neg, L)
        yd = torch.cat([torch.ones(len(seqs)), torch.zeros(len(neg))])
        xdt, ydt = load_deepbind(root, tf=tf, split="test", length=L)
        out["D"] = DnaTask(xd, yd, xdt, ydt, dataset=f"ENCODE ChIP-seq {tf} ({key}, test _B)", channels=channels)
    return [out[p] for p in parts]


def synthetic_tasks(seed: int = 0, *, images: int = 512, vocab: int = 10_000, tokens: int = 20_000,
                    sequences: int = 512, length: int = 101, hidden: int = 128, channels: int = 32,
                    embed: int | None = None) -> list[Any]:
    """Random stand-ins with the real tasks' shapes, batch sizes and models (benchmarks and tests)."""
    g = torch.Generator().manual_seed(seed)
    vis = VisionTask(torch.rand(images, 1, 28, 28, generator=g), torch.randint(0, 10, (images,), generator=g),
                     torch.rand(64, 1, 28, 28, generator=g), torch.arange(64) % 10, dataset="random images")
    lang = LanguageTask(torch.randint(0, vocab, (tokens,), generator=g),
                        torch.randint(0, vocab, (max(tokens // 10, 80),), generator=g), vocab,
                        dataset="random tokens", hidden=hidden, embed=embed)
    base = torch.randint(0, 4, (sequences + 64, length), generator=g)
    onehot = F.one_hot(base, 4).transpose(1, 2).float()                            # (N, 4, L)
    dna = DnaTask(onehot[:sequences], (torch.arange(sequences) % 2).float(), onehot[sequences:],
                  (torch.arange(64) % 2).float(), dataset="random DNA", channels=channels)
    return [vis, lang, dna]
