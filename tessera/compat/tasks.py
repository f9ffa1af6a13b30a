"""Task pairs for the compatibility experiments, at one common resolution.

* ``"mnist_usps"``      -- MNIST and USPS (10 common digit classes), from the data root;
* ``"fashion_kmnist"``  -- Fashion-MNIST and KMNIST (no common classes; KMNIST's test split is cut into
  8000 train / 2000 test images since its train images are not available offline);
* ``"digits_domains"``  -- offline: scikit-learn's digits, half as the original images, the other half
  as boundary images (10 common classes);
* ``"digits_split"``    -- offline: original digits 0-4 vs boundary digits 5-9 (no common classes);
* ``"mnist_mnist"``, ``"digits_same"`` -- the same-dataset controls (App. C.3): both tasks are the same
  training and test images (MNIST; the original digits), named ``<name>-a`` and ``<name>-b``.

Class names carry a dataset prefix unless the classes are the same concept (digits are ``"0".."9"``).

>>> a, b = load_pair("digits_split", size=16)
>>> list(a.classes), list(b.classes), tuple(a.x.shape[1:])
(['0', '1', '2', '3', '4'], ['5', '6', '7', '8', '9'], (1, 16, 16))
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import ConfigError
from .measure import TestSet

__all__ = ["LabelledTask", "PAIRS", "load_pair", "load_task", "subsample"]


@dataclass
class LabelledTask:
    """A classification task with named classes: training images ``x`` (N, C, H, W), labels ``y`` (N,),
    and a :class:`TestSet` whose ``classes`` name the labels of both.

    Unlike :class:`tessera.mixture.TaskSplit` (bare train / eval tensors), the class names are part of
    it: DCC finds the classes two tasks share by name, and recombination accuracy is measured on them.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    test: TestSet

    @property
    def classes(self) -> Sequence[str]:
        return self.test.classes

PAIRS = ("mnist_usps", "fashion_kmnist", "mnist_mnist", "digits_domains", "digits_split", "digits_same")
DIGITS = [str(i) for i in range(10)]


def subsample(x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``n`` examples, drawn with a fixed seed (all when ``n`` is None)."""
    if n is None or n >= len(y):
        return x, y
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def load_task(name: str, size: int, root: str | os.PathLike | None = None, n_train: int | None = None,
              n_test: int | None = None) -> LabelledTask:
    """One labelled task resized to ``size`` x ``size``: mnist, usps, fashion_mnist or kmnist."""
    from ..data.domains import resize
    from ..data.images import load_images

    if name == "kmnist":  # test split only offline: a fixed 8000 / 2000 cut
        x, y = load_images("kmnist", "test", root)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        (xtr, ytr), (xte, yte) = (x[perm[:8000]], y[perm[:8000]]), (x[perm[8000:]], y[perm[8000:]])
    elif name in ("mnist", "usps", "fashion_mnist"):
        xtr, ytr = load_images(name, "train", root)
        xte, yte = load_images(name, "test", root)
    else:
        raise ConfigError(f"unknown compat task {name!r}; choose mnist, usps, fashion_mnist or kmnist")
    classes = DIGITS if name in ("mnist", "usps") else [f"{name}:{i}" for i in range(10)]
    xtr, ytr = subsample(xtr, ytr, n_train)
    xte, yte = subsample(xte, yte, n_test, seed=1)
    return LabelledTask(name, resize(xtr, size), ytr, TestSet(resize(xte, size), yte, classes))


def _split(name: str, x: torch.Tensor, y: torch.Tensor, classes: list[str], test_frac: float = 0.25) -> LabelledTask:
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(len(y)))
    n_te = int(len(y) * test_frac)
    te, tr = perm[:n_te], perm[n_te:]
    return LabelledTask(name, x[tr], y[tr], TestSet(x[te], y[te], classes))


def _digits_pair(split_classes: bool, size: int) -> tuple[LabelledTask, LabelledTask]:
    from ..data.domains import sklearn_digit_domains

    doms = sklearn_digit_domains(size, kinds=("original", "boundary"))
    (xa, ya), (xb, yb) = doms["original"], doms["boundary"]
    half = torch.arange(len(ya)) % 2 == 0  # disjoint images for the two tasks
    xa, ya, xb, yb = xa[half], ya[half], xb[~half], yb[~half]
    if not split_classes:
        return _split("digits:original", xa, ya, DIGITS), _split("digits:boundary", xb, yb, DIGITS)
    ka, kb = ya < 5, yb >= 5
    return (_split("digits:original0-4", xa[ka], ya[ka], DIGITS[:5]),
            _split("digits:boundary5-9", xb[kb], yb[kb] - 5, DIGITS[5:]))


def _twice(t: LabelledTask) -> tuple[LabelledTask, LabelledTask]:
    """The same images as two tasks (``<name>-a``, ``<name>-b``): a same-dataset control."""
    return LabelledTask(f"{t.name}-a", t.x, t.y, t.test), LabelledTask(f"{t.name}-b", t.x, t.y, t.test)


def load_pair(name: str, size: int = 16, root: str | os.PathLike | None = None, n_train: int | None = None,
              n_test: int | None = None) -> tuple[LabelledTask, LabelledTask]:
    """Two tasks of pair ``name`` (see the module doc); ``n_train`` / ``n_test`` cap the sizes."""
    if name == "mnist_usps":
        return (load_task("mnist", size, root, n_train, n_test), load_task("usps", size, root, n_train, n_test))
    if name == "fashion_kmnist":
        return (load_task("fashion_mnist", size, root, n_train, n_test),
                load_task("kmnist", size, root, n_train, n_test))
    if name == "mnist_mnist":
        return _twice(load_task("mnist", size, root, n_train, n_test))
    if name in ("digits_domains", "digits_split", "digits_same"):
        a, b = _digits_pair(name == "digits_split", size)
        cap = lambda t: LabelledTask(t.name, *subsample(t.x, t.y, n_train),  # noqa: E731
                                     TestSet(*subsample(t.test.x, t.test.y, n_test, 1), t.test.classes))
        return _twice(cap(a)) if name == "digits_same" else (cap(a), cap(b))
    raise ConfigError(f"unknown task pair {name!r}; choose one of {', '.join(PAIRS)}")
