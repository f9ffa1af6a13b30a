"""Deterministic held-out splits (e.g. KMNIST's test split cut into train / eval parts)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import DataError

__all__ = ["split_indices"]


def split_indices(n: int, fractions: Sequence[float], seed: int = 0, *, labels: torch.Tensor | None = None
                  ) -> list[torch.Tensor]:
    """Random disjoint index sets (each sorted, int64) of sizes ~``fractions * n``.

    Fractions must sum to at most 1; when they sum to 1 every index is used. ``labels`` (N,) makes the
    split stratified: each class is cut in the same proportions.

    >>> a, b = split_indices(10, [0.7, 0.3], seed=0)
    >>> len(a), len(b), sorted(a.tolist() + b.tolist()) == list(range(10))
    (7, 3, True)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DataError(f"split_indices: n must be an int >= 0, got {n!r}")
    try:
        fr = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise DataError(f"split fractions must be a list of numbers, e.g. [0.8, 0.2]; got {fractions!r}") from None
    if not fr or min(fr) < 0 or sum(fr) > 1 + 1e-9:
        raise DataError(f"split fractions {fr} must be >= 0 and sum to at most 1; e.g. [0.8, 0.2]")
    g = torch.Generator().manual_seed(int(seed))
    if labels is None:
        groups = [torch.arange(n)]
    else:
        if len(labels) != n:
            raise DataError(f"split_indices: {len(labels)} labels for n={n}; pass one label per item")
        labels = torch.as_tensor(labels)
        groups = [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)]
    parts: list[list[torch.Tensor]] = [[] for _ in fr]
    cum = torch.tensor([0.0] + fr).cumsum(0)
    for idx in groups:
        perm = idx[torch.randperm(len(idx), generator=g)]
        bounds = (cum * len(idx)).round().long().clamp_(max=len(idx)).tolist()
        for i in range(len(fr)):
            parts[i].append(perm[bounds[i]:bounds[i + 1]])
    return [torch.sort(torch.cat(p)).values for p in parts]
