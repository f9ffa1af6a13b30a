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
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ShapeError

__all__ = ["mix"]

_checked: list[tuple[weakref.ref, int, int]] = []   # (the last index checked, its version, rows)


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
    # sum_j coeff[l, j] * bank[index[l, j]] without materializing (L, J, P)
    return F.embedding_bag(index, bank, per_sample_weights=coeff.to(bank.dtype), mode="sum")  # (L, P)
