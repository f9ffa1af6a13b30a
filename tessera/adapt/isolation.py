"""Proof that an adaptation moved nothing but the target's own parameters: bit-identical comparisons.

:func:`snapshot` copies a module's parameters (and optionally its buffers); :func:`changed` lists
the names whose values are no longer bit-identical. (Which parameters a routine may move is decided
by its optimizers: the engine backpropagates each loss into its optimizer's parameters only.)

>>> import torch
>>> lin = torch.nn.Linear(3, 2)
>>> snap = snapshot(lin)
>>> with torch.no_grad():
...     lin.bias += 1
>>> changed(lin, snap)
['bias']
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

__all__ = ["snapshot", "changed"]


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
