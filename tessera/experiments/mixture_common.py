"""Shared data of the template-mixture experiments: digit-domain tasks from one split per dataset.

Training is the library's :func:`tessera.mixture.train_tasks` (the one engine); per-unit results and
step-level resume are :class:`tessera.experiments.units.Units`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..mixture.training import TaskSplit

__all__ = ["domain_tasks"]


def domain_tasks(datasets: Sequence[str], kinds: Sequence[str], *, root: Any = None, split: str = "test",
                 n_eval: int = 2000, n_train: int | None = None, size: int = 28, seed: int = 0
                 ) -> dict[str, TaskSplit]:
    """``{"<dataset>-<kind>": (x_train, y_train, x_eval, y_eval)}`` from one split of each dataset.

    The split is permuted with ``seed``; its last ``n_eval`` images are held out for evaluation, the
    rest (at most ``n_train``) train. Every task of a dataset uses the same images under its own
    augmentation (``tessera.data.digit_domain``).
    """
    from ..data import load_images
    from ..data.domains import digit_domain

    out: dict[str, TaskSplit] = {}
    for d in datasets:
        x, y = load_images(d, split, root)
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(y), generator=g)
        ev, tr = perm[len(y) - n_eval:], perm[:len(y) - n_eval]
        if n_train is not None:
            tr = tr[:n_train]
        for i, k in enumerate(kinds):
            xt = digit_domain(x[tr], k, size=size, seed=seed + 2 * i)
            xe = digit_domain(x[ev], k, size=size, seed=seed + 2 * i + 1)
            out[f"{d}-{k}"] = TaskSplit(xt, y[tr].clone(), xe, y[ev].clone())
    return out
