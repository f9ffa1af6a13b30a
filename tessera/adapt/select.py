"""Which parameters an adaptation method may move, how many they are, and proof that nothing else moved.

:func:`step_only` is the one optimizer step every algorithm here uses: gradients are taken with
``torch.autograd.grad`` for the optimizer's own parameters only, so no other parameter ever receives
a gradient (nor a stale one from a previous loss). :func:`snapshot` / :func:`changed` compare a
module's parameters bit for bit before and after.

>>> lin = torch.nn.Linear(3, 2)
>>> opt = torch.optim.SGD([lin.bias], lr=0.1)
>>> snap = snapshot(lin)
>>> _ = step_only(opt, lin(torch.ones(4, 3)).sum())
>>> changed(lin, snap), count_params([lin.bias]), lin.weight.grad is None
(['bias'], 2, True)
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import Tensor, nn

from ..errors import ConfigError, TrainingError

__all__ = ["step_only", "optimizer_params", "count_params", "snapshot", "changed", "named_subset"]


def optimizer_params(opt: torch.optim.Optimizer) -> list[Tensor]:
    """Every parameter an optimizer holds, in order."""
    return [p for g in opt.param_groups for p in g["params"]]


def step_only(opt: torch.optim.Optimizer, loss: Tensor, *, retain_graph: bool = False) -> float:
    """Backpropagate ``loss`` into the optimizer's parameters only, then step; returns ``loss.item()``.

    Parameters that ``loss`` does not depend on keep ``grad = None`` and are skipped by the step.
    A non-finite loss raises :class:`TrainingError` before anything changes.
    """
    value = float(loss.detach())
    if not torch.isfinite(loss.detach()):
        raise TrainingError(f"loss is {value}; lower the learning rate or check the inputs for NaN/inf")
    params = optimizer_params(opt)
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()
    for p in params:
        p.grad = None
    return value


def count_params(params: Iterable[Tensor] | Mapping[str, Tensor] | nn.Module) -> int:
    """Number of scalars in a parameter list / dict / module (the "trained parameters" of a row)."""
    if isinstance(params, nn.Module):
        params = params.parameters()
    elif isinstance(params, Mapping):
        params = params.values()
    return sum(p.numel() for p in params)


def snapshot(module: nn.Module, buffers: bool = False) -> dict[str, Tensor]:
    """Detached copies of every parameter (and with ``buffers``, every buffer) by name."""
    out = {k: v.detach().clone() for k, v in module.named_parameters()}
    if buffers:
        out.update({k: v.detach().clone() for k, v in module.named_buffers()})
    return out


def changed(module: nn.Module, snap: Mapping[str, Tensor]) -> list[str]:
    """Names in ``snap`` whose current value is not bit-identical (plus names added or removed)."""
    now = dict(module.named_parameters())
    now.update(dict(module.named_buffers()))
    out = [k for k, v in snap.items() if k not in now or not torch.equal(now[k].detach(), v)]
    return sorted(out)


def named_subset(module: nn.Module, prefixes: Iterable[str]) -> dict[str, nn.Parameter]:
    """Parameters whose name starts with one of ``prefixes`` (e.g. ``"net.mixture.usps"``)."""
    prefixes = tuple(prefixes)
    out = {k: p for k, p in module.named_parameters() if k.startswith(prefixes)}
    if not out:
        raise ConfigError(f"no parameter name starts with {list(prefixes)}; names look like "
                          f"{next(iter(dict(module.named_parameters())), '?')!r}")
    return out
