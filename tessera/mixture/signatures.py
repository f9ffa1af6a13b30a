"""Model signatures (which template each layer uses) and mixture-logit initializations.

A signature of an L-layer network over K templates is a list of L template indices (paper 002,
§3.1, App. B): sequential ``(1,1,2,2)``, cyclic ``(1,2,1,2)``, random (a shuffled sequential one),
or given. ``"diag"`` is the Table 8 initialization (xi_l)_k ~ delta_{l,k} (layer l -> template
l mod K). Hard one-hot logits make ``softmax`` exactly one-hot, so a layer equals its template bit
for bit.

>>> sequential(8, 4), cyclic(8, 4)
([0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 2, 3, 0, 1, 2, 3])
>>> one_hot_logits([1, 0], 3).softmax(-1)
tensor([[0., 1., 0.],
        [1., 0., 0.]])
>>> extract_signature(torch.tensor([[0.0, 2.0], [3.0, 0.0]]))[0].tolist()
[1, 0]
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = ["sequential", "cyclic", "random_signature", "diag", "make_signature", "SIGNATURES", "set_signature",
           "freeze", "one_hot_logits", "init_logits", "extract_signature", "HARD_LOGIT"]

HARD_LOGIT = -1.0e4
"""Logit of the unused templates in a hard one-hot row: exp(-1e4) is exactly 0 in float32/64."""


def _check(depth: int, k: int) -> None:
    for name, v in (("depth", depth), ("num_templates", k)):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {v!r}")


def sequential(depth: int, k: int) -> list[int]:
    """Each template repeated ~L/K times in order: layer l -> floor(l K / L)."""
    _check(depth, k)
    return [l * k // depth for l in range(depth)]


def cyclic(depth: int, k: int) -> list[int]:
    """Templates in turn: layer l -> l mod K."""
    _check(depth, k)
    return [l % k for l in range(depth)]


def diag(depth: int, k: int) -> list[int]:
    """The (xi_l)_k = delta_{l,k} signature of Table 8 ("diag"), wrapped as l mod K when K < L."""
    return cyclic(depth, k)


def random_signature(depth: int, k: int, seed: int = 0) -> list[int]:
    """A random permutation of the sequential signature (paper: "randomly shuffling" it).

    Shuffles that reproduce the sequential or cyclic signature are redrawn when another exists.

    >>> random_signature(4, 2, seed=0) not in (sequential(4, 2), cyclic(4, 2))
    True
    """
    sig = sequential(depth, k)
    avoid = (sig, cyclic(depth, k))
    g = torch.Generator().manual_seed(int(seed))
    out = sig
    for _ in range(100):
        out = [sig[i] for i in torch.randperm(depth, generator=g).tolist()]
        if out not in avoid:
            break
    return out


SIGNATURES = {"sequential": sequential, "cyclic": cyclic, "diag": diag, "random": random_signature}


def make_signature(sig: str | Sequence[int], depth: int, k: int, seed: int = 0) -> list[int]:
    """A named signature (sequential / cyclic / diag / random) or a validated user-given one."""
    if isinstance(sig, str):
        if sig not in SIGNATURES:
            raise ConfigError(f"unknown signature {sig!r}; choose one of: {', '.join(SIGNATURES)} or give a list")
        return random_signature(depth, k, seed) if sig == "random" else SIGNATURES[sig](depth, k)
    out = [int(s) for s in sig]
    if len(out) != depth:
        raise ConfigError(f"signature has {len(out)} entries but the network has {depth} layers; "
                          f"give one template index per layer")
    bad = [s for s in out if not 0 <= s < k]
    if bad:
        raise ConfigError(f"signature uses template {bad[0]} but there are {k} templates (0..{k - 1}); "
                          f"use indices in range")
    return out


def one_hot_logits(sig: Sequence[int], k: int) -> Tensor:
    """Hard logits ``(L, K)``: 0 at the chosen template, -1e4 elsewhere -> exactly one-hot softmax."""
    out = torch.full((len(sig), k), HARD_LOGIT)
    out[torch.arange(len(sig)), torch.as_tensor(list(sig), dtype=torch.long)] = 0.0
    return out


def init_logits(depth: int, k: int, kind: str | Sequence[int] = "random", *, std: float = 1.0,
                confidence: float = 0.9, seed: int = 0) -> Tensor:
    """Initial learnable logits ``(L, K)``.

    ``"random"``: N(0, std); ``"uniform"``: zeros (every layer the templates' mean); a signature
    name or list (e.g. ``"diag"``): soft one-hot with softmax probability ``confidence`` on the chosen
    template (the paper's (xi_l)_k ~ delta_{l,k}).

    >>> init_logits(2, 2, "diag", confidence=0.75).softmax(-1)
    tensor([[0.7500, 0.2500],
            [0.2500, 0.7500]])
    """
    _check(depth, k)
    if isinstance(kind, str) and kind == "random":
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(depth, k, generator=g) * std
    if isinstance(kind, str) and kind == "uniform":
        return torch.zeros(depth, k)
    sig = make_signature(kind, depth, k, seed)
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    out = torch.zeros(depth, k)
    if k > 1:
        out[torch.arange(depth), torch.tensor(sig)] = math.log(confidence * (k - 1) / (1.0 - confidence))
    return out


def extract_signature(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Learned signature of mixture logits ``(..., L, K)``: ``(argmax (..., L), confidence (..., L))``.

    The confidence of a layer is its largest mixture weight max_k softmax(xi_l)_k.
    """
    p = logits.detach().float().softmax(-1)  # (..., L, K)
    conf, idx = p.max(-1)
    return idx, conf


def set_signature(model, task: str, sig: str | Sequence[int], frozen: bool = True, seed: int = 0) -> list[int]:
    """Give ``task`` of a MixtureNet a fixed signature: hard one-hot logits, frozen by default."""
    p = model.mixture[model._check_task(task)]
    out = make_signature(sig, model.depth, model.num_templates, seed)
    with torch.no_grad():
        p.copy_(one_hot_logits(out, model.num_templates))
    p.requires_grad_(not frozen)
    return out


def freeze(model, task: str | None = None) -> list[int]:
    """Snap ``task``'s learned mixture to its argmax signature (exactly one-hot) and freeze it.

    >>> from tessera.mixture import MixtureNet
    >>> net = MixtureNet(torch.nn.Linear(3, 3), num_templates=2, depth=3, tasks=["t"])
    >>> sig = freeze(net)
    >>> bool((net.coefficients().max(-1).values == 1.0).all()), net.mixture["t"].requires_grad
    (True, False)
    """
    name = task or model.task
    idx, _ = extract_signature(model.mixture[model._check_task(name)])
    return set_signature(model, name, idx.tolist(), frozen=True)
