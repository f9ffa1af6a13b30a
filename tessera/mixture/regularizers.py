"""Regularizers of mixture weights (paper 002, §3.2): entropy and the "clustering" regularizer.

Clustering: ``R[xi, theta] = alpha * sum_l sum_k xi_lk * g(||theta_bar_l - theta_k||)`` with
``theta_bar_l = sum_k xi_lk theta_k``. It is minimal for one-hot xi (when templates differ) and
pulls each template towards the layers it contributes most to. Distances come from the K x K Gram
matrix of the bank (float64), so nothing of size (L, K, P) is ever built.

>>> bank = torch.tensor([[0.0], [2.0]])                       # K=2 templates, P=1
>>> clustering(bank, torch.tensor([[0.25, 0.75]]), alpha=1.0).item()   # 0.25*1.5^2 + 0.75*0.5^2
0.75
>>> round(entropy(torch.zeros(1, 2)).item(), 4)               # log 2
0.6931
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = ["entropy", "clustering", "squared_distances", "mixture_entropy", "mixture_clustering"]

G_FUNCS: dict[str, Callable[[Tensor], Tensor]] = {
    "square": lambda d2: d2,                      # g(d) = d^2
    "norm": lambda d2: (d2 + 1e-12).sqrt(),       # g(d) = d
    "log1p": lambda d2: torch.log1p(d2),          # g(d) = log(1 + d^2)
}


def entropy(logits: Tensor) -> Tensor:
    """Sum over layers of H[softmax(xi_l)] for logits ``(..., L, K)`` (finite for hard one-hot rows)."""
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum()


def squared_distances(bank: Tensor, coeff: Tensor) -> Tensor:
    """``||theta_bar_l - theta_k||^2`` for every layer and template, ``(L, K)``, from the Gram matrix.

    ``theta_bar_l = coeff_l @ bank``; ``||a - b||^2 = a.a - 2 a.b + b.b`` with every dot product taken
    from ``G = bank bank^T`` (K, K), computed in float64 to avoid cancellation.
    """
    b = bank.double()
    c = coeff.double()
    gram = b @ b.T                                   # (K, P) @ (P, K) -> (K, K)
    cg = c @ gram                                    # (L, K) @ (K, K) -> (L, K): theta_bar_l . theta_k
    bar2 = (cg * c).sum(-1, keepdim=True)            # (L, 1): ||theta_bar_l||^2
    d2 = bar2 - 2.0 * cg + gram.diagonal()[None, :]  # (L, K)
    return d2.clamp_min(0.0).to(bank.dtype)


def clustering(bank: Tensor, coeff: Tensor, alpha: float = 1.0, g: str | Callable[[Tensor], Tensor] = "square",
               normalize: bool = False) -> Tensor:
    """``alpha * sum_{l,k} coeff_lk * g(||theta_bar_l - theta_k||)`` for a bank (K, P), coeff (L, K).

    ``g`` is ``"square"`` (d^2, default), ``"norm"`` (d), ``"log1p"`` (log(1 + d^2)) or a function of the
    *squared* distance. ``normalize`` divides squared distances by P (scale independent of block size).
    """
    fn = G_FUNCS.get(g) if isinstance(g, str) else g
    if fn is None:
        raise ConfigError(f"unknown g {g!r}; choose one of: {', '.join(G_FUNCS)} or pass a function of d^2")
    d2 = squared_distances(bank, coeff)
    if normalize:
        d2 = d2 / bank.shape[1]
    return alpha * (coeff * fn(d2)).sum()


def _tasks(model, tasks: Sequence[str] | str | None) -> list[str]:
    if tasks is None:
        return [model.task]
    return [tasks] if isinstance(tasks, str) else list(tasks)


def mixture_entropy(model, tasks: Sequence[str] | str | None = None) -> Tensor:
    """Entropy regularizer of a :class:`~tessera.mixture.MixtureNet` over ``tasks`` (default: active)."""
    return sum((entropy(model.mixture[t]) for t in _tasks(model, tasks)), torch.zeros(()))


def mixture_clustering(model, tasks: Sequence[str] | str | None = None, alpha: float = 1.0,
                       g: str | Callable[[Tensor], Tensor] = "square", normalize: bool = True) -> Tensor:
    """Clustering regularizer of a MixtureNet over ``tasks`` (default: the active one)."""
    return sum((clustering(model.bank.weight, model.coefficients(t), alpha, g, normalize)
                for t in _tasks(model, tasks)), torch.zeros(()))
