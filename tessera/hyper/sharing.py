"""Ways to share parameters across (architecture, task) pairs, all on one reparameterization (Table 6).

Every method cuts the models' weights into the same m x n blocks (:func:`~tessera.hyper.reparameterize`)
and differs only in how a location gets its block; each returns a :class:`~tessera.hyper.MuirModels`
that trains on the engine like MUiR (``Trainer(..., param_groups=shared.param_groups(lr),
callbacks=[MuirSearch(shared)])``; without challengers the search callback only keeps the alignment):

=====================  ========================================================================================
``muir``               MUiR: one hypermodule per location at first (disjoint), contexts, the (1+lambda)-EA
``muir-hierarchical``  MUiR started from the hierarchical alignment below instead of the disjoint one
``classical``          classical deep MTL (hard sharing): the i-th block location of every model uses the
                       i-th block, shared exactly (c = 0), no search
``adapters``           parallel adapters (Rebuffi et al.): ``classical`` + a learned diagonal per location
                       added to its shared block (paper 003, S.4)
=====================  ========================================================================================

The *hierarchical alignment* (paper 003 §4.2.3) is the topological order of each model's block locations
(module order, then gate, kernel position, input block, output block): location i of every model uses
hypermodule i. Single-task learning is the plain model on the engine.

A new method is one registration: ``@register_sharing("name", help=...)`` on a function
``fn(models, config, **reparameterize_kwargs) -> MuirModels``.

>>> import torch
>>> from torch import nn
>>> _ = torch.manual_seed(0)
>>> nets = [nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 1)) for _ in range(2)]
>>> hard = share(nets, "classical", block=(4, 4), verbose=False)      # 2 x 8 locations, location i -> block i
>>> hard.alignment().tolist()
[0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7]
>>> from tessera.hyper import export
>>> w = export(hard)                                     # the generated weights are shared exactly
>>> torch.equal(w[0][1].weight, w[1][1].weight) and torch.equal(w[0][2].weight, w[1][2].weight)
True
>>> sorted(SHARING.names())
['adapters', 'classical', 'muir', 'muir-hierarchical']
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ..registry import Registry
from .api import MuirModels, reparameterize
from .config import MuirConfig

__all__ = ["share", "SHARING", "register_sharing", "hierarchical_alignment", "add_adapters"]

Builder = Callable[..., MuirModels]
"""``fn(models, config, *, target_modules=None, init="he", groups=None) -> MuirModels``."""
SHARING: Registry[Builder] = Registry("sharing method")


def register_sharing(name: str, *, help: str = "") -> Callable[[Builder], Builder]:
    """Register ``fn(models, config, **kw) -> MuirModels`` as sharing method ``name`` (for :func:`share`);
    ``kw`` are :func:`~tessera.hyper.reparameterize`'s ``target_modules``, ``init`` and ``groups``."""
    return SHARING.register(name, help=help)


def hierarchical_alignment(muir: MuirModels) -> Tensor:
    """``(L,)``: location i (in its model's topological order) of every model -> hypermodule i."""
    models = muir.location_table()[:, 0]                                           # (L,) model of location
    counts = torch.bincount(models)
    start = torch.cumsum(counts, 0) - counts
    return (torch.arange(models.numel()) - start[models]).to(muir.alignment().device)


def add_adapters(muir: MuirModels) -> MuirModels:
    """Add a learned per-location diagonal to every generated block (parallel adapters); returns ``muir``
    (its tasks leave their vectorized groups)."""
    muir.vectorize(False)
    for g in muir.generators:
        g.add_adapter()
    return muir


def share(models: nn.Module | Sequence[nn.Module], method: str = "muir", *, config: MuirConfig | None = None,
          target_modules: Any = None, exclude_modules: Any = None, init: str = "he",
          groups: Sequence[int] | None = None, verbose: bool = True, **overrides: Any) -> MuirModels:
    """Reparameterize ``models`` (modified in place) to share blocks by ``method`` (see the module doc).

    ``config`` / ``overrides`` (``block``, ``context``, ``lam``, ...) are :class:`MuirConfig` fields (the
    methods without a search set ``lam = 0`` and ``context = 0`` themselves); ``target_modules``,
    ``exclude_modules``, ``init``, ``groups`` and ``verbose`` are passed to :func:`~tessera.hyper.reparameterize`.
    """
    cfg = dataclasses.replace(config or MuirConfig(), **overrides).validate()
    models = [models] if isinstance(models, nn.Module) else list(models)
    return SHARING.get(method)(models, cfg, target_modules=target_modules, exclude_modules=exclude_modules,
                               init=init, groups=groups, verbose=verbose)


@register_sharing("muir", help="MUiR: disjoint start, contexts, (1+lambda)-EA alignment search")
def _muir(models: Sequence[nn.Module], cfg: MuirConfig, **kw: Any) -> MuirModels:
    return reparameterize(models, config=cfg, **kw)


@register_sharing("muir-hierarchical", help="MUiR started from the hierarchical alignment")
def _muir_hierarchical(models: Sequence[nn.Module], cfg: MuirConfig, **kw: Any) -> MuirModels:
    muir = reparameterize(models, config=cfg, **kw)
    muir.fix_alignment(hierarchical_alignment(muir))
    return muir


@register_sharing("classical", help="classical deep MTL: hierarchically aligned blocks shared exactly, no search")
def _classical(models: Sequence[nn.Module], cfg: MuirConfig, **kw: Any) -> MuirModels:
    muir = reparameterize(models, config=dataclasses.replace(cfg, context=0, lam=0), **kw)
    muir.fix_alignment(hierarchical_alignment(muir))
    return muir


@register_sharing("adapters", help="parallel adapters: classical sharing + a learned diagonal per location")
def _adapters(models: Sequence[nn.Module], cfg: MuirConfig, **kw: Any) -> MuirModels:
    return add_adapters(_classical(models, cfg, **kw))

