"""Direct batched forwards for the architectures where ``vmap``'s per-call overhead dominates.

A :class:`~tessera.hyper.vectorize.TaskGroup` of ``nn.Linear`` or ``nn.Sequential`` of Linear layers and
elementwise activations runs as ``bmm``/``baddbmm`` on the stacked weights directly (the per-task
regressors and MLP heads of many-task benchmarks); every other architecture goes through ``vmap``.
The test of the group against the per-task path covers both routes.

Shared inputs (``input_index``): when many members read the same input rows (seeds or universes of
one data set, an ensemble), the first Linear layer runs as ONE product per input row with the weights
of all its readers side by side, ``(D, B, in) @ (D, in, C*out)``, instead of T products of
``(B, in) @ (in, out)`` on T copies of the data.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..core.cache import TensorCache
from ..errors import ShapeError

__all__ = ["direct_plan", "run_direct", "shared_plan", "check_input_index", "ELEMENTWISE"]

ELEMENTWISE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.Identity,
                                            nn.LeakyReLU, nn.ELU, nn.Softplus)
"""Modules applied to ``(T, B, features)`` as they are (no per-task parameters, no randomness)."""

_plans = TensorCache(8)   # per input_index: its reader plan, and that it was checked


def direct_plan(arch: nn.Module) -> list[nn.Module] | None:
    """The layers of ``arch`` when it runs directly (Linear / elementwise only), else None."""
    mods = list(arch) if type(arch) is nn.Sequential else [arch]
    ok = all(type(m) is nn.Linear or type(m) in ELEMENTWISE for m in mods)
    return mods if ok and any(type(m) is nn.Linear for m in mods) else None


def check_input_index(index: Tensor, members: int, rows: int) -> None:
    """``index`` must be ``(members,)`` integer row ids in ``[0, rows)`` (checked once per index tensor)."""
    if not torch.is_tensor(index) or index.dtype not in (torch.int64, torch.int32) or index.shape != (members,):
        got = f"{str(index.dtype).replace('torch.', '')} {tuple(index.shape)}" if torch.is_tensor(index) else \
            type(index).__name__
        raise ShapeError(f"input_index must be an int64 tensor of shape ({members},) (one input row per member), "
                         f"got {got}")

    def check() -> bool:
        lo, hi = (int(v) for v in torch.aminmax(index))
        if lo < 0 or hi >= rows:
            raise ShapeError(f"input_index holds row {lo if lo < 0 else hi}, the inputs have rows 0..{rows - 1}; "
                             "pass inputs with one row per distinct input (dim 0)")
        return True
    _plans.get(index, ("checked", rows), check)


def shared_plan(index: Tensor, rows: int) -> tuple[Tensor, Tensor] | None:
    """``(order, inverse)``: members sorted by the row they read (stable) and back, when each of the ``rows``
    input rows is read by the same number of members; None otherwise. Cached for the last few index tensors."""
    def plan() -> tuple[Tensor, Tensor] | None:
        counts = torch.bincount(index, minlength=rows)
        if not (bool((counts == counts[0]).all()) and int(counts[0]) > 0):
            return None
        order = torch.argsort(index, stable=True)
        return order, torch.argsort(order)
    return _plans.get(index, ("plan", rows), plan)


def _shared_linear(x: Tensor, w: Tensor, b: Tensor | None, plan: tuple[Tensor, Tensor]) -> Tensor:
    """``x (D, B, in)`` read by the members in ``plan``'s order; ``w (T, out, in)``, ``b (T, out)`` -> ``(T, B, out)``."""
    (order, inverse), D, T, out = plan, x.shape[0], w.shape[0], w.shape[1]
    C = T // D
    ws = w.index_select(0, order).reshape(D, C * out, w.shape[2])                  # (D, C*out, in)
    h = torch.bmm(x, ws.transpose(1, 2))                                           # (D, B, C*out)
    if b is not None:
        h = h + b.index_select(0, order).reshape(D, 1, C * out)
    h = h.view(D, x.shape[1], C, out).transpose(1, 2).reshape(T, x.shape[1], out)  # (T, B, out), sorted
    return h.index_select(0, inverse)                                              # members' order


def run_direct(mods: list[nn.Module], value: Callable[[nn.Module, str], Tensor | None], x: Tensor,
               members: int | None = None, input_index: Tensor | None = None) -> Tensor:
    """``x (T, B, in) -> (T, B, out)`` with ``value(module, attr)`` the stacked ``(T, ...)`` tensor (or the
    module's own, shared by all members). With ``input_index (T,)``, ``x`` is ``(D, B, in)`` and member t
    reads row ``input_index[t]``."""
    T = x.shape[0] if members is None else members
    shared = input_index is not None
    h = x
    for m in mods:
        if type(m) is nn.Linear:
            w, b = value(m, "weight"), value(m, "bias")                      # (T, out, in), (T, out) | None
            w = w if w.dim() == 3 else w.expand(T, *w.shape)
            b = b if b is None or b.dim() == 2 else b.expand(T, *b.shape)
            if shared:                                                       # the first Linear
                shared, plan = False, shared_plan(input_index, h.shape[0])
                if plan is not None:
                    h = _shared_linear(h, w, b, plan)                        # (T, B, out)
                    continue
                h = h.index_select(0, input_index)                           # uneven readers: each its row
            if b is None:
                h = torch.bmm(h, w.transpose(1, 2))                          # (T, B, in) @ (T, in, out)
            else:
                h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))       # (T, B, out)
        else:
            h = m(h)                                                         # elementwise: shared rows too
    return h
