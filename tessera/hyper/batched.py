"""Direct batched forwards for the architectures where ``vmap``'s per-call overhead dominates.

A :class:`~tessera.hyper.vectorize.TaskGroup` of ``nn.Linear`` or ``nn.Sequential`` of Linear layers and
elementwise activations runs as ``bmm``/``baddbmm`` on the stacked weights directly (the per-task
regressors and MLP heads of many-task benchmarks); every other architecture goes through ``vmap``.
The test of the group against the per-task path covers both routes.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["direct_plan", "run_direct", "ELEMENTWISE"]

ELEMENTWISE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.Identity,
                                            nn.LeakyReLU, nn.ELU, nn.Softplus)
"""Modules applied to ``(T, B, features)`` as they are (no per-task parameters, no randomness)."""


def direct_plan(arch: nn.Module) -> list[nn.Module] | None:
    """The layers of ``arch`` when it runs directly (Linear / elementwise only), else None."""
    mods = list(arch) if type(arch) is nn.Sequential else [arch]
    ok = all(type(m) is nn.Linear or type(m) in ELEMENTWISE for m in mods)
    return mods if ok and any(type(m) is nn.Linear for m in mods) else None


def run_direct(mods: list[nn.Module], value: Callable[[nn.Module, str], Tensor | None], x: Tensor) -> Tensor:
    """``x (T, B, in) -> (T, B, out)`` with ``value(module, attr)`` the stacked ``(T, ...)`` tensor (or the
    module's own, shared by all members)."""
    T = x.shape[0]
    h = x
    for m in mods:
        if type(m) is nn.Linear:
            w, b = value(m, "weight"), value(m, "bias")                      # (T, out, in), (T, out) | None
            w = w if w.dim() == 3 else w.expand(T, *w.shape)
            if b is None:
                h = torch.bmm(h, w.transpose(1, 2))                          # (T, B, in) @ (T, in, out)
            else:
                b = b if b.dim() == 2 else b.expand(T, *b.shape)
                h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))       # (T, B, out)
        else:
            h = m(h)
    return h
