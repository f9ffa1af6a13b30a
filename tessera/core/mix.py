"""The one weight-generation operation behind template mixtures and MUiR hypermodules.

Both papers generate weights *linearly from a shared bank*:

* a template mixture (paper 001/002) makes layer l's flattened block parameters as
  ``sum_k softmax(xi_l)_k * theta_k`` -> ``coeff (L, K) @ bank (K, P)``;
* a MUiR hypermodule (paper 003, Eq. 5/8) makes block l as ``sum_i w_li * (H_{psi_i(l)} x_1 z_l)``,
  i.e. a sparse combination of the bank's rows ``H[k, c]`` (a hypermodule's c fibres) with
  coefficients ``w_li * z_lc``.

:func:`mix` computes ``out[l] = sum_j coeff[l, j] * bank[index[l, j]]`` for all outputs in ONE
batched op: a dense matmul when every output uses every row (templates), ``embedding_bag`` with
per-sample weights when each output uses a few rows (hypermodules; nothing is materialized per
location, so 10^4+ locations and hypermodules stay cheap).

Backward of the sparse form. ``embedding_bag``'s own backward sorts the index at every call; for
narrow rows (``P <= SMALL_ROWS``: MUiR's 4x4 .. 20x1 blocks) :class:`_SparseMix` instead computes
the bank's gradient as one more ``embedding_bag`` over the *transposed* index (which outputs use
each row, with which coefficient), sorted once per index tensor and cached (the index changes once
per search generation), and the coefficients' gradient as one batched dot product. Measured side by
side on this CPU (``tessera bench muir-many-tasks``, the "mix forward + backward" rows; numbers in
the README): faster at 1,800 x 5 x 20 and 10^5 x 5 x 16; about 2x slower than ``embedding_bag``'s
backward at 4,096 x 5 x 256 in a trial, so wider rows keep that backward. Under ``torch.compile``
and ``torch.func`` transforms (``grad``, ``vmap``, ...) the plain op is used.
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ShapeError
from .cache import TensorCache

__all__ = ["mix", "SMALL_ROWS"]

SMALL_ROWS = 32
"""Rows up to this width take :class:`_SparseMix`'s backward (measured faster; see the module doc)."""

_checked: list[tuple[weakref.ref, int, int]] = []   # (the last index checked, its version, rows)
_transposed = TensorCache(8)   # transposed indexes (one per generator or group that alternates in a step)


def _check_index(index: Tensor, rows: int) -> None:
    """Row ids must be integers in [0, rows): one min/max, skipped when the same unchanged index tensor
    (a precomputed buffer, the usual case) was checked last time. The cache holds the tensor itself (weakly),
    not its address: a new tensor in the memory of a freed one is checked again."""
    if index.dtype not in (torch.int64, torch.int32):
        raise ShapeError(f"mix: index must be int64 (or int32) row ids, got {str(index.dtype).replace('torch.', '')}")
    if not index.numel():
        return
    if _checked and _checked[0][0]() is index and _checked[0][1:] == (index._version, rows):
        return
    lo, hi = (int(v) for v in torch.aminmax(index))
    if lo < 0 or hi >= rows:
        raise ShapeError(f"mix: index holds row {lo if lo < 0 else hi}, the bank has rows 0..{rows - 1}; "
                         "index rows that exist")
    _checked[:] = [(weakref.ref(index), index._version, rows)]


def _transpose(index: Tensor, rows: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(order, users, offsets)`` of ``index (L, J)``: entry ``order[i]`` of the flat index is the i-th use
    sorted by row, ``users = order // J`` the output using it, ``offsets (rows,)`` where each row's uses start.
    Cached for the last few index tensors (weakly held; recomputed when one is changed in place)."""
    def make() -> tuple[Tensor, Tensor, Tensor]:
        flat = index.reshape(-1)
        order = torch.argsort(flat, stable=True)                                       # (L*J,)
        counts = torch.bincount(flat, minlength=rows)                                  # (rows,)
        offsets = torch.cumsum(counts, 0) - counts                                     # (rows,) exclusive
        return order, torch.div(order, index.shape[1], rounding_mode="floor"), offsets
    return _transposed.get(index, rows, make)


class _SparseMix(torch.autograd.Function):
    """``embedding_bag(index, bank, coeff)`` with the backward of the module doc (narrow rows)."""

    @staticmethod
    def forward(ctx, bank: Tensor, coeff: Tensor, index: Tensor, order: Tensor, users: Tensor,  # type: ignore[override]
                offsets: Tensor) -> Tensor:
        # the (ctx, ...) form: apply() of the setup_context form binds arguments with inspect (0.1 ms a call)
        ctx.save_for_backward(bank, coeff, index, order, users, offsets)
        return F.embedding_bag(index, bank, per_sample_weights=coeff, mode="sum")       # (L, P)

    @staticmethod
    def backward(ctx, grad: Tensor):                                                   # type: ignore[no-untyped-def]
        bank, coeff, index, order, users, offsets = ctx.saved_tensors
        g_bank = g_coeff = None
        if ctx.needs_input_grad[0]:        # row r gets sum over its uses (l, j) of coeff[l, j] * grad[l]
            g_bank = F.embedding_bag(users, grad, offsets, per_sample_weights=coeff.reshape(-1)[order],
                                     mode="sum")                                        # (R, P)
        if ctx.needs_input_grad[1]:        # coeff[l, j] gets <bank[index[l, j]], grad[l]>
            used = bank.index_select(0, index.reshape(-1)).view(*index.shape, -1)      # (L, J, P)
            g_coeff = (used * grad[:, None, :]).sum(2)                                 # (L, J)
        return g_bank, g_coeff, None, None, None, None


def mix(bank: Tensor, coeff: Tensor, index: Tensor | None = None) -> Tensor:
    """Linear combinations of bank rows: ``bank x_1 context`` for many outputs at once.

    Args:
        bank: ``(R, P)`` rows to combine (templates, or hypermodule fibres ``(K*c, m*n)``).
        coeff: ``(L, J)`` coefficient of each used row for each output.
        index: ``(L, J)`` long row ids, or ``None`` for dense use (``J == R``, row j is bank[j]).

    Returns:
        ``(L, P)`` generated rows.

    >>> bank = torch.eye(3)
    >>> mix(bank, torch.tensor([[0.5, 0.5, 0.0]]))
    tensor([[0.5000, 0.5000, 0.0000]])
    >>> mix(bank, torch.tensor([[2.0]]), index=torch.tensor([[2]]))
    tensor([[0., 0., 2.]])
    """
    if not (torch.is_tensor(bank) and torch.is_tensor(coeff) and (index is None or torch.is_tensor(index))):
        raise ShapeError(f"mix: bank, coeff (and index) must be tensors; got {type(bank).__name__}, "
                         f"{type(coeff).__name__}" + ("" if index is None else f", {type(index).__name__}"))
    if bank.dim() != 2 or coeff.dim() != 2:
        raise ShapeError(f"mix: bank must be (R, P) and coeff (L, J); got {tuple(bank.shape)} and {tuple(coeff.shape)}")
    if not bank.is_floating_point():
        raise ShapeError(f"mix: bank must be floating point, got {str(bank.dtype).replace('torch.', '')}; "
                         "coefficients would be truncated to integers")
    if index is None:
        if coeff.shape[1] != bank.shape[0]:
            raise ShapeError(f"mix: dense coeff has {coeff.shape[1]} columns but the bank has {bank.shape[0]} rows")
        return coeff.to(bank.dtype) @ bank  # (L, R) @ (R, P) -> (L, P)
    if index.shape != coeff.shape:
        raise ShapeError(f"mix: index {tuple(index.shape)} and coeff {tuple(coeff.shape)} must have the same shape")
    _check_index(index, bank.shape[0])
    if index.shape[1] == 0:                                   # no rows used: zeros (embedding_bag refuses J = 0)
        return coeff.to(bank.dtype) @ bank.new_zeros(0, bank.shape[1])  # (L, 0) @ (0, P) -> (L, P)
    coeff = coeff.to(bank.dtype)
    if (bank.shape[1] <= SMALL_ROWS and torch.is_grad_enabled() and (bank.requires_grad or coeff.requires_grad)
            and not torch.compiler.is_compiling() and torch._C._functorch.peek_interpreter_stack() is None):
        return _SparseMix.apply(bank, coeff, index, *_transpose(index, bank.shape[0]))  # (L, P)
    # sum_j coeff[l, j] * bank[index[l, j]] without materializing (L, J, P)
    return F.embedding_bag(index, bank, per_sample_weights=coeff, mode="sum")  # (L, P)
