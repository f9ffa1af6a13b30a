"""Generic vs specific hypermodules (paper 003, §4.2.2, Table 4): do shared modules learn tighter weights?

A hypermodule is *generic* when more than ``c`` locations use it (the paper's rule; ``min_models=2``
instead calls it generic when locations of at least two models use it), *specific* otherwise; a
location (its context and its generated block, the "linear map") is generic when its hypermodule is.
:func:`tensor_statistics` summarizes every hypermodule ``H_k (c, m*n)``, context ``z_l (c,)`` and block
``B_l (m*n,)`` by four statistics of its values (standard deviation, mean, L2 norm, max), and
:func:`compare_generic_specific` compares the generic and specific sets of each group with a two-tailed
Mann-Whitney U test (``scipy.stats.mannwhitneyu``), as Table 4 does.

>>> import torch
>>> from torch import nn
>>> from tessera.hyper import reparameterize
>>> _ = torch.manual_seed(0)
>>> muir = reparameterize([nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 1)) for _ in range(2)],
...                       block=(4, 4), context=1, verbose=False)
>>> stats = tensor_statistics(muir)
>>> {k: tuple(v.shape) for k, v in stats.items()}           # K = L = 8: one row per module / location
{'modules': (8, 4), 'contexts': (8, 4), 'blocks': (8, 4)}
>>> psi0 = torch.tensor([0, 0, 0, 1, 2, 3, 4, 5])            # module 0 used 3 times > c = 1: generic
>>> res = compare_generic_specific(stats, psi0, muir.location_table()[:, 0], num_modules=8, context=1)
>>> res["modules"]["n_generic"], res["modules"]["n_specific"], res["blocks"]["n_generic"]
(1, 5, 3)
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .accounting import usage

__all__ = ["STATISTICS", "tensor_statistics", "generic_modules", "compare_generic_specific"]

STATISTICS = ("std", "mean", "norm", "max")
"""The four statistics of Table 4 (Stdev, Mean, Norm, Max), in column order."""


def _stats(rows: Tensor) -> Tensor:
    """``(N, P)`` -> ``(N, 4)``: std (unbiased; 0 for P = 1), mean, L2 norm, max of each row."""
    rows = rows.detach().double().cpu()
    std = rows.std(1) if rows.shape[1] > 1 else torch.zeros(rows.shape[0], dtype=rows.dtype)
    return torch.stack([std, rows.mean(1), rows.norm(dim=1), rows.amax(1)], 1)


@torch.no_grad()
def tensor_statistics(muir: Any) -> dict[str, Tensor]:
    """``{"modules": (K, 4), "contexts": (L, 4), "blocks": (L, 4)}`` float64 statistics (:data:`STATISTICS`)
    of every hypermodule, every location's context and every generated block (current state)."""
    blocks = torch.cat([g.blocks() for g in muir.generators])                     # (L, m*n)
    z = torch.cat([g.z for g in muir.generators])                                 # (L, c) (c = 0: ones)
    return {"modules": _stats(muir.bank.H.reshape(muir.bank.H.shape[0], -1)), "contexts": _stats(z),
            "blocks": _stats(blocks)}


def generic_modules(psi0: Tensor, model_of_location: Tensor, num_modules: int, context: int,
                    min_models: int | None = None) -> tuple[Tensor, Tensor]:
    """``(active (K,), generic (K,))`` bool masks: generic = used by more than ``context`` locations, or,
    with ``min_models``, by locations of at least that many different models."""
    psi0 = psi0.reshape(-1).cpu()
    u = usage(psi0, num_modules)
    if min_models is None:
        return u > 0, u > context
    T = int(model_of_location.max()) + 1
    used = torch.zeros(num_modules, T, dtype=torch.bool)
    used[psi0, model_of_location.reshape(-1).cpu()] = True                         # (K, T)
    return u > 0, used.sum(1) >= min_models


def compare_generic_specific(stats: dict[str, Tensor], psi0: Tensor, model_of_location: Tensor, *,
                             num_modules: int, context: int, min_models: int | None = None) -> dict[str, Any]:
    """Per group (modules over active hypermodules; contexts and blocks over locations): the sizes of the
    generic and specific sets and, per statistic, the two-tailed Mann-Whitney p-value and both medians
    (``p`` is None when a set is empty)."""
    from scipy.stats import mannwhitneyu

    active, generic = generic_modules(psi0, model_of_location, num_modules, context, min_models)
    loc_generic = generic[psi0.reshape(-1).cpu()]
    masks = {"modules": (generic & active, ~generic & active), "contexts": (loc_generic, ~loc_generic),
             "blocks": (loc_generic, ~loc_generic)}
    out: dict[str, Any] = {}
    for group, (g, s) in masks.items():
        vals = torch.as_tensor(stats[group], dtype=torch.float64)
        row: dict[str, Any] = {"n_generic": int(g.sum()), "n_specific": int(s.sum())}
        for j, name in enumerate(STATISTICS):
            a, b = vals[g, j], vals[s, j]
            ok = len(a) > 0 and len(b) > 0
            row[name] = {"p": float(mannwhitneyu(a.numpy(), b.numpy(), alternative="two-sided").pvalue) if ok else None,
                         "generic_median": float(a.median()) if len(a) else None,
                         "specific_median": float(b.median()) if len(b) else None}
        out[group] = row
    return out
