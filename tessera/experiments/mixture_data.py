"""Data of ``mixture-variants``: five digit-like datasets co-trained, and held-out transfer targets.

Co-trained (paper 002 Table 8 analog): MNIST, Fashion-MNIST, KMNIST, USPS (in MNIST's format: the
16x16 digit scaled into a 20x20 box centred in 28x28) and corrupted MNIST (MNIST-C shot noise, on
MNIST images disjoint from the plain MNIST task's). Held out for transfer (Table 10 analog): the UCI
8x8 handwritten digits (scikit-learn's bundled copy, in MNIST's format), Fashion-MNIST boundary
images and rotated MNIST, each on images no co-trained task uses.

Train images come from each dataset's train split and evaluation images from its test split
(KMNIST: only its test split is offline, so a permutation of it is split into train and eval parts).
Everything is a pure function of the budget and ``seed``.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import DataError
from ..mixture.training import TaskSplit

__all__ = ["five_datasets", "DATASETS", "TARGETS", "CORRUPTION"]

DATASETS = ("mnist", "fashion_mnist", "kmnist", "usps", "cmnist")
TARGETS = ("uci_digits", "fashion_mnist-boundary", "mnist-rotate")
CORRUPTION = "shot_noise"


def _perm(n: int, seed: int, salt: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + salt))


def _take(idx: torch.Tensor, lo: int, n: int, what: str) -> torch.Tensor:
    if lo + n > len(idx):
        raise DataError(f"{what}: needs images {lo}..{lo + n} of a split of {len(idx)}; lower the budget's "
                        f"n_train / n_eval / t_train / t_eval")
    return idx[lo:lo + n]


def _load(root: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from .. import data

    out = {f"{d}/{s}": data.load_images(d, s, root) for d in ("mnist", "fashion_mnist") for s in ("train", "test")}
    out["kmnist/test"] = data.load_images("kmnist", "test", root)
    out["usps/train"] = data.load_images("usps", "train", root)
    out["usps/test"] = data.load_images("usps", "test", root)
    return out


def _usps_like(x: torch.Tensor, size: int) -> torch.Tensor:
    from .da_digits import usps_format
    return usps_format(x, size, "mnist")


def five_datasets(root: Any, *, n_train: int, n_eval: int, t_train: int = 0, t_eval: int = 0, size: int = 28,
                  seed: int = 0) -> tuple[dict[str, TaskSplit], dict[str, TaskSplit]]:
    """``(co-trained tasks, transfer targets)``, each ``{name: (x_train, y_train, x_eval, y_eval)}``.

    ``n_train`` / ``n_eval`` images per co-trained task, ``t_train`` / ``t_eval`` per target (0: no
    targets; the UCI digits have 1,797 images, at most a quarter of them evaluate).
    """
    from ..data.domains import digit_domain

    raw = _load(root)
    out: dict[str, TaskSplit] = {}
    for i, d in enumerate(("mnist", "fashion_mnist")):
        (xr, yr), (xs, ys) = raw[f"{d}/train"], raw[f"{d}/test"]
        tr, te = _take(_perm(len(yr), seed, 2 * i), 0, n_train, d), _take(_perm(len(ys), seed, 2 * i + 1), 0, n_eval, d)
        out[d] = TaskSplit(digit_domain(xr[tr], "original", size), yr[tr], digit_domain(xs[te], "original", size), ys[te])
    xk, yk = raw["kmnist/test"]
    if n_train + n_eval > len(yk):
        raise DataError(f"kmnist: n_train + n_eval = {n_train + n_eval} > its {len(yk)} test images; lower them")
    pk = _perm(len(yk), seed, 4)
    tr, te = pk[:n_train], pk[len(pk) - n_eval:]
    out["kmnist"] = TaskSplit(digit_domain(xk[tr], "original", size), yk[tr], digit_domain(xk[te], "original", size),
                              yk[te])
    (xu, yu), (xv, yv) = raw["usps/train"], raw["usps/test"]
    tr, te = _take(_perm(len(yu), seed, 5), 0, n_train, "usps"), _take(_perm(len(yv), seed, 6), 0, n_eval, "usps")
    out["usps"] = TaskSplit(_usps_like(xu[tr], size), yu[tr], _usps_like(xv[te], size), yv[te])
    (xr, yr), (xs, ys) = raw["mnist/train"], raw["mnist/test"]          # images after the plain MNIST task's
    tr = _take(_perm(len(yr), seed, 0), n_train, n_train, "cmnist")
    te = _take(_perm(len(ys), seed, 1), n_eval, n_eval, "cmnist")
    out["cmnist"] = TaskSplit(digit_domain(xr[tr], CORRUPTION, size, seed=seed * 10 + 7), yr[tr],
                              digit_domain(xs[te], CORRUPTION, size, seed=seed * 10 + 8), ys[te])
    return out, _targets(raw, n_train, n_eval, t_train, t_eval, size, seed)


def _targets(raw: dict[str, tuple[torch.Tensor, torch.Tensor]], n_train: int, n_eval: int, t_train: int,
             t_eval: int, size: int, seed: int) -> dict[str, TaskSplit]:
    """The held-out transfer targets, on images after the co-trained tasks' ones."""
    if t_train <= 0 or t_eval <= 0:
        return {}
    from ..data.domains import digit_domain, sklearn_digits

    out: dict[str, TaskSplit] = {}
    xd, yd = sklearn_digits(8)
    pd = _perm(len(yd), seed, 7)
    n_ev = min(t_eval, len(pd) // 4)
    ev, tr = pd[len(pd) - n_ev:], pd[:min(t_train, len(pd) - n_ev)]
    out["uci_digits"] = TaskSplit(_usps_like(xd[tr], size), yd[tr], _usps_like(xd[ev], size), yd[ev])
    (xr, yr), (xs, ys) = raw["fashion_mnist/train"], raw["fashion_mnist/test"]
    tr = _take(_perm(len(yr), seed, 2), n_train, t_train, "fashion_mnist-boundary")
    te = _take(_perm(len(ys), seed, 3), n_eval, t_eval, "fashion_mnist-boundary")
    out["fashion_mnist-boundary"] = TaskSplit(digit_domain(xr[tr], "boundary", size), yr[tr],
                                              digit_domain(xs[te], "boundary", size), ys[te])
    (xr, yr), (xs, ys) = raw["mnist/train"], raw["mnist/test"]
    tr = _take(_perm(len(yr), seed, 0), 2 * n_train, t_train, "mnist-rotate")
    te = _take(_perm(len(ys), seed, 1), 2 * n_eval, t_eval, "mnist-rotate")
    out["mnist-rotate"] = TaskSplit(digit_domain(xr[tr], "rotate", size, seed=seed * 10 + 9), yr[tr],
                                    digit_domain(xs[te], "rotate", size, seed=seed * 10 + 10), ys[te])
    return out
