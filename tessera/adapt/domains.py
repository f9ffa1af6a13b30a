"""Domains for multi-source domain adaptation: a named set of inputs, labelled or not, validated once.

A :class:`Domain` is ``(name, x, y=None)``. Sources are labelled; the target of an *unsupervised*
method must not be (:func:`require_unlabeled` refuses it, so labels cannot leak into a method that
promises not to use them). :func:`check_domains` checks that a group of domains can feed one
network (same input shape, distinct names). Batches are drawn by the engine (:mod:`tessera.train`).

>>> import torch
>>> src = Domain("mnist", torch.rand(8, 1, 4, 4), torch.arange(8) % 3)
>>> tgt = Domain("usps", torch.rand(5, 1, 4, 4))
>>> check_domains([src, tgt]), src.labeled, tgt.labeled, len(tgt)
((1, 4, 4), True, False, 5)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["Domain", "DomainError", "check_domains", "require_unlabeled", "require_labeled"]

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


class DomainError(ConfigError):
    """A domain is empty, badly shaped, wrongly labelled, or used where it does not fit."""


@dataclass(frozen=True, eq=False)
class Domain:
    """A named domain: inputs ``x`` (N, ...) and optional integer labels ``y`` (N,).

    Names are letters, digits, ``_`` or ``-`` (they become task names of a mixture network).
    """

    name: str
    x: Tensor
    y: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise DomainError(f"domain name {self.name!r} must be non-empty letters, digits, '_' or '-'; rename it")
        if not isinstance(self.x, Tensor) or self.x.dim() < 2:
            shape = tuple(self.x.shape) if isinstance(self.x, Tensor) else type(self.x).__name__
            raise DomainError(f"domain {self.name!r}: x must be a tensor (N, ...) with a batch dim, got {shape}; "
                              f"add a batch dimension")
        if len(self.x) == 0:
            raise DomainError(f"domain {self.name!r} is empty (0 samples); pass at least one sample or drop the domain")
        if not self.x.is_floating_point():
            raise DomainError(f"domain {self.name!r}: x has dtype {self.x.dtype}; convert it with x.float()")
        if not bool(torch.isfinite(self.x).all()):
            raise DomainError(f"domain {self.name!r}: x holds NaN or infinite values; clean the data first")
        if self.y is not None:
            y = self.y
            if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype not in (torch.int64, torch.int32):
                raise DomainError(f"domain {self.name!r}: y must be an int64 tensor (N,) of class ids, got "
                                  f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
            if len(y) != len(self.x):
                raise DomainError(f"domain {self.name!r}: {len(self.x)} inputs but {len(y)} labels; "
                                  f"pass one label per input")
            if int(y.min()) < 0:
                raise DomainError(f"domain {self.name!r}: negative label {int(y.min())}; labels are 0..C-1")

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return f"Domain({self.name!r}, n={len(self)}, shape={self.input_shape}, labeled={self.labeled})"

    @property
    def labeled(self) -> bool:
        return self.y is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (1, 28, 28)."""
        return tuple(self.x.shape[1:])

    def unlabeled(self) -> "Domain":
        """The same inputs without labels (what an unsupervised method may see)."""
        return Domain(self.name, self.x)

    def subset(self, index: Tensor, name: str | None = None) -> "Domain":
        """A domain of the rows ``index`` (int64)."""
        return Domain(name or self.name, self.x[index], None if self.y is None else self.y[index])


def check_domains(domains: Sequence[Domain], *, labeled: bool | None = None, distinct: bool = True) -> tuple[int, ...]:
    """Validate a group of domains that feed one network; returns the common input shape.

    ``labeled=True`` requires labels on every domain (sources), ``False`` forbids them;
    ``distinct=False`` allows repeated names (e.g. a domain's train and test parts).
    """
    if not domains:
        raise DomainError("no domains given; pass at least one Domain")
    for d in domains:
        if not isinstance(d, Domain):
            raise DomainError(f"expected Domain objects, got {type(d).__name__}; wrap data as Domain(name, x, y)")
    names = [d.name for d in domains]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup and distinct:
        raise DomainError(f"domain names must be distinct, {dup[0]!r} appears twice; rename one")
    shape = domains[0].input_shape
    for d in domains[1:]:
        if d.input_shape != shape:
            raise ShapeError(f"domain {d.name!r} has inputs of shape {d.input_shape} but {domains[0].name!r} has "
                             f"{shape}; resize every domain to one shape (e.g. tessera.data.resize)")
    if labeled is True:
        bad = [d.name for d in domains if not d.labeled]
        if bad:
            raise DomainError(f"source domain {bad[0]!r} has no labels; sources need labels y")
    elif labeled is False:
        for d in domains:
            require_unlabeled(d)
    return shape


def require_unlabeled(domain: Domain, method: str = "an unsupervised method") -> Domain:
    """Refuse a labelled target: unsupervised adaptation must not see target labels."""
    if domain.labeled:
        raise DomainError(f"target domain {domain.name!r} has labels but {method} is unsupervised; "
                          f"pass target.unlabeled() (labels are for evaluation only)")
    return domain


def require_labeled(domain: Domain, method: str = "this method") -> Domain:
    if not domain.labeled:
        raise DomainError(f"domain {domain.name!r} has no labels but {method} needs them; pass Domain(name, x, y)")
    return domain
