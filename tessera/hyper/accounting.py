"""Counting what MUiR shares: active hypermodules, parameters (§3.2, Fig. 3a) and who shares with whom.

>>> psi0 = torch.tensor([0, 0, 0, 3])     # 4 locations, 2 active; compact: 3*2 + 1*2*20 + 1*20 = 66
>>> parameter_count(psi0, num_modules=4, context=1, block=(20, 1))     # L*c + K_active*c*m*n
44
>>> parameter_count(psi0, num_modules=4, context=2, block=(20, 1), compact=True)  # H_3 used once < c
66
>>> parameter_count(psi0, num_modules=4, context=0, block=(20, 1))     # c = 0: 2 shared blocks, no z
40
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["usage", "active_modules", "parameter_count", "compact_mask", "sharing_by_subset", "same_partition"]


def usage(psi0: Tensor, num_modules: int) -> Tensor:
    """``(K,)`` locations per hypermodule."""
    return torch.bincount(psi0.reshape(-1).cpu(), minlength=num_modules)


def active_modules(psi0: Tensor, num_modules: int) -> int:
    """Hypermodules used by at least one location."""
    return int((usage(psi0, num_modules) > 0).sum())


def compact_mask(psi0: Tensor, num_modules: int, context: int) -> Tensor:
    """``(L,)`` bool: locations whose hypermodule is used fewer than c times (replaced by plain blocks)."""
    u = usage(psi0, num_modules).to(psi0.device)
    return u[psi0] < context


def parameter_count(psi0: Tensor, num_modules: int, context: int, block: tuple[int, int],
                    compact: bool = False, where: Tensor | None = None) -> int:
    """Trainable parameters of the reparameterized blocks.

    ``compact=False``: L*c + K_active*c*m*n (Eq. 6 with unused hypermodules deleted); c = 0: K_active*m*n.
    ``compact=True``: (L - L_o)*c + K_g*c*m*n + L_o*m*n, where hypermodules used fewer than c times are
    replaced by the L_o blocks they generate (§3.2) and K_g counts the others.
    ``where`` (L,) bool: the share of those locations (e.g. one model's): their contexts and plain blocks,
    and of every hypermodule the fraction of its uses that are theirs (rounded; the shares of a
    partition of the locations add up to the total).

    >>> parameter_count(torch.tensor([0, 0, 1, 1, 1]), 5, 2, (4, 1), compact=True,
    ...                 where=torch.tensor([True, False, True, True, False]))  # 3 contexts + H_0 / 2 + 2 H_1 / 3
    15
    """
    psi0 = psi0.reshape(-1).cpu()
    L, mn = psi0.numel(), block[0] * block[1]
    fibres = max(context, 1)                   # c = 0: a hypermodule is one m x n block, no contexts
    u = usage(psi0, num_modules)               # usage by all locations decides what is compacted
    sel = torch.ones(L, dtype=torch.bool) if where is None else where.reshape(-1).cpu().bool()
    share = torch.bincount(psi0[sel], minlength=num_modules).double() / u.clamp(min=1)   # (K,) fraction of uses
    n_loc = int(sel.sum())
    if not compact:
        return round(n_loc * context + float(share.sum()) * fibres * mn)
    L_o = int((sel & (u < context)[psi0]).sum())                                    # compacted locations
    K_g = float(share[u >= context].sum())
    return round((n_loc - L_o) * context + K_g * fibres * mn + L_o * mn)


def sharing_by_subset(psi0: Tensor, model_of_location: Tensor, num_modules: int) -> dict[tuple[int, ...], int]:
    """Number of active hypermodules used exclusively by each subset of models (Fig. 3a).

    >>> sharing_by_subset(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]), 3)
    {(0, 1): 1, (1,): 2}
    """
    T = int(model_of_location.max()) + 1
    used = torch.zeros(num_modules, T, dtype=torch.bool)
    used[psi0.cpu(), model_of_location.cpu()] = True                                # (K, T)
    code = (used.long() * (2 ** torch.arange(T))).sum(1)                              # bitmask per module
    counts = torch.bincount(code[code > 0], minlength=2 ** T)
    out = {}
    for mask in torch.nonzero(counts).squeeze(1).tolist():
        out[tuple(t for t in range(T) if mask >> t & 1)] = int(counts[mask])
    return dict(sorted(out.items()))


def same_partition(psi0: Tensor, truth: Sequence[int] | Tensor) -> Tensor:
    """Whether ``psi0 (..., L)`` groups locations exactly as the labels ``truth (L,)`` (batched over leading dims).

    >>> same_partition(torch.tensor([[7, 7, 2], [7, 7, 7]]), [0, 0, 1])
    tensor([ True, False])
    """
    t = torch.as_tensor(truth, device=psi0.device)
    a = psi0[..., :, None] == psi0[..., None, :]                                     # (..., L, L)
    b = t[:, None] == t[None, :]
    return (a == b).flatten(-2).all(-1)
