"""BatchNorm running statistics re-estimated from data: the one implementation every package uses.

``reestimate_bn(model, batches)`` resets the BN layers' running statistics and sets them to the exact
average of the batch statistics over ``batches`` (a cumulative moving average, ``momentum=None``),
with no gradient and no parameter change. Only the BN layers run in training mode during the pass,
so dropout and everything else behave as in evaluation. Used for "precise BN" after short training,
AdaBN-style adaptation of a target domain's statistics, and the "recompute" BN mode of recombined
components.

>>> import torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)).eval()
>>> xs = [torch.randn(8, 3) + 2 for _ in range(4)]
>>> _ = reestimate_bn(m, xs)
>>> ref = torch.stack([m[0](x).mean(0) for x in xs]).mean(0)
>>> torch.allclose(m[1].running_mean, ref.detach(), atol=1e-6), m.training, m[1].momentum
(True, False, 0.1)
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

__all__ = ["bn_layers", "reestimate_bn"]

BatchNorm = nn.modules.batchnorm._BatchNorm


def bn_layers(*modules: nn.Module) -> list[BatchNorm]:
    """All BatchNorm layers inside ``modules`` that track running statistics (each once)."""
    seen: dict[int, BatchNorm] = {}
    for m in modules:
        for sub in m.modules():
            if isinstance(sub, BatchNorm) and sub.track_running_stats:
                seen.setdefault(id(sub), sub)
    return list(seen.values())


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Iterable[Any], *, forward: Callable[[Any], Any] | None = None,
                  layers: Sequence[BatchNorm] | None = None) -> nn.Module:
    """Set the running statistics of ``layers`` (default: every BN in ``model``) to the average over
    ``batches`` of ``forward(batch)`` (default ``model(batch)``); returns ``model`` (changed in place).

    Every module's train/eval mode and every BN momentum are restored afterwards.
    """
    bns = list(layers) if layers is not None else bn_layers(model)
    modes = [(m, m.training) for m in model.modules()]
    momenta = [b.momentum for b in bns]
    fwd = forward if forward is not None else model
    try:
        model.eval()
        for b in bns:
            b.reset_running_stats()      # in place: views into per-task storage stay views
            b.momentum = None            # cumulative average: every batch weighs the same
            b.train()
        for batch in batches:
            fwd(batch)
    finally:
        for b, mo in zip(bns, momenta):
            b.momentum = mo
        for m, was in modes:
            m.training = was
    return model
