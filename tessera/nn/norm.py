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

__all__ = ["bn_layers", "reestimate_bn", "VmappedBatchNorm", "why_not_vmappable"]

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


class VmappedBatchNorm:
    """BatchNorm layers run under ``torch.func.vmap`` for T stacked models, each with its OWN running
    statistics -- which BN cannot update in place under ``vmap``.

    Inside the vmapped function, :meth:`bind` gives every layer model t's statistics (eval mode) or none
    (training mode: batch statistics), and a pre-hook records each training layer's input mean and
    unbiased variance; the function returns :meth:`moments`. Afterwards :meth:`update` applies BN's own
    update ``(1 - momentum) * running + momentum * batch`` to each model's statistics, in call order,
    so the result equals running the T models one after another. Layers with ``momentum=None`` are
    refused (:func:`why_not_vmappable`). Used by MixtureNet task batches and MUiR task groups.
    """

    def __init__(self, layers: Sequence[nn.Module]):
        self.layers = list(dict.fromkeys(layers))
        self.index = {id(m): i for i, m in enumerate(self.layers)}
        self.calls: list[int] = []                   # layer index of each recorded training call
        self._moments: list[torch.Tensor] = []
        self._hooks: list[Any] = []

    def __enter__(self) -> "VmappedBatchNorm":
        self.calls, self._moments = [], []
        self._hooks = [m.register_forward_pre_hook(self._record) for m in self.layers if m.training]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _record(self, m: nn.Module, args: Any) -> None:
        x = args[0].detach()
        dims = [d for d in range(x.dim()) if d != 1]                 # every dim but the channels
        self.calls.append(self.index[id(m)])
        self._moments += [x.mean(dims), x.var(dims, unbiased=True)]  # (C,) each, per model under vmap

    def bind(self, stats: Sequence[tuple[torch.Tensor, torch.Tensor]], setter: Callable[..., None]) -> None:
        """Give layer i the statistics ``stats[i] = (mean, var)`` of this model (eval) or none (training);
        ``setter(module, name, value)`` binds a plain attribute. Call inside the vmapped function."""
        self.calls.clear()
        self._moments.clear()
        for m, (mean, var) in zip(self.layers, stats):
            setter(m, "running_mean", None if m.training else mean)
            setter(m, "running_var", None if m.training else var)

    def moments(self) -> list[torch.Tensor]:
        """The recorded batch moments (return them from the vmapped function: ``(T, C)`` each outside)."""
        return list(self._moments)

    @torch.no_grad()
    def update(self, stats: Sequence[tuple[torch.Tensor, torch.Tensor]], moments: Sequence[torch.Tensor]) -> None:
        """Update ``stats[i] = (mean (T, C), var (T, C))`` (written in place) from the vmapped call's moments."""
        for j, i in enumerate(self.calls):
            mom = float(self.layers[i].momentum)  # type: ignore[arg-type]
            for target, value in zip(stats[i], moments[2 * j:2 * j + 2]):
                target.mul_(1 - mom).add_(value.to(target.dtype), alpha=mom)


def why_not_vmappable(layers: Iterable[nn.Module]) -> str | None:
    """Why these layers' running statistics cannot be kept per model under ``vmap`` (None: they can)."""
    for m in layers:
        if not isinstance(m, BatchNorm):
            return f"{type(m).__name__} keeps running statistics and is not a BatchNorm"
        if m.momentum is None:
            return "a BatchNorm layer has momentum=None (a cumulative average)"
    return None
