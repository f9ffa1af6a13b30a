"""The decomposed (1+lambda)-EA that optimizes the alignment psi (paper 003, Alg. 1-2, S.3, Eq. 12-13).

All state is a few tensors over locations, and every operation is vectorized (no Python loop per
location or per hypermodule), so 10^4+ locations and hypermodules cost milliseconds per generation:

* ``psi0 (L,)`` the incumbent hypermodule of each location (pessimistic init: ``psi0[l] = l``);
* ``cand (L, lambda+1)`` the candidates soft-merged by Eq. 8; column 0 is the incumbent;
* usage = ``bincount(psi0)``; challengers are sampled in proportion to usage, with probability eps of
  an unused hypermodule (Eq. 13), by one cumulative sum + ``searchsorted``;
* a fraction p of the locations (of each group) gets challengers each generation;
* selection: ``argmax_i sum_j softmax(s)_j * I(cand_j == cand_i)`` (duplicates add up).

Random numbers come from the search's own CPU ``torch.Generator`` seeded by ``seed``, never from the
global RNG: every DDP rank makes the same draws, and decisions depend only on the scores (which DDP
keeps identical), so all ranks take the same decisions.

``groups`` (L,) splits locations into independent universes (e.g. seeds batched into one program):
a location only ever samples hypermodules of its own group (hypermodule k starts in the group of
location k).

>>> s = AlignmentSearch(6, lam=2, p=0.5, seed=0)
>>> psi0 = s.init_alignment()
>>> cand = s.propose(psi0)                     # (6, 3); 3 of the 6 locations get 2 challengers
>>> int((cand[:, 1:] != psi0[:, None]).any(1).sum()) <= 3
True
>>> scores = torch.zeros(6, 3); scores[:, 2] = 5.0         # every location believes in candidate 2
>>> torch.equal(s.select(cand, scores), cand[:, 2])
True
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["AlignmentSearch"]


class AlignmentSearch:
    """Stateless-over-alignment (1+lambda)-EA: holds only settings, groups and its RNG.

    Args:
        num_locations: L.
        num_modules: K (default L: one hypermodule per location, the pessimistic init).
        lam, p, eps: as in :class:`~tessera.hyper.config.MuirConfig`.
        selection: ``"belief"`` (MUiR) or ``"random"`` (MUiR+Random: a uniformly random candidate).
        groups: ``(L,)`` universe of each location (default: one universe).
        module_groups: ``(K,)`` universe of each hypermodule (default: ``groups`` when K == L).
        seed: seed of the private ``torch.Generator``.
    """

    def __init__(self, num_locations: int, *, num_modules: int | None = None, lam: int = 1, p: float = 0.5,
                 eps: float = 1e-4, selection: str = "belief", groups: Tensor | None = None,
                 module_groups: Tensor | None = None, seed: int = 0):
        self.L = int(num_locations)
        self.K = int(num_modules) if num_modules is not None else self.L
        if self.L < 1 or self.K < 1:
            raise ConfigError(f"AlignmentSearch needs >= 1 location and hypermodule (got L={self.L}, K={self.K})")
        if selection not in ("belief", "random"):
            raise ConfigError(f"selection must be 'belief' or 'random', got {selection!r}")
        self.lam, self.p, self.eps, self.selection = int(lam), float(p), float(eps), selection
        self.seed = int(seed)
        self.rng = torch.Generator().manual_seed(self.seed)
        self.generation = 0
        g = torch.zeros(self.L, dtype=torch.long) if groups is None else torch.as_tensor(groups).long().cpu()
        if g.shape != (self.L,):
            raise ShapeError(f"groups must have shape ({self.L},), got {tuple(g.shape)}")
        if module_groups is None:
            if groups is not None and self.K != self.L:
                raise ShapeError(f"pass module_groups ({self.K},) when K != L and groups are given")
            mg = g.clone() if self.K == self.L else torch.zeros(self.K, dtype=torch.long)
        else:
            mg = torch.as_tensor(module_groups).long().cpu()
            if mg.shape != (self.K,):
                raise ShapeError(f"module_groups must have shape ({self.K},), got {tuple(mg.shape)}")
        uniq, inv = torch.unique(torch.cat([g, mg]), return_inverse=True)  # contiguous group ids 0..G-1
        self.G = int(uniq.numel())
        self.groups, self.module_groups = inv[: self.L], inv[self.L:]
        self.group_size = torch.bincount(self.groups, minlength=self.G)             # (G,) locations per group
        self._need = torch.ceil(self.p * self.group_size.double()).long()          # (G,) ceil(p * L_g)
        self._mod_order = torch.sort(self.module_groups, stable=True).indices      # hypermodules sorted by group
        self._mod_count = torch.bincount(self.module_groups, minlength=self.G)    # (G,)
        empty = uniq[(self.group_size > 0) & (self._mod_count == 0)]
        if empty.numel():
            raise ConfigError(f"group(s) {empty.tolist()} have locations but no hypermodule in module_groups; "
                              f"give every universe of groups at least one hypermodule")
        self._mod_start = torch.cumsum(self._mod_count, 0) - self._mod_count       # (G,)
        self.frozen: Tensor | None = None      # (L,) bool: locations that never get challengers
        self.random_pick: Tensor | None = None  # (L,) bool: locations that select a random candidate

    def set_location_modes(self, frozen: Tensor | None = None, random_pick: Tensor | None = None) -> None:
        """Per-location overrides, e.g. when several ablations run side by side as universes:
        ``frozen (L,)`` locations keep their incumbent (an oracle alignment: no challengers) and
        ``random_pick (L,)`` ones select a uniformly random candidate (``selection="random"`` there)."""
        for name, m in (("frozen", frozen), ("random_pick", random_pick)):
            if m is not None and tuple(m.shape) != (self.L,):
                raise ShapeError(f"{name} must have shape ({self.L},), got {tuple(m.shape)}")
        self.frozen = None if frozen is None else frozen.bool().cpu()
        self.random_pick = None if random_pick is None else random_pick.bool().cpu()

    # -- state ---------------------------------------------------------------------------------
    def init_alignment(self) -> Tensor:
        """Pessimistic init: location l uses hypermodule l (requires K >= L)."""
        if self.K < self.L:
            raise ConfigError(f"pessimistic init needs K >= L hypermodules (got K={self.K}, L={self.L})")
        return torch.arange(self.L)

    def usage(self, psi0: Tensor) -> Tensor:
        """``(K,)`` number of locations using each hypermodule."""
        return torch.bincount(psi0.reshape(-1).cpu(), minlength=self.K)

    def state_dict(self) -> dict[str, Tensor]:
        return {"rng": self.rng.get_state(), "generation": torch.tensor(self.generation),
                "seed": torch.tensor(self.seed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.set_state(state["rng"])
        self.generation = int(state["generation"])

    # -- sampling ------------------------------------------------------------------------------
    def sample_locations(self) -> Tensor:
        """``(L,)`` bool: a random ceil(p * L_g)-subset of every group g."""
        keys = torch.rand(self.L, generator=self.rng)
        order = torch.sort(keys).indices
        order = order[torch.sort(self.groups[order], stable=True).indices]         # by group, random within
        gs = self.groups[order]
        start = torch.cumsum(self.group_size, 0) - self.group_size
        rank = torch.arange(self.L) - start[gs]                                    # position within its group
        chosen = torch.zeros(self.L, dtype=torch.bool)
        chosen[order] = rank < self._need[gs]
        return chosen

    def module_weights(self, psi0: Tensor) -> Tensor:
        """``(K,)`` float64 sampling weight of each hypermodule within its group (Eq. 13)."""
        use = self.usage(psi0).double()                                            # (K,)
        g = self.module_groups
        locs = self.group_size.double().clamp(min=1)[g]                            # L_g of each module's group
        unused = use == 0
        n_unused = torch.bincount(g, weights=unused.double(), minlength=self.G)    # (G,)
        w = torch.where(unused, self.eps / n_unused.clamp(min=1)[g], (1.0 - self.eps) * use / locs)
        return w

    def sample_modules(self, psi0: Tensor, loc_groups: Tensor, k: int) -> Tensor:
        """``(N, k)`` hypermodules for N locations of groups ``loc_groups``, proportional to usage (+ eps)."""
        w = self.module_weights(psi0)[self._mod_order]                            # (K,) grouped order
        cum = torch.cumsum(w, 0)                                                   # (K,) inclusive
        total = torch.bincount(self.module_groups, weights=self.module_weights(psi0), minlength=self.G)
        base = cum[self._mod_start + self._mod_count - 1] - total                  # (G,) cum before each group
        pos = torch.arange(self.K)
        last = torch.full((self.G,), -1, dtype=torch.long).scatter_reduce(
            0, self.module_groups[self._mod_order], torch.where(w > 0, pos, -1), "amax")  # last positive weight
        u = torch.rand(loc_groups.numel(), k, generator=self.rng, dtype=torch.float64)      # (N, k)
        lg = loc_groups[:, None]
        target = base[lg] + u * total[lg]
        idx = torch.searchsorted(cum, target, right=True)
        idx = torch.minimum(torch.maximum(idx, self._mod_start[lg]), last[lg])
        return self._mod_order[idx]                                                # (N, k) hypermodule ids

    def propose(self, psi0: Tensor) -> Tensor:
        """New candidates ``(L, lambda+1)``: column 0 = psi0; challengers at a p-fraction of locations."""
        device = psi0.device
        psi0 = psi0.reshape(-1).cpu()
        if psi0.numel() != self.L:
            raise ShapeError(f"psi0 has {psi0.numel()} entries for {self.L} locations")
        cand = psi0[:, None].repeat(1, self.lam + 1)                               # (L, lam+1)
        if self.lam > 0:
            chosen = torch.nonzero(self.sample_locations()).squeeze(1)             # (N,)
            cand[chosen, 1:] = self.sample_modules(psi0, self.groups[chosen], self.lam)
            if self.frozen is not None:
                cand[self.frozen] = psi0[self.frozen, None]
        return cand.to(device)

    # -- selection -----------------------------------------------------------------------------
    def beliefs(self, cand: Tensor, scores: Tensor) -> Tensor:
        """``(L, lambda+1)``: h_i = sum_j softmax(s)_j * I(cand_j == cand_i) (duplicates accounted)."""
        if cand.shape != scores.shape:
            raise ShapeError(f"cand {tuple(cand.shape)} and scores {tuple(scores.shape)} must have the same shape")
        prob = torch.softmax(scores.detach().float(), dim=-1)                     # (L, J)
        same = cand[:, :, None] == cand[:, None, :]                                # (L, J, J)
        return (same * prob[:, None, :]).sum(-1)                                   # (L, J)

    def select(self, cand: Tensor, scores: Tensor) -> Tensor:
        """The new incumbent ``psi0 (L,)`` (ties go to the earlier candidate, i.e. the incumbent)."""
        if self.selection == "random":
            pick = torch.randint(cand.shape[1], (cand.shape[0],), generator=self.rng).to(cand.device)
        else:
            pick = self.beliefs(cand, scores).argmax(dim=1)
            if self.random_pick is not None:
                rand = torch.randint(cand.shape[1], (cand.shape[0],), generator=self.rng).to(cand.device)
                pick = torch.where(self.random_pick.to(cand.device), rand, pick)
        self.generation += 1
        return cand.gather(1, pick[:, None]).squeeze(1)

    def initial_scores(self, alpha: float | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """``(L, lambda+1)`` scores after a reset: s_0 = 0, challengers by Eq. 12."""
        s = torch.zeros(self.L, self.lam + 1, dtype=dtype)
        if self.lam > 0 and alpha is not None:   # alpha = lambda/(lambda+1) (the default) gives exactly 0
            s[:, 1:] = math.log(alpha) - math.log(self.lam) - math.log(1 - alpha)
        return s
