"""Hypermodules (Eq. 5-7) and the soft merge (Eq. 8) as one batched ``mix`` per model.

The bank holds all K hypermodules as ONE Parameter ``H (K, c, m*n)``, viewed as the ``mix`` bank
``(K*c, m*n)`` whose row ``k*c + j`` is the j-th fibre of H_k. A model's generator holds, per location
l, its context ``z_l (c,)``, soft-merge scores ``s_l (lambda+1,)`` and candidates ``cand_l`` and makes
every block of the model in one call::

    index[l, i*c + j] = cand[l, i] * c + j                  # (L, (lambda+1)*c)
    coeff[l, i*c + j] = softmax(s_l)_i * z_l[j]
    B = mix(H.view(K*c, m*n), coeff, index)                 # (L, m*n)  = sum_i softmax(s_l)_i H_cand(l,i) x_1 z_l

With the alignment fixed (Eq. 5) the index is ``psi0[l]*c + j`` and coeff is ``z_l``. One gather
(:class:`~tessera.core.WeightWriter`) then writes the blocks into the model's weights.

``c = 0`` (Table 7): no contexts; each hypermodule is one block (``H (K, 1, m*n)``) used as it is, so
locations with the same hypermodule share their block exactly (z is a constant 1, not trained). Parallel
adapters (Rebuffi et al., Table 6) add a learned per-location diagonal to the block: ``B_l + diag(d_l)``
(:meth:`HyperGenerator.add_adapter`).

>>> bank = HypermoduleBank(num_modules=2, context=1, block=(2, 1))
>>> with torch.no_grad(): _ = bank.H.copy_(torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]]))
>>> rows = bank.rows()                                   # (K*c, m*n) = (2, 2)
>>> mix(rows, torch.tensor([[0.5, 0.5]]), torch.tensor([[0, 1]]))  # half H_0 + half H_1
tensor([[2., 3.]], grad_fn=<...>)
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..core import Slot, WeightGenerator, WeightWriter, mix
from ..errors import CheckpointError, ShapeError
from .decompose import WeightPlan, decompose

__all__ = ["HypermoduleBank", "HyperGenerator", "he_std", "context_magnitude", "softmax_rows"]


def softmax_rows(s: Tensor) -> Tensor:
    """Softmax over the last (short, lambda+1) dim; ~2x faster than ``torch.softmax`` there on CPU.

    The max is subtracted as a constant (softmax is shift-invariant, so gradients are exact).
    """
    e = (s - s.detach().amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def he_std(fan_in: int) -> float:
    """He-normal standard deviation sqrt(2 / fan_in)."""
    return math.sqrt(2.0 / max(int(fan_in), 1))


def context_magnitude(fan_in: int, block: tuple[int, int], context: int, rule: str = "variance") -> float:
    """|z| of Eq. 7 for a layer with He-normal sigma (from ``fan_in``) and hypermodules with sigma_H = He(m).

    ``rule="variance"``: |z| = sigma / (sqrt(c) sigma_H), so <H_l:ij, z_l> ~ N(0, sigma^2) exactly (a sum of
    c terms has variance c z^2 sigma_H^2). ``rule="paper"``: |z| = sigma / (c sigma_H) as printed in Eq. 7.

    >>> round(context_magnitude(20, (20, 1), 1), 6)      # synthetic: sigma = sigma_H -> |z| = 1
    1.0
    """
    sigma, sigma_h = he_std(fan_in), he_std(block[0])
    return sigma / ((math.sqrt(context) if rule == "variance" else context) * sigma_h)


class HypermoduleBank(nn.Module):
    """All hypermodules H_k in R^{c x m x n} as one Parameter ``H (K, c, m*n)``, init N(0, sigma_H^2)
    (``c = 0``: ``H (K, 1, m*n)``, one plain block per hypermodule)."""

    def __init__(self, num_modules: int, context: int, block: tuple[int, int],
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.context, self.block = int(context), (int(block[0]), int(block[1]))
        fibres = max(self.context, 1)
        self.H = nn.Parameter(torch.empty(num_modules, fibres, block[0] * block[1], device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.H.normal_(0.0, he_std(self.block[0]))  # sigma_H: He normal for a block with m inputs

    @property
    def num_modules(self) -> int:
        return self.H.shape[0]

    def rows(self) -> Tensor:
        """The ``mix`` bank ``(K*c, m*n)``: row k*c + j is fibre j of H_k."""
        return self.H.view(-1, self.H.shape[-1])

    def extra_repr(self) -> str:
        return f"K={self.num_modules}, c={self.context}, block={self.block[0]}x{self.block[1]}"


class HyperGenerator(WeightGenerator):
    """Generates one model's target weights from the shared bank (Eq. 5 / Eq. 8); one ``mix`` per call.

    Parameters: ``z (L, c)`` contexts (``c = 0``: a buffer of ones, and hypermodule k starts at the scale
    Eq. 7 gives location k), ``scores (L, lambda+1)``, optionally ``adapter (L, min(m, n))``. Buffers
    (saved): ``psi0 (L,)``, ``cand (L, lambda+1)``, ``merging`` (Eq. 8 on/off), ``layout (L, 6)`` (the
    location table, checked on load) and ``spec`` = (m, n, c, lambda).
    """

    alignment_version = 0
    """Bumped whenever any generator's alignment changes (caches of bank rows compare against it)."""

    def __init__(self, bank: HypermoduleBank, slots: Sequence[tuple[nn.Module, str, WeightPlan]],
                 layout: Tensor, module_offset: int, lam: int, z_values: Tensor,
                 aliases: Sequence[Sequence[tuple[nn.Module, str]]] | None = None):
        super().__init__()
        self.bank = bank
        c, (m, n) = bank.context, bank.block
        L = int(layout.shape[0])
        H = bank.H
        if c == 0:       # blocks = hypermodules: fold location l's Eq. 7 magnitude into its initial module
            with torch.no_grad():
                H[module_offset:module_offset + L, 0] *= z_values.reshape(L, -1)[:, :1].to(H)
            self.register_buffer("z", torch.ones(L, 1, device=H.device, dtype=H.dtype))
        else:
            self.z = nn.Parameter(z_values.to(device=H.device, dtype=H.dtype).reshape(L, c).clone())
        self.scores = nn.Parameter(torch.zeros(L, lam + 1, device=H.device, dtype=H.dtype))
        psi0 = torch.arange(module_offset, module_offset + L, device=H.device)
        self.register_buffer("psi0", psi0)
        self.register_buffer("cand", psi0[:, None].repeat(1, lam + 1))
        self.register_buffer("merging", torch.tensor(False, device=H.device))
        self.register_buffer("layout", layout.to(H.device))
        self.register_buffer("spec", torch.tensor([m, n, c, lam], device=H.device))
        self.register_buffer("_rows", torch.empty(0, dtype=torch.long, device=H.device), persistent=False)
        self.register_buffer("_rows0", torch.empty(0, dtype=torch.long, device=H.device), persistent=False)
        self.register_parameter("plain", None)            # compacted blocks (see compact)
        self.register_parameter("adapter", None)          # parallel adapters (see add_adapter)
        self.register_buffer("_diag", torch.arange(min(m, n), device=H.device) * (n + 1), persistent=False)
        self._rows_version = -1
        self.register_buffer("plain_loc", None)
        self.register_buffer("gen_loc", None)
        writer_slots, off = [], 0
        for i, (module, pname, plan) in enumerate(slots):
            tied = tuple(aliases[i]) if aliases is not None else ()     # other owners of a tied weight
            writer_slots.append(Slot(module, pname, plan.shape, index=(plan.index + off * m * n).to(H.device),
                                     aliases=tied))
            off += plan.count
        if off != L:
            raise ShapeError(f"slots cover {off} locations but the layout has {L}")
        self.writer = WeightWriter(writer_slots)
        self._refresh_rows()

    # -- alignment ------------------------------------------------------------------------------
    @property
    def num_locations(self) -> int:
        return self.psi0.shape[0]

    @property
    def is_merging(self) -> bool:
        """Eq. 8 (soft merge) on? (the ``merging`` buffer)"""
        return bool(self.merging)

    def _refresh_rows(self) -> None:
        """Mark the alignment changed; the bank rows are rebuilt lazily (:meth:`rows`)."""
        HyperGenerator.alignment_version += 1

    def rows(self) -> tuple[Tensor, Tensor]:
        """Bank rows ``(L, (lambda+1)*c)`` of the candidates and ``(L, c)`` of the incumbents."""
        if self._rows_version != HyperGenerator.alignment_version:
            self._build_rows()
            self._rows_version = HyperGenerator.alignment_version
        return self._rows, self._rows0

    def _build_rows(self) -> None:
        c = self.bank.H.shape[1]                                                     # fibres: max(c, 1)
        j = torch.arange(c, device=self.cand.device)
        self._rows = (self.cand[:, :, None] * c + j).reshape(self.cand.shape[0], -1)  # (L, (lam+1)*c)
        self._rows0 = self.psi0[:, None] * c + j                                     # (L, c)

    @torch.no_grad()
    def set_alignment(self, psi0: Tensor, cand: Tensor | None = None, merging: bool | None = None) -> None:
        """Set the incumbent ``psi0 (L,)`` and candidates ``cand (L, lambda+1)`` (default: all psi0)."""
        self.psi0.copy_(psi0)
        self.cand.copy_(psi0[:, None].expand_as(self.cand) if cand is None else cand)
        if merging is not None:
            self.merging.fill_(merging)
        self._refresh_rows()

    @torch.no_grad()
    def reset_scores(self, value: Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Scores <- ``value`` (L, lambda+1); the optimizer's state for them is dropped (S.4)."""
        self.scores.copy_(value)
        if optimizer is not None:
            optimizer.state.pop(self.scores, None)

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def add_adapter(self) -> None:
        """Give every location a learned diagonal ``d_l (min(m, n),)``, zero at first, added to its block
        (a parallel adapter, Rebuffi et al. 2018; paper 003 S.4). Idempotent."""
        if self.adapter is None:
            L, k = self.num_locations, self._diag.numel()
            self.adapter = nn.Parameter(self.bank.H.new_zeros(L, k))

    def blocks(self) -> Tensor:
        """All generated blocks ``(L, m*n)`` for the current state (one ``mix``; + the adapters' diagonals)."""
        b = self._blocks()
        if self.adapter is not None:
            b = b.index_add(1, self._diag, self.adapter)                            # B_l[a, a] += d_l[a]
        return b

    def _blocks(self) -> Tensor:
        rows = self.bank.rows()
        idx, idx0 = self.rows()
        if self.is_merging:
            w = softmax_rows(self.scores)                                           # (L, lam+1)
            coeff = (w[:, :, None] * self.z[:, None, :]).reshape(w.shape[0], -1)    # (L, (lam+1)*c)
            return mix(rows, coeff, idx)                                            # (L, m*n)
        if self.plain is None:
            return mix(rows, self.z, idx0)                                          # Eq. 5: (L, c) -> (L, m*n)
        g = mix(rows, self.z[self.gen_loc], idx0[self.gen_loc])                     # (L_g, m*n)
        out = self.plain.new_zeros(self.num_locations, rows.shape[1])
        return out.index_copy(0, self.gen_loc, g).index_copy(0, self.plain_loc, self.plain)

    def source(self) -> Tensor:
        return self.blocks().reshape(-1)                                           # (L*m*n,)

    @torch.no_grad()
    def load_blocks(self, blocks: Tensor) -> None:
        """Make location l generate ``blocks[l]`` exactly: H_psi0(l) fibre 0 <- block, z_l <- e_0."""
        if blocks.shape != (self.num_locations, self.bank.H.shape[-1]):
            raise ShapeError(f"blocks must be ({self.num_locations}, {self.bank.H.shape[-1]}), "
                             f"got {tuple(blocks.shape)}")
        self.bank.H[self.psi0, 0] = blocks.to(self.bank.H)
        self.z.zero_()
        self.z[:, 0] = 1.0

    @torch.no_grad()
    def compact(self, plain_mask: Tensor) -> None:
        """Replace locations ``plain_mask (L,)`` by plain parameters holding their current blocks."""
        if self.is_merging:
            raise ShapeError("compact() needs a fixed alignment; call fix_alignment() first")
        full = self.blocks().detach()
        mask = plain_mask.to(self.psi0.device)
        self.plain_loc = torch.nonzero(mask).squeeze(1)
        self.gen_loc = torch.nonzero(~mask).squeeze(1)
        self.plain = nn.Parameter(full[self.plain_loc].clone())

    def decompose_weights(self, weights: Sequence[Tensor], plans: Sequence[WeightPlan]) -> Tensor:
        """Blocks ``(L, m*n)`` of the given original weights (slot order)."""
        return torch.cat([decompose(w, p.index, p.count, self.bank.block) for w, p in zip(weights, plans)])

    # -- checkpoints ----------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        for key in ("layout", "spec", "psi0", "cand"):
            if prefix + key not in state_dict:
                raise CheckpointError(f"checkpoint lacks {prefix}{key} (the alignment / location table); "
                                      f"save it with state_dict() of the reparameterized model, not only the bank")
        lay, spec = state_dict[prefix + "layout"], state_dict[prefix + "spec"]
        if tuple(spec.tolist()) != tuple(self.spec.tolist()) or lay.shape != self.layout.shape \
                or not torch.equal(lay.to(self.layout.device), self.layout):
            raise CheckpointError(
                f"checkpoint {prefix or 'model'} was made for another location table "
                f"(L={lay.shape[0]}, (m, n, c, lambda)={tuple(spec.tolist())}) than this one "
                f"(L={self.layout.shape[0]}, {tuple(self.spec.tolist())}); reparameterize the same models with the "
                f"same block, context, lam and target_modules before loading")
        K = self.bank.num_modules
        for key in ("psi0", "cand"):
            v = state_dict[prefix + key]
            bad = v[(v < 0) | (v >= K)] if v.numel() else v
            if bad.numel():
                raise CheckpointError(f"checkpoint {prefix}{key} refers to hypermodule {int(bad[0])} but the bank "
                                      f"has ids 0..{K - 1}; the checkpoint belongs to another reparameterization")
        if prefix + "adapter" in state_dict and self.adapter is None:   # a checkpoint with parallel adapters
            self.add_adapter()
        if prefix + "plain" in state_dict and self.plain is None:  # a compacted checkpoint: take its structure
            self.plain = nn.Parameter(torch.empty_like(state_dict[prefix + "plain"], device=self.z.device))
            self.plain_loc = torch.empty_like(state_dict[prefix + "plain_loc"], device=self.z.device)
            self.gen_loc = torch.empty_like(state_dict[prefix + "gen_loc"], device=self.z.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._refresh_rows()
