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

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ShapeError

__all__ = ["mix"]


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
    if bank.dim() != 2 or coeff.dim() != 2:
        raise ShapeError(f"mix: bank must be (R, P) and coeff (L, J); got {tuple(bank.shape)} and {tuple(coeff.shape)}")
    if index is None:
        if coeff.shape[1] != bank.shape[0]:
            raise ShapeError(f"mix: dense coeff has {coeff.shape[1]} columns but the bank has {bank.shape[0]} rows")
        return coeff.to(bank.dtype) @ bank  # (L, R) @ (R, P) -> (L, P)
    if index.shape != coeff.shape:
        raise ShapeError(f"mix: index {tuple(index.shape)} and coeff {tuple(coeff.shape)} must have the same shape")
    # sum_j coeff[l, j] * bank[index[l, j]] without materializing (L, J, P)
    return F.embedding_bag(index, bank, per_sample_weights=coeff.to(bank.dtype), mode="sum")  # (L, P)
