"""Measuring compatibility: recombination accuracy, the extractor-by-head matrix, BN modes, correlation.

Recombination accuracy (Sec. 4): the extractor of task a with the head of task b, evaluated on task
a's test images of the classes common to a and b, with no fine-tuning; averaged over both directions.
The upper bound is the same measurement on each task's own network (the diagonal).

>>> import torch
>>> from torch import nn
>>> ext, head = nn.Flatten(), nn.Linear(4, 2)
>>> x, y = torch.randn(10, 1, 2, 2), torch.randint(0, 2, (10,))
>>> 0.0 <= evaluate(ext, head, x, y, bn="train") <= 1.0
True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ShapeError
from .bn import eval_mode
from .components import recombine

__all__ = ["TestSet", "evaluate", "predict", "recombination_matrix", "recombination_accuracy", "own_accuracy",
           "features", "cross_correlation"]

Tensor = torch.Tensor


@dataclass
class TestSet:
    """Test images ``x`` (N, C, H, W), labels ``y`` (N,), and the class names of the labels."""

    __test__ = False  # not a pytest class

    x: Tensor
    y: Tensor
    classes: Sequence[str]


def _batches(x: Tensor, batch_size: int, order: Tensor) -> list[Tensor]:
    return [x[order[i:i + batch_size]] for i in range(0, len(x), batch_size)]


@torch.no_grad()
def predict(extractor: nn.Module, head: nn.Module, x: Tensor, *, bn: str = "batch", batch_size: int = 500,
            seed: int = 0) -> Tensor:
    """Logits ``head(extractor(x))`` (N, classes) under BN mode ``bn`` (see :mod:`tessera.compat.bn`).

    Test batches are drawn in a fixed random order (``seed``) so batch statistics never come from a
    single-class batch of a sorted test set; the logits are returned in the original order.
    """
    net = recombine(extractor, head)
    dev = next(iter(net.parameters())).device if any(True for _ in net.parameters()) else x.device
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    chunks = [b.to(dev) for b in _batches(x, batch_size, order)]
    with eval_mode(net, bn, batches=chunks) as model:
        out = torch.cat([model(b).cpu() for b in chunks])  # (N, classes) in `order`
    logits = torch.empty_like(out)
    logits[order] = out
    return logits


def _restrict(y: Tensor, data_classes: Sequence[str], head_classes: Sequence[str]
              ) -> tuple[Tensor, Tensor, Tensor]:
    """(keep mask over examples, labels in head indices, head columns of the common classes)."""
    hidx = {str(c): i for i, c in enumerate(head_classes)}
    lab_map = torch.tensor([hidx.get(str(c), -1) for c in data_classes])
    mapped = lab_map[y]
    cols = torch.tensor(sorted({i for i in lab_map.tolist() if i >= 0}), dtype=torch.long)
    return mapped >= 0, mapped, cols


def evaluate(extractor: nn.Module, head: nn.Module, x: Tensor, y: Tensor, *, bn: str = "batch",
             data_classes: Sequence[str] | None = None, head_classes: Sequence[str] | None = None,
             restrict_logits: bool = True, batch_size: int = 500, seed: int = 0, balanced: bool = False) -> float:
    """Accuracy of ``head(extractor(x))`` on the examples whose class the head knows.

    With class names, labels are mapped into the head's classes by name and examples of other classes are
    dropped; ``restrict_logits`` takes the argmax over the common classes only (the paper evaluates on
    the 9 common classes). ``balanced``: mean per-class accuracy instead of overall accuracy.
    """
    if (data_classes is None) != (head_classes is None):
        raise ConfigError("evaluate: pass both data_classes and head_classes, or neither")
    if data_classes is not None:
        keep, mapped, cols = _restrict(y, data_classes, head_classes)  # type: ignore[arg-type]
        if not keep.any():
            raise ConfigError(f"evaluate: the data's classes {list(data_classes)[:5]}... and the head's classes "
                              f"{list(head_classes)[:5]}... share none; recombination accuracy is undefined")
        x, y = x[keep], mapped[keep]
    else:
        cols = None
    logits = predict(extractor, head, x, bn=bn, batch_size=batch_size, seed=seed)
    if cols is not None and restrict_logits:
        pred = cols[logits[:, cols].argmax(1)]
    else:
        pred = logits.argmax(1)
    correct = (pred == y).float()
    if balanced:
        return float(torch.stack([correct[y == c].mean() for c in y.unique()]).mean())
    return float(correct.mean())


def recombination_matrix(extractors: Sequence[nn.Module], heads: Sequence[nn.Module], tests: Sequence[TestSet],
                         head_classes: Sequence[Sequence[str]] | None = None, *, data: str = "extractor",
                         bn: str = "batch", batch_size: int = 500, seed: int = 0) -> np.ndarray:
    """``M[i, j]`` = accuracy of ``heads[j]`` on ``extractors[i]``'s features, no fine-tuning.

    ``data="extractor"`` (the paper's Sec. 4): evaluated on ``tests[i]`` (extractor i's task), restricted
    to the classes common with head j. ``data="head"`` (tasks without common classes, Sec. 5.3):
    evaluated on ``tests[j]``, the head's own task. ``head_classes[j]`` defaults to ``tests[j].classes``.
    """
    if data not in ("extractor", "head"):
        raise ConfigError(f"recombination_matrix data={data!r}; choose 'extractor' or 'head'")
    if data == "extractor" and len(tests) != len(extractors):
        raise ShapeError(f"{len(extractors)} extractors but {len(tests)} test sets; pass one test set per extractor")
    if len(heads) != (len(tests) if head_classes is None else len(head_classes)):
        raise ShapeError("pass head_classes (one list per head) or one test set per head")
    hc = [t.classes for t in tests] if head_classes is None else head_classes
    out = np.zeros((len(extractors), len(heads)))
    for i, e in enumerate(extractors):
        for j, h in enumerate(heads):
            t = tests[i] if data == "extractor" else tests[j]
            out[i, j] = evaluate(e, h, t.x, t.y, bn=bn, data_classes=t.classes, head_classes=hc[j],
                                 batch_size=batch_size, seed=seed)
    return out


def recombination_accuracy(matrix: np.ndarray) -> float:
    """Mean of the off-diagonal entries (every extractor with every other task's head)."""
    m = np.asarray(matrix, dtype=float)
    if m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ShapeError(f"recombination accuracy needs a square matrix of at least 2 tasks, got {m.shape}")
    return float(m[~np.eye(len(m), dtype=bool)].mean())


def own_accuracy(matrix: np.ndarray) -> float:
    """Mean of the diagonal (each network on its own task): the upper bound when trained independently."""
    return float(np.diag(np.asarray(matrix, dtype=float)).mean())


@torch.no_grad()
def features(extractor: nn.Module, x: Tensor, *, bn: str = "batch", batch_size: int = 500, seed: int = 0) -> Tensor:
    """Extractor outputs (N, *feature_shape) under BN mode ``bn``, in the order of ``x``."""
    return predict(extractor, nn.Identity(), x, bn=bn, batch_size=batch_size, seed=seed)


def _channels(f: Tensor) -> Tensor:
    """(N, C, *spatial) -> (C, N * prod(spatial)): each channel's responses over images and positions."""
    if f.dim() < 2:
        raise ShapeError(f"features must be (N, C, ...), got {tuple(f.shape)}")
    return f.transpose(0, 1).reshape(f.shape[1], -1).double()


def cross_correlation(fa: Tensor, fb: Tensor, permute: bool = False) -> dict[str, object]:
    """Per-channel Pearson correlation between two extractors' features on the same images (App. C.2).

    ``permute=False`` pairs channel k with channel k; ``permute=True`` pairs channels by the assignment
    maximising the total correlation (``scipy.optimize.linear_sum_assignment``), which can only be higher.
    Returns ``{"mean", "per_channel" (sorted descending), "assignment"}``. Dead channels count as 0.

    >>> f = torch.randn(50, 3, 2, 2)
    >>> round(cross_correlation(f, f[:, [2, 0, 1]], permute=True)["mean"], 6)
    1.0
    """
    if fa.shape[0] != fb.shape[0] or fa.shape[2:] != fb.shape[2:]:
        raise ShapeError(f"features {tuple(fa.shape)} and {tuple(fb.shape)} must come from the same images "
                         f"with the same spatial size")
    a, b = _channels(fa), _channels(fb)  # (Ca, M), (Cb, M)
    if not permute and a.shape[0] != b.shape[0]:
        raise ShapeError(f"{a.shape[0]} vs {b.shape[0]} channels: direct correlation needs equal widths; "
                         f"use permute=True")
    za = (a - a.mean(1, keepdim=True)) / a.std(1, keepdim=True).clamp_min(1e-12)
    zb = (b - b.mean(1, keepdim=True)) / b.std(1, keepdim=True).clamp_min(1e-12)
    corr = (za @ zb.T / (a.shape[1] - 1)).numpy()  # (Ca, M) @ (M, Cb) -> (Ca, Cb)
    if permute:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(corr, maximize=True)
    else:
        rows = cols = np.arange(a.shape[0])
    per = corr[rows, cols]
    return {"mean": float(per.mean()), "per_channel": sorted(per.tolist(), reverse=True),
            "assignment": cols.tolist()}
