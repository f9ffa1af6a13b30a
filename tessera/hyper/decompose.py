"""Universal decomposition of weights into m x n blocks (paper 003, §3.1, Eq. 2).

Every target weight is viewed as a stack of matrices, each mapping ``in`` input units to ``out`` output
units: a Linear weight ``(out, in)`` is one matrix; a Conv1d/Conv2d weight ``(out, in, *k)`` is one matrix
per kernel position; an LSTM/GRU/RNN ``weight_ih_l*`` / ``weight_hh_l*`` is one matrix per gate (4, 3, 1).
Which module weights are seen this way, and how, is the registry in :mod:`.views`.
Each matrix is cut into blocks ``B`` of ``m`` inputs x ``n`` outputs: the block at input-block ``i`` and
output-block ``j`` holds ``B[a, b] = W[j*n + b, i*m + a]``.

**Edges.** §3.1 allows dimensions that ``m`` / ``n`` do not divide: "overflowing parameters from edge
blocks can be discarded". So edge blocks are generated full-size like every other block and the part
that hangs over the edge of the weight is simply never read (``ceil(in/m) * ceil(out/n)`` blocks per
matrix). Every weight element is covered by exactly one block element, so decompose -> reassemble is
exact, and a block's unused elements only cost a little generation work.

Everything is precomputed as one gather index per weight: ``index[w] = location * (m*n) + a*n + b``, so a
model's weights are ``generated.reshape(-1)[index]`` for all locations at once (one ``index_select``).

>>> t = plan_weight(torch.Size([3, 5]), gates=1, block=(2, 2))      # Linear(5 -> 3), 2x2 blocks
>>> t.grid, t.count                                                 # (gates, kernel pos, in-blocks, out-blocks)
((1, 1, 3, 2), 6)
>>> w = torch.randn(3, 5)
>>> torch.equal(reassemble(decompose(w, t.index, t.count, (2, 2)), t.index), w)
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import ShapeError

__all__ = ["WeightPlan", "plan_weight", "decompose", "reassemble", "TABLE_COLUMNS"]

TABLE_COLUMNS = ("model", "target", "gate", "kpos", "in_block", "out_block")
"""Columns of the location table (one row per block location)."""


@dataclass
class WeightPlan:
    """How one weight of shape ``shape`` is cut into ``count`` block locations."""

    shape: torch.Size
    gates: int
    grid: tuple[int, int, int, int]   # (gates, kernel positions, in-blocks, out-blocks)
    count: int
    index: Tensor = field(repr=False)  # (shape) long: flat position in the (count, m*n) local blocks
    table: Tensor = field(repr=False)  # (count, 4) long: gate, kpos, in_block, out_block


def plan_weight(shape: torch.Size, gates: int, block: tuple[int, int], name: str = "weight") -> WeightPlan:
    """Gather index and location table for a weight ``(gates*out, in, *kernel)`` cut into m x n blocks."""
    m, n = block
    if len(shape) < 2:
        raise ShapeError(f"{name}: shape {tuple(shape)} is not a matrix; only weights with >= 2 dims can be decomposed")
    rows, cols = int(shape[0]), int(shape[1])
    if rows % gates:
        raise ShapeError(f"{name}: {rows} rows do not split into {gates} gates")
    out = rows // gates
    if m > cols or n > out:
        raise ShapeError(f"block {m}x{n} does not fit {name} (gate matrices map {cols} inputs to {out} outputs); "
                         f"use m <= {cols} and n <= {out}, or leave it out of target_modules")
    kshape = tuple(int(k) for k in shape[2:])
    P = math.prod(kshape)
    nI, nO = -(-cols // m), -(-out // n)
    o, i, kp = torch.arange(rows), torch.arange(cols), torch.arange(P)
    g, op = o // out, o % out
    # location of element (o, i, kpos): ((gate*P + kpos)*nI + in_block)*nO + out_block
    loc = ((g[:, None, None] * P + kp[None, None, :]) * nI + (i // m)[None, :, None]) * nO + (op // n)[:, None, None]
    elem = (i % m)[None, :, None] * n + (op % n)[:, None, None]          # (rows, cols, 1): a*n + b
    index = (loc * (m * n) + elem).reshape(shape)                         # (rows, cols, P) -> weight shape
    count = gates * P * nI * nO
    r = torch.arange(count)
    table = torch.stack([r // (P * nI * nO), (r // (nI * nO)) % P, (r // nO) % nI, r % nO], dim=1)  # (count, 4)
    return WeightPlan(torch.Size(shape), gates, (gates, P, nI, nO), count, index, table)


def decompose(weight: Tensor, index: Tensor, count: int, block: tuple[int, int]) -> Tensor:
    """Blocks ``(count, m*n)`` of ``weight``; overflow elements of edge blocks are 0."""
    blocks = weight.new_zeros(count * block[0] * block[1])
    blocks[index.reshape(-1)] = weight.reshape(-1)
    return blocks.view(count, block[0] * block[1])


def reassemble(blocks: Tensor, index: Tensor) -> Tensor:
    """The weight whose blocks are ``blocks`` ``(count, m*n)`` (edge overflow dropped)."""
    return blocks.reshape(-1)[index]
